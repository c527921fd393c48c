"""Does packaging/thaw.spec collect what the engine imports lazily? A fast check in the suite (issue 27 item 3)
instead of a bundle build (4-15 minutes, 4.4 GB) on every change: the bundle once shipped without export because
onnxruntime's quantizer imports `fusion_utils` through a folder it appends to sys.path, which PyInstaller's import
analysis cannot follow, and nothing noticed until a user-like run of the bundle.

What PyInstaller finds by itself: every `import` statement of every collected module, also inside functions. What it
cannot find, and these tests look for:
  1. a module the spec excludes although the engine imports it (inside a function, or a data source's `needs`);
  2. a module a library imports by a folder it adds to sys.path at run time (the spec must name that folder in
     SEARCH_PATHS, which goes into the analysis' pathex);
  3. native libraries a package without a PyInstaller hook loads by path (the spec must collect them).
`make package-test` remains the proof that the bundle runs; these catch the known ways a change breaks it.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "thaw.spec"
OWN = ("engine", "gui")


def lazy_imports() -> dict[str, set[str]]:
    """Third-party modules the engine imports inside functions (module → files): what a bundle needs only when a
    feature runs (export, quantization, OpenVINO, TensorBoard, label issues, the data sources)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN:
                        found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def launched_modules() -> dict[str, set[str]]:
    """Modules the engine starts as `python -m MODULE` (torch.distributed.run for a multi-process run)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.List):
                values = [getattr(e, "value", None) for e in node.elts]
                for flag, module in zip(values, values[1:], strict=False):
                    if flag == "-m" and isinstance(module, str) and module.split(".")[0] not in OWN:
                        found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def data_source_needs() -> dict[str, set[str]]:
    """The modules the data sources' readers need beyond Thaw's own (PCAM: h5py; SVHN, Flowers-102: scipy)."""
    from engine.data.sources import all_sources

    found: dict[str, set[str]] = {}
    for source in all_sources():
        for module in source.needs:
            found.setdefault(module, set()).add(f"data source {source.name}")
    return found


def spec_assignment(name: str):
    """The value of a top-level `NAME = literal` in the spec, or None."""
    for node in ast.parse(SPEC.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == name for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def spec_collected_packages() -> set[str]:
    """Packages whose files the spec collects itself: the first argument of collect_dynamic_libs / collect_all /
    collect_data_files calls."""
    names = set()
    for node in ast.walk(ast.parse(SPEC.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                "collect_dynamic_libs", "collect_all", "collect_data_files") and node.args:
            if isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
    return names


@functools.cache  # four tests ask; the scan parses every engine file and imports the data sources
def needed_modules() -> dict[str, set[str]]:
    needed: dict[str, set[str]] = {}
    for table in (lazy_imports(), launched_modules(), data_source_needs()):
        for module, where in table.items():
            needed.setdefault(module, set()).update(where)
    return needed


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


# --- the scan itself finds what it must (so an empty scan cannot pass the checks below) ----------------------------
def test_the_scan_finds_the_engines_lazy_imports():
    needed = needed_modules()
    for module in ("onnxruntime.quantization", "openvino", "torch.utils.tensorboard", "torchvision.datasets",
                   "torch.distributed.run", "h5py", "cleanlab.filter"):
        assert module in needed, f"{module} not found by the scan: {sorted(needed)}"


# --- 1. nothing the engine imports is excluded ------------------------------------------------------------------------
def test_the_spec_excludes_nothing_the_engine_imports():
    excludes = spec_assignment("excludes")
    assert excludes, "packaging/thaw.spec has no literal `excludes` list"
    wrong = [f"{module} (imported in {', '.join(sorted(where))}) is excluded by {name!r}"
             for module, where in sorted(needed_modules().items()) for name in excludes
             if module == name or module.startswith(name + ".")]
    assert not wrong, "packaging/thaw.spec excludes what the engine needs:\n" + "\n".join(wrong)


# --- 2. modules reached through a folder a library appends to sys.path --------------------------------------------
PROBE = """
import importlib, json, os, sys
site = [os.path.realpath(p) for p in sys.path if p]
before_path = list(sys.path)
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception as exc:  # a module that does not import here cannot be checked here
        failed[name] = f"{type(exc).__name__}: {exc}"
added = [os.path.realpath(p) for p in sys.path if p not in before_path and os.path.isdir(p)]
injected = {}
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if "." in name or not path:
        continue
    folder = os.path.realpath(os.path.dirname(path))
    if os.path.basename(path) == "__init__.py":
        folder = os.path.dirname(folder)
    if folder in added:
        injected[name] = folder
print(json.dumps({"added": added, "injected": injected, "failed": failed}))
"""


def _package_relative(folder: str) -> tuple[str, ...] | None:
    """('onnxruntime', 'transformers') for …/site-packages/onnxruntime/transformers: relative to the deepest
    sys.path entry holding it (a virtual environment inside the checkout, as `make test` makes, is also under the
    checkout's own entry)."""
    bases = [os.path.realpath(e) for e in sys.path if e and os.path.isdir(e)]
    holding = [base for base in bases if folder.startswith(base + os.sep)]
    if not holding:
        return None
    return tuple(Path(os.path.relpath(folder, max(holding, key=len))).parts)


def test_modules_found_through_sys_path_are_collected():
    modules = sorted(m for m in needed_modules() if _installed(m))
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(modules)], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    declared = {tuple(entry) for entry in (spec_assignment("SEARCH_PATHS") or [])}
    missing = []
    for folder in report["added"]:
        relative = _package_relative(folder)
        if relative is not None and relative not in declared:
            names = sorted(n for n, f in report["injected"].items() if f == folder)
            missing.append(f"{'/'.join(relative)} (imports {', '.join(names) or 'nothing yet'} from it)")
    assert not missing, ("libraries the engine imports append these folders to sys.path and import top-level "
                         "modules from them, which PyInstaller cannot follow; name them in SEARCH_PATHS in "
                         "packaging/thaw.spec:\n" + "\n".join(missing))


# --- 3. native libraries of packages no hook knows ----------------------------------------------------------------
NATIVE = ("*.so", "*.so.*", "*.dll", "*.dylib", "*.pyd")


def _has_hook(package: str) -> bool:
    import _pyinstaller_hooks_contrib
    import PyInstaller

    folders = [Path(PyInstaller.__file__).parent / "hooks",
               Path(_pyinstaller_hooks_contrib.__file__).parent / "stdhooks", ROOT / "packaging" / "hooks"]
    return any((folder / f"hook-{package}.py").is_file() for folder in folders)


def test_native_libraries_of_packages_without_a_hook_are_collected():
    import pytest

    pytest.importorskip("PyInstaller")
    collected = spec_collected_packages()
    missing = []
    for top in sorted({m.split(".")[0] for m in needed_modules()}):
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations or _has_hook(top) or top in collected:
            continue
        folder = Path(next(iter(spec.submodule_search_locations)))
        # Beyond its own extension modules (which the import analysis finds): libraries loaded by path.
        loose = [p for pattern in NATIVE for p in folder.rglob(pattern)
                 if not p.name.startswith(p.parent.name) and ".cpython-" not in p.name and p.suffix != ".pyd"]
        if loose:
            missing.append(f"{top}: {len(loose)} native libraries, e.g. {loose[0].relative_to(folder.parent)}")
    assert not missing, ("packages the engine imports ship native libraries that no PyInstaller hook collects; "
                         "collect them in packaging/thaw.spec (collect_dynamic_libs):\n" + "\n".join(missing))
