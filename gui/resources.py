"""Finding Thaw's bundled files (icons, sample images) from a source checkout and from a PyInstaller bundle.

From source the files live in `<repo>/resources/`; in a PyInstaller bundle the spec copies that folder to
`<bundle>/_internal/resources/` (onedir) and the bootloader points `sys._MEIPASS` at `<bundle>/_internal`.
Env THAW_RESOURCES overrides both (a folder), for packagers who install the files elsewhere.

Nothing here imports Qt at module level: `resource_path` is usable from the CLI and the self-test before a
QApplication exists; `app_icon()` imports QtGui when it is called.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

RESOURCES_ENV = "THAW_RESOURCES"
ICON_PNG = "thaw.png"
ICON_SVG = "thaw.svg"
SAMPLE_IMAGE = "sample.png"


class ResourceNotFoundError(FileNotFoundError):
    """A bundled file is missing; the message names the file and the folder it was looked for in."""


def resources_dir() -> Path:
    """The folder holding Thaw's resources: $THAW_RESOURCES, the bundle's copy, or the checkout's."""
    override = os.environ.get(RESOURCES_ENV)
    if override:
        return Path(override).expanduser()
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:  # PyInstaller: onedir → <bundle>/_internal, onefile → the temporary unpack folder
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def docs_dir() -> Path:
    """The folder holding the guides (docs/GUI.md …): the bundle's copy (the spec packs docs/) or the checkout's."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "docs"
    return Path(__file__).resolve().parent.parent / "docs"


def resource_path(name: str) -> Path:
    """The path of a bundled file, e.g. resource_path("thaw.png"); raises ResourceNotFoundError if absent."""
    path = resources_dir() / name
    if not path.is_file():
        raise ResourceNotFoundError(f"bundled resource {name!r} not found in {resources_dir()}")
    return path


def find_resource(name: str) -> Path | None:
    """Like resource_path, but None when the file is absent."""
    path = resources_dir() / name
    return path if path.is_file() else None


def app_icon():
    """The application icon as a QIcon (PNG at 256 px plus the SVG for other sizes); empty if neither exists.

    Needs a QGuiApplication for rendering, but may be called before one exists (QIcon loads lazily).
    """
    from PySide6.QtGui import QIcon

    icon = QIcon()
    png = find_resource(ICON_PNG)
    if png is not None:
        icon.addFile(str(png))
    svg = find_resource(ICON_SVG)
    if svg is not None and _svg_icons_supported():
        icon.addFile(str(svg))
    return icon


def _svg_icons_supported() -> bool:
    """Whether Qt can read SVG files (the imageformats/qsvg plugin is present): in a bundle it may be left out."""
    try:
        from PySide6.QtGui import QImageReader
    except ImportError:
        return False
    return b"svg" in {bytes(fmt.data()) for fmt in QImageReader.supportedImageFormats()}
