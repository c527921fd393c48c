"""Goal 6 of the speed issue: from `python main.py` to the window shown, ≤ 3 s on this machine.

Each start runs the real main.py (runpy, as `python main.py` would: freeze_support, prepare_process, main) in a
fresh interpreter with QT_QPA_PLATFORM=offscreen. The only addition is a hook installed before main.py runs:
gui.app.create_app is wrapped so that an application-wide event filter sees the QMainWindow's first Paint; once
that paint has been processed (a 0 ms timer posted from it fires), the child prints its timings and quits. The
parent measures the wall time from spawning the interpreter to that line, so interpreter start-up and every
import are included. 5 starts (the first reported on its own: the coldest, when files are least likely cached),
`python main.py --help` (the CLI's start-up) as the baseline in the same invocation, and the 10 slowest imports of
`python -X importtime -c "import gui.main_window"`.

    .venv/bin/python bench/startup.py [--starts 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 3.0
MARK = "THAW-BENCH-SHOWN "

# Runs in the child, before main.py. Times are perf_counter values, converted to "seconds since the interpreter
# started" with the parent's measurement (see start_once).
DRIVER = r"""
import time
_t0 = time.perf_counter()
import json, os, runpy, sys
marks = {"driver": 0.0}
import gui.app as _app
marks["gui.app imported"] = time.perf_counter() - _t0
_create_app = _app.create_app

def create_app(argv=None):
    app = _create_app(argv)
    marks["QApplication created"] = time.perf_counter() - _t0
    import gui.main_window  # what run_studio imports next, timed on its own (it then finds it in sys.modules)
    marks["gui.main_window imported"] = time.perf_counter() - _t0
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QMainWindow

    class Watch(QObject):
        def eventFilter(self, obj, event):
            kind = event.type()
            if isinstance(obj, QMainWindow) and obj.isWindow():
                if kind == QEvent.Type.Show and "show()" not in marks:
                    marks["show()"] = time.perf_counter() - _t0
                elif kind == QEvent.Type.Paint and "first paint" not in marks:
                    marks["first paint"] = time.perf_counter() - _t0
                    QTimer.singleShot(0, done)
            return False

    def done():
        marks["painted, event loop running"] = time.perf_counter() - _t0
        sys.stdout.write("THAW-BENCH-SHOWN " + json.dumps(marks) + "\n")
        sys.stdout.flush()
        os._exit(0)  # the window was shown: that is all this start has to prove

    global _watch
    _watch = Watch()
    app.installEventFilter(_watch)
    return app

_app.create_app = create_app
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""


def seconds(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def child_env(settings: Path) -> dict:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", THAW_SETTINGS=str(settings), PYTHONPATH=str(ROOT))
    env.pop("THAW_LOG_TO_FILE", None)
    return env


def start_once(env: dict, timeout: float) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    marks = None
    for line in proc.stdout:  # the line arrives when the child has painted the window
        if line.startswith(MARK):
            wall = time.perf_counter() - started
            marks = json.loads(line[len(MARK):])
            break
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if marks is None:
        raise SystemExit(f"the studio did not show its window (exit {proc.returncode}):\n{err[-2000:]}")
    # The child's clock starts when the driver's first line runs: the interpreter's own start-up precedes it.
    offset = wall - marks["painted, event loop running"]
    return {"wall": wall, "marks": {k: v + offset for k, v in marks.items()}}


def cli_once(env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bare_python(env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - started


def import_times(env: dict, module: str = "gui.main_window") -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) for every import of `python -X importtime -c "import <module>"`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:"):].split("|", 2))
        rows.append((int(self_us), int(cumulative_us), name))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    settings = Path(tempfile.mkdtemp(prefix="thaw-bench-startup-")) / "thaw-settings.ini"
    env = child_env(settings)
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}; Python "
          f"{sys.version.split()[0]}; QT_QPA_PLATFORM=offscreen; settings in a temporary file")

    starts = [start_once(env, args.timeout) for _ in range(args.starts)]
    cli = [cli_once(env) for _ in range(args.starts)]
    bare = statistics.median(bare_python(env) for _ in range(3))
    first, rest = starts[0], starts[1:] or starts
    median = statistics.median(s["wall"] for s in rest)
    print(f"studio, first start : {first['wall']:.2f} s")
    print(f"studio, later starts: median {median:.2f} s ({seconds(s['wall'] for s in rest)})")
    phases = list(first["marks"])
    typical = min(rest, key=lambda s: abs(s["wall"] - median))
    previous = 0.0
    print("  where the time goes (the start closest to the median; seconds since the interpreter was spawned):")
    print(f"    {'python itself (bare `python -c pass`)':42s} {bare:5.2f} s")
    for phase in phases:
        at = typical["marks"][phase]
        label = {"driver": "interpreter up, driver running",
                 "gui.app imported": "import gui.app (PySide6, engine)",
                 "QApplication created": "QApplication created",
                 "gui.main_window imported": "import gui.main_window (torch, pyqtgraph …)",
                 "show()": "MainWindow() built, show() called",
                 "first paint": "first paint of the window",
                 "painted, event loop running": "paint done, event loop running"}.get(phase, phase)
        print(f"    {label:42s} {at:5.2f} s  (+{at - previous:.2f})")
        previous = at
    cli_median = statistics.median(cli)
    print(f"CLI `main.py --help`: median {cli_median:.2f} s ({seconds(cli)})")
    print(f"ratio: studio start-up / {GOAL_S:.0f} s goal = {median / GOAL_S:.2f} "
          f"({'met' if median <= GOAL_S else 'NOT met'}); studio / CLI --help = {median / cli_median:.2f}x")

    rows = import_times(env)
    total = next((cum for _, cum, name in rows if name.strip() == "gui.main_window"), 0)
    print(f"`python -X importtime -c \"import gui.main_window\"`: {total / 1e6:.2f} s in all")
    packages: dict[str, tuple[int, str]] = {}
    for _self, cum_us, name in rows:
        top = name.strip().split(".")[0]
        if cum_us > packages.get(top, (0, ""))[0]:
            packages[top] = (cum_us, name.strip())
    print("  10 slowest packages (the outermost import of each top-level package, with everything it imports):")
    for top, (cum_us, name) in sorted(packages.items(), key=lambda kv: -kv[1][0])[1:11]:
        print(f"    {cum_us / 1e6:6.3f} s  {top:14s} (first imported as {name})")
    print("  Thaw's own modules, slowest first (cumulative: what importing each one costs where it is first imported):")
    own = [r for r in rows if r[2].strip().split(".")[0] in ("gui", "engine")]
    for self_us, cum_us, name in sorted(own, key=lambda r: -r[1])[:10]:
        print(f"    {cum_us / 1e6:6.3f} s cumulative  {self_us / 1e6:6.3f} s self  {name.strip()}")
    print("  10 slowest modules by own time (excluding what they import):")
    for self_us, cum_us, name in sorted(rows, key=lambda r: -r[0])[:10]:
        print(f"    {self_us / 1e6:6.3f} s self  {cum_us / 1e6:6.3f} s cumulative  {name.strip()}")
    chain = [name.strip() for _s, _c, name in rows if name.strip() in ("torch._dynamo", "torchvision.ops.roi_align")]
    if chain:
        dynamo = max((c for _s, c, n in rows if n.strip() == "torch._dynamo"), default=0)
        print(f"  note: torch._dynamo ({dynamo / 1e6:.2f} s) is imported at start-up; torchvision.ops (pulled in by "
              f"torchvision.models) imports it")


if __name__ == "__main__":
    main()
