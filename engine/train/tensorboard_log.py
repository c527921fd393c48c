"""TensorBoard event files for a run, as one more subscriber of its events (`train --tensorboard`, or the recipe's
`tensorboard: true`): `tensorboard --logdir <run folder>/tensorboard`.

Scalars use the run's one vocabulary (engine/train/metrics.py): per optimizer step `batch/train_loss` and
`lr/<group>`, per epoch `epoch/train_loss`, `epoch/val_acc` … and `speed/images_per_s`. The writer is torch's own
(`torch.utils.tensorboard`), which needs the `tensorboard` package; it is an optional extra of Thaw.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import BadInputError
from engine.train import events as ev

TENSORBOARD_DIR = "tensorboard"


def require_tensorboard() -> None:
    """Fail before training, with the install command, when TensorBoard is asked for but not installed."""
    try:
        import tensorboard  # noqa: F401 - only whether it imports
    except ImportError as exc:
        raise BadInputError("TensorBoard logging was asked for (recipe field 'tensorboard' or --tensorboard) but "
                            "the tensorboard package is not installed: pip install tensorboard") from exc


class TensorBoardLog:
    """Writes a run's events as TensorBoard scalars under <run folder>/tensorboard."""

    def __init__(self):
        self._writer = None
        self._handlers = {ev.RunStarted: self._on_run_started, ev.BatchFinished: self._on_batch,
                          ev.EpochFinished: self._on_epoch, ev.RunFinished: self._close, ev.RunStopped: self._close,
                          ev.RunFailed: self._close}

    def __call__(self, event: ev.Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _on_run_started(self, e: ev.RunStarted) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run drops what the interrupted session wrote after its checkpoint.
        self._writer = SummaryWriter(str(Path(e.run_dir) / TENSORBOARD_DIR),
                                     purge_step=e.start_global_step if e.resumed else None)
        if not e.resumed:
            self._writer.add_text("recipe", "```\n" + json.dumps(e.recipe, indent=2) + "\n```", 0)

    def _on_batch(self, e: ev.BatchFinished) -> None:
        if self._writer is None:
            return
        self._writer.add_scalar("batch/train_loss", e.train_loss, e.global_step)
        for group, lr in e.lrs.items():
            self._writer.add_scalar(f"lr/{group}", lr, e.global_step)

    def _on_epoch(self, e: ev.EpochFinished) -> None:
        if self._writer is None:
            return
        step = e.epoch + 1  # epochs done, as metrics.csv counts
        for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
            self._writer.add_scalar(f"epoch/{name}", getattr(e, name), step)
        self._writer.add_scalar("speed/images_per_s", e.images_per_s, step)
        self._writer.add_scalar("speed/data_wait_share", e.data_wait_share, step)
        self._writer.flush()

    def _close(self, _event: ev.Event) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
