"""The system libraries Qt's X11 platform plugin (xcb) needs on Linux, and which of them are missing.

PySide6's wheels bring Qt but not the X11 client libraries its xcb plugin links against; on a bare Debian or
Ubuntu several are absent (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1 …) and Qt aborts with a generic "could
not load the Qt platform plugin xcb". The dynamic linker knows exactly what is missing: `ldd` on the plugin lists
every library it needs, transitively, with "not found" for the absent ones. Standard library only: this runs
before anything creates a QApplication (the self-test, the studio's start).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Debian names a shared library's package after its soname (libfoo.so.1 → libfoo1, libfoo-x11.so.0 →
# libfoo-x11-0); these do not follow the rule.
PACKAGE_EXCEPTIONS = {"libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
                      "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libGLX.so.0": "libglx0",
                      "libOpenGL.so.0": "libopengl0", "libdbus-1.so.3": "libdbus-1-3"}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)


def xcb_plugin() -> Path | None:
    """PySide6's libqxcb.so, found without importing Qt (importing QtCore is safe, but this stays stdlib-only)."""
    try:
        import PySide6
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_from_ldd(output: str) -> list[str]:
    """The sonames `ldd` reports as not found, each once, in order."""
    return list(dict.fromkeys(_NOT_FOUND.findall(output)))


def debian_package(soname: str) -> str:
    if soname in PACKAGE_EXCEPTIONS:
        return PACKAGE_EXCEPTIONS[soname]
    match = re.fullmatch(r"(.+?)\.so\.(\d+)(?:\..*)?", soname)
    if not match:
        return soname
    name, version = match.group(1).lower(), match.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def missing_xcb_libraries(plugin: Path | None = None, run=subprocess.run) -> list[str] | None:
    """The sonames the xcb plugin needs that this system lacks ([] when none); None when it cannot be told (not
    Linux, no plugin, no ldd)."""
    if not sys.platform.startswith("linux"):
        return None
    plugin = plugin or xcb_plugin()
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None:
        return None
    try:
        proc = run([ldd, str(plugin)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return missing_from_ldd(proc.stdout + proc.stderr)


def missing_text(missing: list[str]) -> str:
    packages = list(dict.fromkeys(debian_package(soname) for soname in missing))
    return (f"Qt's X11 platform plugin (xcb) cannot load: the system lacks {', '.join(missing)}. On Debian or "
            f"Ubuntu: sudo apt-get install {' '.join(packages)} (the README lists them all).")


def xcb_will_be_used() -> bool:
    """Qt on Linux would pick its xcb plugin here: QT_QPA_PLATFORM asks for it, or nothing is asked and an X11
    display is there without a Wayland one."""
    if not sys.platform.startswith("linux"):
        return False
    asked = os.environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if asked:
        return asked == "xcb"
    return bool(os.environ.get("DISPLAY")) and not os.environ.get("WAYLAND_DISPLAY")
