"""Regenerate Thaw's drawn resources: resources/thaw.svg (the icon), resources/thaw.png (256 px rendering)
and resources/sample.png (the small image the self-test decodes).

    .venv/bin/python packaging/make_resources.py

The icon: a six-armed ice crystal whose upper arms are still frozen (white, with side branches) and whose
lower arms have thawed into a neural network — warm nodes joined by edges, one drop falling away.
The files are checked in; run this only to change them.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"

CX, CY = 128.0, 116.0  # crystal centre
ARM = 78.0  # arm length


def _pt(angle_deg: float, r: float, cx: float = CX, cy: float = CY) -> tuple[float, float]:
    a = math.radians(angle_deg)
    return cx + r * math.cos(a), cy + r * math.sin(a)


def _f(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def icon_svg() -> str:
    frozen_arms = (-90, -30, -150)  # up, upper right, upper left (SVG y grows downwards)
    thawed_arms = (30, 90, 150)  # lower right, down, lower left
    parts: list[str] = []
    add = parts.append
    add('<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">')
    add("<title>Thaw</title>")
    add("<defs>")
    add('<linearGradient id="bg" x1="0" y1="0" x2="0.6" y2="1">'
        '<stop offset="0" stop-color="#14306b"/><stop offset="1" stop-color="#0b7d99"/></linearGradient>')
    add('<radialGradient id="glow" cx="0.5" cy="0.45" r="0.5">'
        '<stop offset="0" stop-color="#ffffff" stop-opacity="0.28"/>'
        '<stop offset="1" stop-color="#ffffff" stop-opacity="0"/></radialGradient>')
    add('<linearGradient id="warm" x1="0" y1="0" x2="0" y2="1">'
        '<stop offset="0" stop-color="#ffd27a"/><stop offset="1" stop-color="#ff8a3d"/></linearGradient>')
    add("</defs>")
    add('<rect x="8" y="8" width="240" height="240" rx="52" fill="url(#bg)"/>')
    add(f'<circle cx="{_f(CX)}" cy="{_f(CY)}" r="104" fill="url(#glow)"/>')

    # Network edges between the thawed nodes (drawn first, under the arms).
    ends = [_pt(a, ARM) for a in thawed_arms]
    edges = [(ends[0], ends[1]), (ends[1], ends[2])]
    mids = [_pt(a, ARM * 0.55) for a in thawed_arms]
    edges += [(ends[0], mids[1]), (ends[2], mids[1]), (mids[0], ends[1]), (mids[2], ends[1])]
    for (x1, y1), (x2, y2) in edges:
        add(f'<line x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" stroke="#ffc069" '
            'stroke-opacity="0.75" stroke-width="4" stroke-linecap="round"/>')

    # Frozen arms: white spokes with two pairs of side branches and a pointed tip.
    ice = 'stroke="#f4fbff" stroke-linecap="round" stroke-linejoin="round" fill="none"'
    for a in frozen_arms:
        x, y = _pt(a, ARM)
        add(f'<line x1="{_f(CX)}" y1="{_f(CY)}" x2="{_f(x)}" y2="{_f(y)}" {ice} stroke-width="11"/>')
        for r, length in ((ARM * 0.45, 24.0), (ARM * 0.75, 15.0)):
            bx, by = _pt(a, r)
            for side in (-45, 45):
                ex, ey = _pt(a + side, length, bx, by)
                add(f'<line x1="{_f(bx)}" y1="{_f(by)}" x2="{_f(ex)}" y2="{_f(ey)}" {ice} stroke-width="8"/>')

    # Thawed arms: warm spokes ending in nodes, a middle node on each.
    for a in thawed_arms:
        x, y = _pt(a, ARM)
        add(f'<line x1="{_f(CX)}" y1="{_f(CY)}" x2="{_f(x)}" y2="{_f(y)}" stroke="url(#warm)" '
            'stroke-width="9" stroke-linecap="round"/>')
    for (x, y) in mids:
        add(f'<circle cx="{_f(x)}" cy="{_f(y)}" r="7.5" fill="#ffe3ad" stroke="#ff9a4a" stroke-width="3"/>')
    for (x, y) in ends:
        add(f'<circle cx="{_f(x)}" cy="{_f(y)}" r="14" fill="url(#warm)" stroke="#fff4e0" stroke-width="4"/>')

    # A drop falling from the lowest node.
    dx, dy = ends[1][0], ends[1][1] + 24
    add(f'<path d="M {_f(dx)} {_f(dy)} c 0 0 -9 11 -9 17 a 9 9 0 0 0 18 0 c 0 -6 -9 -17 -9 -17 z" '
        'fill="#9fe3ff" stroke="#e8f8ff" stroke-width="2"/>')

    # Centre: half ice, half warm node.
    add(f'<circle cx="{_f(CX)}" cy="{_f(CY)}" r="19" fill="#f4fbff"/>')
    add(f'<path d="M {_f(CX - 19)} {_f(CY)} a 19 19 0 0 0 38 0 z" fill="url(#warm)"/>')
    add(f'<circle cx="{_f(CX)}" cy="{_f(CY)}" r="19" fill="none" stroke="#ffffff" stroke-width="3"/>')
    add("</svg>")
    return "\n".join(parts) + "\n"


def render_png(svg_path: Path, png_path: Path, size: int = 256) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - fonts, painting
    renderer = QSvgRenderer(str(svg_path))
    if not renderer.isValid():
        raise SystemExit(f"invalid SVG: {svg_path}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(png_path), "PNG"):
        raise SystemExit(f"could not write {png_path}")


def sample_png(path: Path) -> None:
    """A 64×48 RGB test card: a horizontal red ramp, a vertical green ramp, a blue disc, a white top-left pixel.
    Non-square on purpose, so a transposed decode is caught."""
    import numpy as np
    from PIL import Image

    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = (xx * 255 // (w - 1)).astype(np.uint8)
    img[..., 1] = (yy * 255 // (h - 1)).astype(np.uint8)
    img[..., 2] = np.where((xx - 40) ** 2 + (yy - 24) ** 2 < 14 ** 2, 230, 40).astype(np.uint8)
    img[0, 0] = (255, 255, 255)
    Image.fromarray(img, "RGB").save(path, optimize=True)


def main() -> int:
    RESOURCES.mkdir(exist_ok=True)
    svg = RESOURCES / "thaw.svg"
    svg.write_text(icon_svg(), encoding="utf-8")
    render_png(svg, RESOURCES / "thaw.png")
    sample_png(RESOURCES / "sample.png")
    for name in ("thaw.svg", "thaw.png", "sample.png"):
        print(f"wrote {RESOURCES / name} ({(RESOURCES / name).stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
