"""What the studio checks when Start is pressed, before a training thread exists, and how it words what the engine
refuses in the studio's own terms (menus and tabs, not recipe fields and command-line flags).

The rules are the engine's (`engine.data.datasets.check_usable`, `engine.model.zoo`); this module only decides
when they can be applied without waiting (the Data tab's scan of the same folder is at hand; weights cannot be
downloaded) and says what to click.
"""

from __future__ import annotations

import os

from engine.data.datasets import check_usable
from engine.data.scan import ScanReport
from engine.errors import BadInputError, RecipeError, WeightsUnavailableError
from engine.model import zoo
from engine.recipe import Recipe

WEIGHTS_MENU = "Model → Weights → Local file…"


def start_refusal(recipe: Recipe, scan: ScanReport | None) -> str:
    """Why `recipe` cannot start now, in the studio's words ("" when nothing is known to stop it; the engine still
    checks everything once the run starts)."""
    return data_refusal(recipe, scan) or weights_refusal(recipe)


def data_refusal(recipe: Recipe, scan: ScanReport | None) -> str:
    """The engine's data rule (every class folder needs training images …) applied to the Data tab's scan, when
    that scan is of the recipe's folder."""
    data = recipe.data
    if data.dataset != "folder" or scan is None or not data.root or not _same_folder(scan.root, data.root):
        return ""
    try:
        check_usable(scan, data.root, recipe.model.in_channels)
    except BadInputError as exc:
        return f"{exc}. The Data tab shows the folder as scanned; press Rescan there after changing files."
    return ""


def weights_refusal(recipe: Recipe) -> str:
    """Pretrained weights that are not on this machine while downloads are forbidden (THAW_OFFLINE)."""
    model = recipe.model
    if model.weights_file or not zoo.downloads_forbidden():
        return ""
    try:
        weights = zoo.resolve_weights(model.arch, model.weights)
    except RecipeError:
        return ""  # the recipe's own error, said where the model is chosen and by the engine at start
    if weights is None or zoo.cached_weights_path(weights).is_file():
        return ""
    target = zoo.cached_weights_path(weights)
    return weights_unavailable_text(str(weights), target.name, str(target.parent), f"{zoo.OFFLINE_ENV} is set",
                                    model.arch)


def weights_unavailable_text(weights: str, file_name: str, folder: str, reason: str, arch: str = "") -> str:
    """The studio's words for pretrained weights that are neither cached nor downloadable."""
    text = (f"The pretrained weights {weights} are not on this computer and cannot be downloaded ({reason}). "
            f"Choose {WEIGHTS_MENU} to use a state dict (.pth) you have, or “None (train from scratch)” there; "
            f"or copy {file_name} into {folder}.")
    alternative = zoo.preferred_weights(arch) if arch else "DEFAULT"
    if alternative not in ("DEFAULT", weights):
        text += f" {alternative} is on this computer: choose it under Model → Weights."
    return text


def studio_error_text(error: Exception, arch: str = "") -> str:
    """An engine error raised before a run started (`arch`: the recipe's model), as the studio says it."""
    if isinstance(error, WeightsUnavailableError) and error.weights:
        return weights_unavailable_text(error.weights, error.file_name, error.folder, error.reason, arch)
    return str(error)


def _same_folder(a: str, b: str) -> bool:
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))
