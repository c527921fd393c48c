"""The engine runs without Qt: importing every engine module with Qt blocked must work."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_engine_never_imports_qt():
    modules = sorted(".".join(p.relative_to(ROOT / "engine").with_suffix("").parts).removesuffix(".__init__")
                     for p in (ROOT / "engine").rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT / "engine")
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'qtpy', 'gui'):\n"
        "            raise ImportError('engine must not import ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        + "".join(f"import engine.{m}\n" for m in modules)
        + "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
