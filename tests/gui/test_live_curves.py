"""The live curves draw by time, not by batch, and keep a steady y range the user can take over; only the
training thread runs torch with several CPU threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QMetaObject, QObject, QPoint, QPointF, Qt, Signal, Slot
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

import gui.workers.torch_threads as torch_threads
from engine.train import events as ev
from gui.widgets.live_curves import TrainingCurves
from gui.widgets.plot_ranges import decade_bounds, nice_bounds, nice_ceil
from gui.workers.torch_threads import OneTorchThreadQThread
from gui.workers.training import TrainingController
from tests.helpers import tiny_recipe


def batch(i: int, loss: float, per_epoch: int = 10, lrs: dict | None = None) -> ev.BatchFinished:
    epoch, b = divmod(i, per_epoch)
    return ev.BatchFinished(epoch=epoch, batch=b, batches=per_epoch, global_step=i + 1, train_loss=loss, train_acc=0.5,
                            lrs=lrs or {"head": 1e-3, "body": 1e-5}, images_per_s=10.0)


def epoch(e: int, train_loss: float, val_loss: float, train_acc: float, val_acc: float) -> ev.EpochFinished:
    return ev.EpochFinished(epoch=e, phase_index=0, phase_name="head", train_loss=train_loss, train_acc=train_acc,
                            val_loss=val_loss, val_acc=val_acc, lrs={}, seconds=1.0, images_per_s=10.0,
                            data_wait_share=0.0, train_images=10, is_best=False, elapsed_seconds=1.0)


def drawn(curve) -> int:
    x = curve.getOriginalDataset()[0]
    return 0 if x is None else len(x)


@pytest.fixture
def curves(qtbot):
    widget = TrainingCurves()
    widget.resize(600, 600)
    qtbot.addWidget(widget)
    widget.show()
    widget.set_epoch_range(10)
    return widget


def count_calls(monkeypatch, curve) -> list[int]:
    calls = []
    original = curve.setData
    monkeypatch.setattr(curve, "setData", lambda *a, **k: (calls.append(1), original(*a, **k)))
    return calls


def test_points_arriving_within_an_interval_are_drawn_once_with_all_of_them(qtbot, curves, monkeypatch):
    curves.set_redraw_interval(1000)
    calls = count_calls(monkeypatch, curves.smoothed_loss_curve)
    for i in range(6):  # six emissions well within one interval
        curves.add_batches([batch(2 * i, 2.0), batch(2 * i + 1, 1.9)])
    assert drawn(curves.smoothed_loss_curve) == 0 and calls == []  # stored, not drawn yet

    qtbot.waitUntil(lambda: drawn(curves.smoothed_loss_curve) == 12, timeout=10_000)
    assert len(calls) == 1  # one redraw carried all twelve points
    assert sorted(curves.lr_curves) == ["body", "head"]
    head_x, _ = curves.lr_curves["head"].getOriginalDataset()
    assert list(head_x) == [0.1, 1.2]  # a constant lr is one segment from the first batch to the last


def test_the_lr_curve_keeps_a_vertex_only_where_the_rate_changes(curves):
    step = [1e-3] * 5 + [1e-4] * 5  # a step schedule
    cosine = [1e-3 * (1 + np.cos(np.pi * i / 10)) / 2 + 1e-6 for i in range(10)]
    curves.add_batches([batch(i, 1.0, lrs={"step": step[i], "cosine": cosine[i]}) for i in range(10)])
    curves.flush()

    x, y = curves.lr_curves["step"].getOriginalDataset()
    assert list(x) == pytest.approx([0.1, 0.5, 0.6, 1.0]) and list(y) == [1e-3, 1e-3, 1e-4, 1e-4]
    x, y = curves.lr_curves["cosine"].getOriginalDataset()
    assert list(y) == pytest.approx(cosine)  # every batch changes it: every point kept


def test_flush_draws_now_and_reset_drops_a_pending_redraw(curves):
    curves.set_redraw_interval(60_000)
    curves.add_batches([batch(0, 2.0)])
    curves.add_epoch(epoch(0, 2.0, 2.1, 0.4, 0.3))
    curves.flush()
    assert drawn(curves.smoothed_loss_curve) == 1 and drawn(curves.val_acc_curve) == 1

    curves.add_batches([batch(1, 1.5)])
    curves.reset()
    curves.flush()
    assert drawn(curves.smoothed_loss_curve) == 0 and not curves.lr_curves


def y_bounds(curves, plot):
    return curves._y_ranges[plot].bounds


def test_the_y_range_moves_only_when_the_data_leave_nice_bounds(curves):
    losses = np.linspace(2.3, 0.4, 50)
    bounds_seen = set()
    for i, loss in enumerate(losses):  # a falling loss, redrawn after every batch
        curves.add_batches([batch(i, float(loss))])
        curves.flush()
        bounds_seen.add(y_bounds(curves, curves.lossPlot))
    assert bounds_seen == {(0.0, 2.5)}  # 50 redraws, one range: the axis never had to repaint
    low, high = curves.lossPlot.getPlotItem().getViewBox().viewRange()[1]
    assert low < 0 < 2.5 < high < 2.6  # the bounds plus a 2 % margin

    curves.add_epoch(epoch(4, 0.4, 3.2, 0.9, 0.8))  # a validation loss above the range
    curves.flush()
    assert y_bounds(curves, curves.lossPlot) == (0.0, 5.0)
    assert y_bounds(curves, curves.accuracyPlot) == (0.0, 100.0)
    assert y_bounds(curves, curves.lrPlot) == (-5.0, -3.0)  # decades around 1e-5 … 1e-3 (log axis)


def test_a_zoom_by_the_user_is_kept_until_auto_range_is_asked_for(qtbot, curves):
    curves.add_batches([batch(i, 2.0 - 0.01 * i) for i in range(20)])
    curves.flush()
    view = curves.lossPlot.getPlotItem().getViewBox()
    before = view.viewRange()[1]
    viewport = curves.lossPlot.viewport()
    centre = QPointF(viewport.width() / 2, viewport.height() / 2)
    wheel = QWheelEvent(centre, viewport.mapToGlobal(centre), QPoint(0, 0), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, wheel)  # zoom in, as a user's mouse wheel does
    zoomed = view.viewRange()[1]
    assert zoomed[1] - zoomed[0] < before[1] - before[0]

    curves.add_epoch(epoch(1, 1.9, 4.0, 0.5, 0.5))  # a validation loss that would widen the nice bounds to 5
    curves.flush()
    assert view.viewRange()[1] == zoomed  # the user's view stays

    curves.lossPlot.getPlotItem().autoBtnClicked()  # the plot's "A" button
    curves.add_batches([batch(20, 1.0)])
    curves.flush()
    assert y_bounds(curves, curves.lossPlot) == (0.0, 5.0)
    assert view.viewRange()[1][1] == pytest.approx(5.1, abs=1e-6)


@pytest.mark.parametrize("value, expected", [(0.3, 0.5), (1.0, 1.0), (1.01, 2.0), (2.3, 2.5), (7, 10), (0.0012, 0.002)])
def test_nice_ceil(value, expected):
    assert nice_ceil(value) == pytest.approx(expected)


def test_nice_and_decade_bounds():
    assert nice_bounds(0.1, 2.3) == (0.0, 2.5)
    assert nice_bounds(-0.3, 0.7) == (-0.5, 1.0)
    assert nice_bounds(0.0, 0.0) == (0.0, 1.0)
    assert decade_bounds(2e-5, 3e-3) == (-5.0, -2.0)
    assert decade_bounds(1e-3, 1e-3) == (-3.0, -2.0)


class Probe(QObject):
    """Records, in its own thread, how many threads torch would use there."""

    measured = Signal(int)

    @Slot()
    def measure(self) -> None:
        self.measured.emit(torch.get_num_threads())


def test_panel_threads_run_torch_with_one_thread(qtbot):
    thread = OneTorchThreadQThread()
    probe = Probe()
    probe.moveToThread(thread)
    thread.start()
    try:
        with qtbot.waitSignal(probe.measured, timeout=5000) as seen:
            QMetaObject.invokeMethod(probe, "measure", Qt.ConnectionType.QueuedConnection)
        assert seen.args == [1]
    finally:
        thread.quit()
        thread.wait()


def test_the_training_thread_runs_torch_with_the_process_count(qtbot, monkeypatch, image_folder, tmp_path):
    monkeypatch.setattr(torch_threads, "_training_threads", 2)
    torch_threads.use_torch_threads(1)  # as the main window does for the GUI thread
    controller = TrainingController()
    counts = []

    def on_worker_created(worker) -> None:  # runs in the training thread itself (direct connection)
        worker.event_emitted.connect(lambda e: isinstance(e, ev.RunStarted) and counts.append(torch.get_num_threads()),
                                     Qt.ConnectionType.DirectConnection)

    controller.worker_created.connect(on_worker_created)
    try:
        with qtbot.waitSignal(controller.running_changed, check_params_cb=lambda running: not running,
                              timeout=60_000):
            controller.start(tiny_recipe(image_folder, epochs=1, out=tmp_path / "runs"))
        assert counts == [2]
        assert torch.get_num_threads() == 1  # the GUI thread keeps its one thread
    finally:
        controller.stop_and_wait()
        torch_threads.use_torch_threads(1)  # torch's process-wide count back to the suite's one
