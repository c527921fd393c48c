"""`Thaw --self-test` (from source: `python main.py --self-test`): does this installation or bundle work?

One line per check, with its time, then a summary; exit status 0 when every check passed, 1 otherwise:

    ok    torch              3.10 s  torch 2.14.1+cu130 (CUDA 13.0 build), no GPU found: CPU
    FAIL  main window        0.12 s  ImportError: cannot import name 'MainWindow' from 'gui.main_window'
    self-test FAILED: 1 of 10 checks failed (main window)

The checks, in order: torch, torchvision ops (nms, the compiled extension), torch._dynamo (the optimizer
path imports it), resources (the bundled files), image decode (the bundled sample through PIL and through
torchvision's image extension), train step (forward/backward/Adam step on generated images), engine run
(a one-batch training run through engine.train.trainer, checkpoint written and read back), data loader worker,
Qt (platform plugin, image formats, the icon, pyqtgraph), main window (gui.main_window.MainWindow created
offscreen; `--screenshot PNG` saves a grab of it, `--open PATH` first opens a recipe or an image folder in it
as `Thaw PATH` would).

A `warn` line is reported but does not fail the test (e.g. data loader workers in a frozen build, which the
engine does not use there). Nothing touches the user's files: settings and runs go to a temporary folder,
no model needs pretrained weights, and downloads are forbidden (THAW_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"


class CheckWarning(Exception):
    """Raised by a check whose problem is worth reporting but does not make the installation unusable."""


class CheckSkipped(Exception):
    """Raised by a check that cannot run here (e.g. it needs an earlier check that failed)."""


@dataclass
class CheckResult:
    name: str
    status: str  # ok, FAIL, warn, skip
    seconds: float
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        return f"{self.status:<5} {self.name:<18} {self.seconds:6.2f} s  {self.detail}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_checks(checks: list[tuple[str, Callable[[], str]]], out=None) -> list[CheckResult]:
    """Run each check, print its line at once (a later hard crash still leaves the earlier lines)."""
    results = []
    for name, check in checks:
        start = time.perf_counter()
        try:
            status, detail = OK, check() or ""
        except CheckWarning as exc:
            status, detail = WARN, str(exc)
        except CheckSkipped as exc:
            status, detail = SKIP, str(exc)
        except BaseException as exc:  # noqa: BLE001 - a self-test reports every failure, SystemExit included
            if isinstance(exc, KeyboardInterrupt):
                raise
            status, detail = FAIL, _describe(exc)
            if os.environ.get("THAW_SELFTEST_TRACEBACK"):
                detail += "\n" + traceback.format_exc()
        result = CheckResult(name, status, time.perf_counter() - start, detail)
        results.append(result)
        _print(result.line(), out)
    return results


def summary_line(results: list[CheckResult], seconds: float) -> str:
    failed = [r.name for r in results if r.failed]
    if failed:
        return f"self-test FAILED: {len(failed)} of {len(results)} checks failed ({', '.join(failed)}) in {seconds:.1f} s"
    warned = [r.name for r in results if r.status == WARN]
    extra = f", {len(warned)} warning(s) ({', '.join(warned)})" if warned else ""
    return f"self-test passed: {len(results)} checks in {seconds:.1f} s{extra}"


def _print(text: str, out=None) -> None:
    stream = out or sys.stdout
    if stream is None:
        return
    print(text, file=stream, flush=True)


@contextmanager
def _temporary_environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class SelfTest:
    """The checks, sharing a temporary folder and what earlier checks found (the QApplication, the sample)."""

    def __init__(self, workdir: Path, screenshot: str = "", open_paths: list[str] | None = None):
        self.workdir = workdir
        self.screenshot = screenshot
        self.open_paths = list(open_paths or [])
        self.app = None
        self.qt_ok = False
        self.restore: Callable[[], None] = lambda: None

    def checks(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("torch", self.check_torch),
            ("torch._dynamo", self.check_dynamo),
            ("torchvision ops", self.check_torchvision_ops),
            ("resources", self.check_resources),
            ("image decode", self.check_image_decode),
            ("train step", self.check_train_step),
            ("engine run", self.check_engine_run),
            ("data loader worker", self.check_worker),
            ("Qt", self.check_qt),
            ("main window", self.check_main_window),
        ]

    # --- torch ------------------------------------------------------------------------------------------------
    def check_torch(self) -> str:
        import torch

        x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        if float((x @ x.T).sum()) != 83.0:
            raise AssertionError("a 2×3 matrix product gave the wrong result")
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        if torch.cuda.is_available():
            device = f"GPU: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} found)"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "Apple GPU (MPS)"
        else:
            device = "no GPU found: CPU"
        threads = torch.get_num_threads()
        # The checks' tensors are tiny: one thread is faster than a pool, and far faster on a busy machine.
        torch.set_num_threads(1)
        self.restore = lambda: torch.set_num_threads(threads)
        return f"torch {torch.__version__} ({build}), {device}, {threads} CPU threads"

    def check_torchvision_ops(self) -> str:
        import torch
        import torchvision
        from torchvision.ops import nms, roi_align

        boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
        scores = torch.tensor([0.9, 0.8, 0.7])
        keep = nms(boxes, scores, iou_threshold=0.5).tolist()
        if keep != [0, 2]:
            raise AssertionError(f"torchvision.ops.nms kept {keep}, expected [0, 2]")
        feature = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
        pooled = roi_align(feature, [torch.tensor([[0.0, 0.0, 3.0, 3.0]])], output_size=1, aligned=False)
        if pooled.shape != (1, 1, 1, 1):
            raise AssertionError(f"torchvision.ops.roi_align gave shape {tuple(pooled.shape)}")
        return f"torchvision {torchvision.__version__}: nms kept [0, 2], roi_align ok (compiled ops loaded)"

    def check_dynamo(self) -> str:
        import torch._dynamo  # what torch.optim and torchvision import; it reads torch's own .py sources

        if not callable(getattr(torch._dynamo, "is_compiling", None)):
            raise AssertionError("torch._dynamo imported without is_compiling()")

        @torch._dynamo.disable
        def plus_one(x):
            return x + 1

        if int(plus_one(torch.tensor(1))) != 2:
            raise AssertionError("a torch._dynamo.disable'd function gave the wrong result")
        return "imported, disable() works"

    # --- files ------------------------------------------------------------------------------------------------
    def check_resources(self) -> str:
        from gui.resources import ICON_PNG, ICON_SVG, SAMPLE_IMAGE, resource_path, resources_dir

        sizes = [f"{name} {resource_path(name).stat().st_size:,} B" for name in (ICON_PNG, ICON_SVG, SAMPLE_IMAGE)]
        return f"{resources_dir()}: {', '.join(sizes)}"

    def check_image_decode(self) -> str:
        import torch
        from torchvision.io import ImageReadMode, decode_image, read_file

        from engine.data.images import load_image
        from gui.resources import SAMPLE_IMAGE, resource_path

        path = resource_path(SAMPLE_IMAGE)
        pil = load_image(path, channels=3)  # the engine's decoder (PIL)
        if tuple(pil.shape) != (3, 48, 64):
            raise AssertionError(f"{SAMPLE_IMAGE} decoded to shape {tuple(pil.shape)}, expected (3, 48, 64)")
        if pil[:, 0, 0].tolist() != [255, 255, 255]:
            raise AssertionError(f"{SAMPLE_IMAGE}: top-left pixel {pil[:, 0, 0].tolist()}, expected white")
        native = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)  # torchvision's image extension
        if not torch.equal(native, pil):
            raise AssertionError("PIL and torchvision.io decode the bundled sample differently")
        return f"{SAMPLE_IMAGE} 64×48 RGB: PIL and torchvision.io agree"

    # --- training -----------------------------------------------------------------------------------------------
    def check_train_step(self) -> str:
        import torch
        from torchvision.models import mobilenet_v3_small

        torch.manual_seed(0)
        model = mobilenet_v3_small(weights=None, num_classes=3)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        images = torch.rand(4, 3, 32, 32)  # generated images
        labels = torch.tensor([0, 1, 2, 0])
        head = model.classifier[-1]
        before = head.weight.detach().clone()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not torch.isfinite(loss):
            raise AssertionError(f"loss is {float(loss)}")
        if torch.equal(before, head.weight):
            raise AssertionError("the optimizer step did not change the weights")
        return f"mobilenet_v3_small, 4 generated 32×32 images: loss {loss.item():.3f}, Adam step applied"

    def check_engine_run(self) -> str:
        import numpy as np
        from PIL import Image

        from engine.train.checkpoints import load_checkpoint
        from engine.planning.presets import make_recipe
        from engine.train.trainer import fit

        data = self.workdir / "images"
        rng = np.random.default_rng(0)
        for k, name in enumerate(("ice", "water")):
            (data / name).mkdir(parents=True, exist_ok=True)
            for i in range(6):
                pixels = np.full((36, 36, 3), (40 + 160 * k, 120, 220 - 160 * k), dtype=np.float64)
                pixels += rng.normal(0, 20, pixels.shape)
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(data / name / f"{i}.png")
        recipe = make_recipe("from_scratch", "mobilenet_v3_small", str(data), epochs=1)
        recipe.data.resize_size, recipe.data.crop_size = 36, 32
        recipe.data.num_workers = 0
        recipe.data.max_train_batches, recipe.data.max_val_batches = 1, 1
        recipe.batch_size = 4
        recipe.device = "cpu"
        recipe.output_dir = str(self.workdir / "runs")
        recipe.validate()
        result = fit(recipe)
        if result.status != "finished":
            raise AssertionError(f"run {result.status}: {result.error or 'no error recorded'}")
        last = Path(result.run_dir) / "checkpoints" / "last.pt"
        state = load_checkpoint(last)
        if "model" not in state:
            raise AssertionError(f"{last} has no model state")
        return f"mobilenet_v3_small, one 1-batch epoch from scratch: {result.status}, checkpoint read back"

    def check_worker(self) -> str:
        import torch
        from torch.utils.data import DataLoader

        from gui.platform_setup import MAX_WORKERS_ENV, is_frozen, max_workers_override

        loader = DataLoader(_SquaresDataset(), batch_size=2, num_workers=1, timeout=120)
        try:
            total = int(sum(batch.sum() for batch in loader))
        except Exception as exc:  # noqa: BLE001
            if is_frozen() and max_workers_override() == 0:
                raise CheckWarning(f"{_describe(exc)} (not used: {MAX_WORKERS_ENV}=0 in this build)") from exc
            raise
        if total != sum(i * i for i in range(4)):
            raise AssertionError(f"worker returned a wrong sum {total}")
        cap = max_workers_override()
        note = f"; the engine uses none ({MAX_WORKERS_ENV}={cap})" if cap == 0 else ""
        return f"1 worker process ({torch.multiprocessing.get_start_method()}) delivered 2 batches{note}"

    # --- Qt -------------------------------------------------------------------------------------------------------
    def check_qt(self) -> str:
        os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
        import PySide6
        from PySide6.QtCore import QLibraryInfo, qVersion
        from PySide6.QtGui import QImageReader
        from PySide6.QtWidgets import QApplication

        plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
        wanted = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] or _default_platform()
        platforms = sorted(p.name for p in (plugins / "platforms").glob("*")) if (plugins / "platforms").is_dir() else []
        if wanted and platforms and not any(f"q{wanted}" in name.lower() for name in platforms):
            raise AssertionError(f"Qt platform plugin {wanted!r} not in {plugins / 'platforms'} (found: "
                                 f"{', '.join(platforms) or 'nothing'})")
        app = QApplication.instance()
        if app is None:
            try:
                from gui.app import create_app

                app = create_app([sys.argv[0] if sys.argv else "thaw"])
            except ImportError:
                app = QApplication([sys.argv[0] if sys.argv else "thaw"])
        self.app = app
        self.qt_ok = True  # the main window can be tried even if a check below fails
        from gui.resources import app_icon

        icon = app_icon()
        if icon.isNull() or icon.pixmap(64, 64).isNull():
            raise AssertionError("the application icon does not render")
        app.setWindowIcon(icon)
        formats = {bytes(f.data()).decode() for f in QImageReader.supportedImageFormats()}
        missing = [f for f in ("png", "jpg", "svg") if f not in formats]
        if missing:
            raise AssertionError(f"Qt cannot read {', '.join(missing)} (plugins folder {plugins})")
        import pyqtgraph as pg

        plot = pg.PlotWidget()
        plot.plot([0, 1, 2], [0, 1, 4])
        plot.deleteLater()
        return (f"Qt {qVersion()} (PySide6 {PySide6.__version__}), platform {app.platformName()}, "
                f"pyqtgraph {pg.__version__}, png/jpg/svg readable, icon ok")

    def check_main_window(self) -> str:
        if not self.qt_ok:
            raise CheckSkipped("needs the QApplication of the Qt check")
        from PySide6.QtCore import Qt

        from gui.main_window import MainWindow  # imported only here: the window may not exist in a broken build

        window = MainWindow(deferred=True)  # as `Thaw` starts: loading page first, torch imported in a thread
        window.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)  # laid out and painted, never on screen
        if window.windowIcon().isNull():
            window.setWindowIcon(self.app.windowIcon())
        window.resize(1200, 800)
        window.show()
        _run_event_loop_until(lambda: window.is_ready, 60.0)
        if not window.is_ready:
            raise AssertionError("the window's panels were not built within 60 s of showing it")
        opened = ""
        if self.open_paths:  # what `Thaw recipe.json image_folder/` does at start-up
            from gui.app import apply_arguments

            apply_arguments(window, self.open_paths)
            opened = f", opened {len(self.open_paths)} argument(s)"
        _run_event_loop_for(3.0 if self.open_paths else 0.05)  # let a folder scan finish and the window paint
        pixmap = window.grab()
        if pixmap.isNull() or pixmap.width() < 100:
            raise AssertionError("grabbing the window gave an empty image")
        saved = ""
        if self.screenshot:
            if not pixmap.save(self.screenshot):
                raise AssertionError(f"could not save the screenshot to {self.screenshot}")
            saved = f", screenshot {self.screenshot}"
        title = window.windowTitle()
        tabs = window.findChildren(_qtabwidget())
        count = tabs[0].count() if tabs else 0
        window.close()
        window.deleteLater()
        _run_event_loop_for(0.05)  # deliver the deferred deletion
        return (f"{type(window).__name__} {pixmap.width()}×{pixmap.height()}, {count} tabs, "
                f"title {title!r}{opened}{saved}")


def _run_event_loop_until(condition, timeout_s: float) -> None:
    """Deliver Qt events until `condition()` holds or `timeout_s` passed."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if condition() else None)
    poll.start(20)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    if not condition():
        loop.exec()
    poll.stop()


def _run_event_loop_for(seconds: float) -> None:
    """Let Qt deliver pending events (paints, a scan's results, deferred deletions) for a while."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


class _SquaresDataset:
    """Four numbers squared; module level so a spawned worker can unpickle it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        import torch

        return torch.tensor(float(i * i))


def _qtabwidget():
    from PySide6.QtWidgets import QTabWidget

    return QTabWidget


def _default_platform() -> str:
    if sys.platform == "darwin":
        return "cocoa"
    if sys.platform == "win32":
        return "windows"
    return "wayland" if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY") else "xcb"


def _header() -> str:
    from gui.platform_setup import bundle_dir, is_frozen, log_path

    try:
        from engine import __version__
    except Exception:  # noqa: BLE001
        __version__ = "?"
    where = f"bundle {bundle_dir()}" if is_frozen() else f"source {Path(__file__).resolve().parent.parent}"
    log = f", log {log_path()}" if log_path() else ""
    return (f"Thaw {__version__} self-test: {where} (Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}{log})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="Thaw --self-test", description="Check that this Thaw installation works.")
    parser.add_argument("--screenshot", default="", metavar="PNG", help="save a grab of the main window here")
    parser.add_argument("--open", action="append", default=[], metavar="PATH",
                        help="open a recipe .json or an image folder in the window first, as `Thaw PATH` does "
                             "(repeatable)")
    args = parser.parse_args(list(argv or []))
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM") \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # no display: Qt would abort instead of failing a check
    start = time.perf_counter()
    _print(_header())
    with tempfile.TemporaryDirectory(prefix="thaw-selftest-") as tmp:
        work = Path(tmp)
        env = {
            "THAW_OFFLINE": "1",  # never download during a self-test
            "THAW_SETTINGS": str(work / "settings.ini"),  # never touch the user's window settings
            "THAW_RUNS_DIR": str(work / "runs"),
        }
        with _temporary_environment(env):
            test = SelfTest(work, screenshot=args.screenshot, open_paths=[str(Path(p).resolve()) for p in args.open])
            try:
                results = run_checks(test.checks())
            finally:
                test.restore()
            if test.app is not None:
                _run_event_loop_for(0.05)
    _print(summary_line(results, time.perf_counter() - start))
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
