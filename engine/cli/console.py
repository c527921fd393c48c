"""What a training run prints on a terminal: a progress bar (on a terminal) and one line per epoch."""

from __future__ import annotations

import sys
import time


class ConsoleReporter:
    """Prints a progress bar (on a terminal) and one line per epoch."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.bar = not quiet and self.stream.isatty()
        self.total_epochs = 0
        self.last_draw = 0.0

    def __call__(self, event) -> None:
        from engine.train import events as ev

        if isinstance(event, ev.DataPrepared):
            self._line(f"data: {len(event.classes)} classes, {event.train_size} training / {event.val_size} "
                       f"validation images" + (f", {len(event.skipped)} unusable files skipped" if event.skipped else ""))
            for path, reason in event.skipped[:20]:
                self._line(f"  skipped {path}: {reason}")
            if len(event.skipped) > 20:
                self._line(f"  … and {len(event.skipped) - 20} more (see skipped_files.txt in the run folder)")
        elif isinstance(event, ev.WeightsDownloadProgress):
            if self.bar:
                total = f"/{event.total_bytes / 1e6:.0f}" if event.total_bytes else ""
                self._draw(f"downloading {event.weights}: {event.done_bytes / 1e6:.0f}{total} MB")
        elif isinstance(event, ev.RunStarted):
            self.total_epochs = event.total_epochs
            verb = "resuming" if event.resumed else "run"
            self._line(f"{verb} {event.run_dir}\n  model {event.arch} ({event.weights}) on {event.device}")
            if event.device_warning:
                self._line(f"  warning: {event.device_warning}")
        elif isinstance(event, ev.PhaseStarted):
            pct = 100 * event.trainable_params / max(1, event.total_params)
            groups = ", ".join(f"{k} {v:g}" for k, v in event.groups.items())
            self._line(f"phase {event.phase_index + 1} '{event.name}': {event.epochs} epochs, trainable "
                       f"{event.trainable_params:,} of {event.total_params:,} ({pct:.2f} %), lr {groups}")
        elif isinstance(event, ev.BatchFinished):
            if self.bar and (time.monotonic() - self.last_draw > 0.1 or event.batch + 1 == event.batches):
                done = int(30 * (event.batch + 1) / event.batches)
                self._draw(f"epoch {event.epoch + 1}/{self.total_epochs} [{'#' * done}{'.' * (30 - done)}] "
                           f"{event.batch + 1}/{event.batches} loss {event.loss:.4f} acc {event.accuracy:.3f} "
                           f"{event.images_per_second:.0f} img/s")
        elif isinstance(event, ev.EpochFinished):
            lrs = " ".join(f"{k}={v:.2g}" for k, v in event.lrs.items())
            self._line(f"epoch {event.epoch + 1}/{self.total_epochs}  train loss {event.train_loss:.4f} acc "
                       f"{100 * event.train_accuracy:.2f}%  val loss {event.val_loss:.4f} acc "
                       f"{100 * event.val_accuracy:.2f}%{' *' if event.is_best else ''}  {event.seconds:.1f}s "
                       f"{event.images_per_second:.0f} img/s (data wait {100 * event.data_wait_share:.0f} %)  lr {lrs}")
        elif isinstance(event, ev.FreezeVerified):
            if event.moved:
                self._line(f"WARNING: frozen tensors changed in phase {event.phase_index + 1}: {', '.join(event.moved[:5])}")
            elif event.checked_tensors:
                self._line(f"  freeze verified: {event.checked_tensors} frozen tensors unchanged")
        elif isinstance(event, ev.RunStopped):
            self._line(f"stopped at epoch {event.epoch + 1}, batch {event.batch}; checkpoint {event.checkpoint}\n"
                       f"  continue with: python main.py resume {event.run_dir}")
        elif isinstance(event, ev.RunFailed):
            kept = f"; last checkpoint kept: {event.checkpoint}" if event.checkpoint else ""
            self._line(f"run failed: {event.error}{kept}")
        elif isinstance(event, ev.RunFinished):
            s = event.summary
            best = s.get("best_val_acc")
            self._line(f"done ({s.get('status')}): best val acc "
                       f"{100 * best:.2f}% at epoch {s.get('best_epoch')}, {s.get('wall_seconds', 0):.1f}s"
                       if best is not None else f"done ({s.get('status')})")
            self._line(f"  run folder: {event.run_dir}")

    def _draw(self, text: str) -> None:
        self.last_draw = time.monotonic()
        self.stream.write("\r" + text[:150].ljust(150))
        self.stream.flush()

    def _line(self, text: str) -> None:
        if self.bar:
            self.stream.write("\r" + " " * 150 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()
