"""What a training run prints: the narrated lines (engine/train/narrate.py) and, on a terminal, tqdm progress bars
for the epoch's batches, a weights download and the backbone's feature pass. Not on a terminal (a log file, a
pipe) or with --quiet: the lines only."""

from __future__ import annotations

import sys

from tqdm import tqdm

from engine.train import events as ev
from engine.train.narrate import describe


class ConsoleReporter:
    """A subscriber of a run's events that prints them."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.bars = not quiet and self.stream.isatty()
        self.total_epochs = 0
        self._bar: tqdm | None = None
        self._bar_kind: type | None = None

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.total_epochs = event.total_epochs
        if self.bars and self._progress(event):
            return
        lines = describe(event, self.total_epochs)
        if lines:
            self._close_bar()  # a narrated event ends what a bar was showing (an epoch, a download, a feature pass)
            for line in lines:
                self._write(line)
            if isinstance(event, ev.RunStopped):
                self._write(f"  continue with: python main.py resume {event.run_dir}")

    def _progress(self, event: ev.Event) -> bool:
        """Draw bars for progress events; True when the event is fully shown that way."""
        if isinstance(event, ev.EpochStarted):
            self._open_bar(ev.BatchFinished, event.batches, f"epoch {event.epoch + 1}/{self.total_epochs}", "batch")
            return True
        if isinstance(event, ev.BatchFinished):
            if self._bar_kind is not ev.BatchFinished:
                self._open_bar(ev.BatchFinished, event.batches, f"epoch {event.epoch + 1}/{self.total_epochs}",
                               "batch")
            self._bar.n = event.batch + 1
            self._bar.set_postfix_str(f"loss {event.train_loss:.4f} acc {event.train_acc:.3f} "
                                      f"{event.images_per_s:.0f} img/s", refresh=False)
            self._bar.update(0)  # redraws when tqdm's interval has passed
            return True
        if isinstance(event, ev.WeightsDownloadProgress):
            if self._bar_kind is not ev.WeightsDownloadProgress:
                self._open_bar(ev.WeightsDownloadProgress, event.total_bytes or None, f"downloading {event.weights}",
                               "B", scale=True)
            self._bar.n = event.done_bytes
            self._bar.update(0)
            return True
        if isinstance(event, ev.HeadFitProgressed):
            if self._bar_kind is not ev.HeadFitProgressed:
                self._open_bar(ev.HeadFitProgressed, event.total, f"phase {event.phase_index + 1}: fitting the head",
                               "fit")
            self._bar.n = event.done
            self._bar.set_postfix_str(f"{event.stage}, L2 {event.l2:.2g}" + (
                f", iteration {event.iteration}" if event.iteration else ""), refresh=False)
            self._bar.update(0)
            return True
        if isinstance(event, ev.FeaturesProgressed):
            if self._bar_kind is not ev.FeaturesProgressed:
                self._open_bar(ev.FeaturesProgressed, event.total, f"phase {event.phase_index + 1}: backbone features",
                               "img")
            self._bar.n = event.done
            self._bar.update(0)
            return True
        return False

    def _open_bar(self, kind: type, total: int | None, desc: str, unit: str, scale: bool = False) -> None:
        self._close_bar()
        self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, file=self.stream, leave=False,
                         dynamic_ncols=True, mininterval=0.1)
        self._bar_kind = kind

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._bar_kind = None, None

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
