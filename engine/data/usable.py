"""The data-layer rule the CLI, the studio and every local source share: a scanned folder or labels file is usable
only with at least two classes, each with training images."""

from __future__ import annotations

import os

from engine.data.images import CHANNELS_REASON
from engine.data.scan import EMPTY_CLASS_REASON, ScanReport
from engine.errors import BadInputError


def check_usable(report: ScanReport, root: str, channels: int) -> None:
    """The data-layer rule the CLI and the studio share: every class folder needs training images.

    An empty class (no usable image in it, or in train/ for the train/val layout) is refused with the reason,
    not trained as a class the head can never learn (and `predict` would still rank). Remove the folder or
    add images. When nothing at all is usable because of the channel count, that is said first."""
    if report.num_samples == 0:
        refused = [p for p in report.problems if p.reason.startswith(CHANNELS_REASON)]
        if refused:
            raise BadInputError(
                f"{root}: none of its {len(refused)} image files can feed a model with model.in_channels "
                f"{channels}: {CHANNELS_REASON}, so {channels}-channel input needs .npy arrays (H×W×{channels}); "
                f"for ordinary images set model.in_channels to 3 (or 1 for greyscale)")
    if len(report.classes) < 2:
        raise BadInputError(f"{root}: need at least two class folders, found "
                            f"{', '.join(report.classes) or 'none'}")
    if report.empty_classes:
        details = []
        for name in report.empty_classes[:5]:
            folder = next((p.path for p in report.problems if p.is_folder and os.path.basename(p.path) == name
                           and p.reason == EMPTY_CLASS_REASON), name)
            unusable = sum(1 for p in report.problems if not p.is_folder and p.path.startswith(folder + os.sep))
            details.append(f"'{name}'" + (f" ({unusable} unusable files)" if unusable else ""))
        more = f" and {len(report.empty_classes) - 5} more" if len(report.empty_classes) > 5 else ""
        raise BadInputError(f"{root}: class folder {', '.join(details)}{more} has no usable training images; "
                            f"every class needs some (a class without images would be an output the model "
                            f"never learns): add images or remove the folder")
