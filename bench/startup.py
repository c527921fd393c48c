"""Issue 28, goal 6: from `python main.py` to the window painted and usable, ≤ 1.5 s on an idle machine.

Each start runs the real main.py (runpy, as `python main.py` would: freeze_support, prepare_process, main) in a
fresh interpreter with QT_QPA_PLATFORM=offscreen. The only addition is a hook installed before main.py runs:
gui.app.create_app is wrapped so that an application-wide event filter sees the QMainWindow's paints. The studio
shows its window with its eight tabs and a working Data tab (choose, scan and browse a folder: no torch needed)
while torch and torchvision import in a thread (gui/workers/loading.py); then it builds the other tabs in place,
one per turn of the event loop. Three things are timed: the window's first paint has been processed (a 0 ms timer
posted from it fires: "window shown", the tabs answer and the Data tab works: the goal); the first paint after every
panel was built ("ready"); and, from the first paint to ready, the longest the event loop went without running a
10 ms timer ("longest stall": how long a click may wait while the rest loads).
The parent measures the wall time from spawning the interpreter to each line the child prints, so interpreter
start-up and every import are included. 5 starts (the first reported on its own: the coldest, when files are least
likely cached), `python main.py --help` (the CLI's start-up) as the baseline in the same invocation, and the
slowest imports of the panels (what the studio imports once torch is there).

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
GOAL_S = 1.5
SHOWN, READY = "THAW-BENCH-SHOWN ", "THAW-BENCH-READY "

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

def now():
    return time.perf_counter() - _t0

def report(kind):
    sys.stdout.write(f"THAW-BENCH-{kind} " + json.dumps(marks) + "\n")
    sys.stdout.flush()

def create_app(argv=None):
    app = _create_app(argv)
    marks["QApplication created"] = now()
    import gui.main_window  # what run_studio imports next, timed on its own (it then finds it in sys.modules)
    marks["gui.main_window imported"] = now()
    _start_imports = gui.main_window.start_imports

    def start_imports(on_finished):  # the window starts the import thread after its first paint
        marks["torch import started (thread)"] = now()
        importer, thread = _start_imports(on_finished)
        importer.finished.connect(lambda: marks.setdefault("torch imported", now()))  # in the import thread
        return importer, thread

    gui.main_window.start_imports = start_imports
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QMainWindow

    ticks = {"last": None, "longest": 0.0}

    def tick():  # the event loop's pulse, from the first paint until ready: its longest gap is the longest stall
        t = now()
        if ticks["last"] is not None:
            ticks["longest"] = max(ticks["longest"], t - ticks["last"])
        ticks["last"] = t

    def shown():
        marks["window painted, event loop running"] = now()
        report("SHOWN")
        global _pulse
        _pulse = QTimer()
        _pulse.setInterval(10)
        _pulse.timeout.connect(tick)
        _pulse.start()

    def ready_painted():
        marks["studio painted, event loop running"] = now()
        tick()
        marks["longest stall"] = ticks["longest"]
        report("READY")
        os._exit(0)  # the studio is built and drawn: that is all this start has to prove

    class Watch(QObject):
        def eventFilter(self, obj, event):
            kind = event.type()
            if isinstance(obj, QMainWindow) and obj.isWindow():
                if kind == QEvent.Type.Show and "show()" not in marks:
                    marks["show()"] = now()
                    obj.when_ready(lambda: marks.setdefault("panels built (ready)", now()))
                elif kind == QEvent.Type.Paint:
                    if "first paint" not in marks:
                        marks["first paint"] = now()
                        QTimer.singleShot(0, shown)
                    elif "panels built (ready)" in marks and "studio painted" not in marks:
                        marks["studio painted"] = now()
                        QTimer.singleShot(0, ready_painted)
            return False

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
    """Wall seconds from spawning the interpreter to the window painted (`shown`) and to the studio's panels built
    and painted (`ready`), with the child's marks on the same clock."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    walls, marks = {}, None
    for line in proc.stdout:
        for kind, prefix in (("shown", SHOWN), ("ready", READY)):
            if line.startswith(prefix):
                walls[kind] = time.perf_counter() - started
                marks = json.loads(line[len(prefix):])
        if "ready" in walls:
            break
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if "ready" not in walls:
        raise SystemExit(f"the studio did not show its window (exit {proc.returncode}):\n{err[-2000:]}")
    # The child's clock starts when the driver's first line runs: the interpreter's own start-up precedes it.
    offset = walls["ready"] - marks["studio painted, event loop running"]
    stall = marks.pop("longest stall")
    return {"wall": walls["shown"], "ready": walls["ready"], "stall": stall,
            "marks": {k: v + offset for k, v in marks.items()}}


def cli_once(env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bare_python(env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - started


def import_times(env: dict, module: str) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) for every import of `python -X importtime -c "import <module>"`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|", 2)
        rows.append((int(self_us), int(cumulative_us), name[1:].rstrip()))  # nested imports stay indented
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
    ready = statistics.median(s["ready"] for s in rest)
    print(f"studio, first start : window shown {first['wall']:.2f} s, ready {first['ready']:.2f} s")
    print(f"studio, later starts: window shown median {median:.2f} s ({seconds(s['wall'] for s in rest)}); "
          f"ready (panels built and painted) median {ready:.2f} s ({seconds(s['ready'] for s in rest)})")
    print(f"  longest stall of the event loop between the two (a click waits at most this long): "
          f"{seconds(s['stall'] for s in starts)} s")
    phases = sorted(first["marks"], key=first["marks"].get)
    typical = min(rest, key=lambda s: abs(s["wall"] - median))
    previous = 0.0
    print("  where the time goes (the start closest to the median; seconds since the interpreter was spawned):")
    print(f"    {'python itself (bare `python -c pass`)':42s} {bare:5.2f} s")
    for phase in phases:
        at = typical["marks"][phase]
        label = {"driver": "interpreter up, driver running",
                 "gui.app imported": "import gui.app (PySide6, engine)",
                 "QApplication created": "QApplication created",
                 "gui.main_window imported": "import gui.main_window (no torch)",
                 "show()": "MainWindow(deferred) made (Data tab), show()",
                 "first paint": "first paint: tabs, the Data tab usable",
                 "window painted, event loop running": "paint done, event loop running",
                 "torch import started (thread)": "torch import started (thread)",
                 "torch imported": "torch, torchvision, engine imported (thread)",
                 "panels built (ready)": "other tabs built in place (GUI thread)",
                 "studio painted": "first paint of the studio",
                 "studio painted, event loop running": "paint done: the studio is usable"}.get(phase, phase)
        print(f"    {label:42s} {at:5.2f} s  (+{at - previous:.2f})")
        previous = at
    cli_median = statistics.median(cli)
    print(f"CLI `main.py --help`: median {cli_median:.2f} s ({seconds(cli)})")
    print(f"ratio: window shown / {GOAL_S:.1f} s goal = {median / GOAL_S:.2f} "
          f"({'met' if median <= GOAL_S else 'NOT met'}); studio ready / goal = {ready / GOAL_S:.2f} "
          f"({'within' if ready <= GOAL_S else 'over'}); window shown / CLI --help = {median / cli_median:.2f}x")

    rows = import_times(env, "gui.panels.training_panel, gui.panels.model_panel, gui.panels.inference_panel")
    total = sum(cum for _, cum, name in rows if not name.startswith(" "))
    print(f"`python -X importtime -c \"import <the panels>\"` (what the studio imports once torch is loaded): "
          f"{total / 1e6:.2f} s in all")
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
