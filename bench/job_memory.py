"""Issue 28: memory given back after the studio's jobs. The studio grew from 1.1 GB to 4.1 GB after one run, two
estimates and one evaluation. This runs the sequence run → estimate → estimate → evaluation (ResNet-18, 10 classes
of generated JPEGs, 128 px crops) through the studio's own job lifecycle (gui/jobs/runner.py, each job in a thread
of its own, as the Training and Evaluate tabs run them) and prints the process's resident memory after each step,
with the trim after a job (`gui/jobs/memory.py`) off and then on, each in a fresh process.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/job_memory.py          # both, one process each
    .venv/bin/python bench/job_memory.py --trim on|off                      # one sequence in this process

Goal: back within 300 MB of the memory before the sequence once the jobs have ended.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  - sets sys.path to the checkout


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sequence(trim: bool) -> None:
    import tempfile

    os.environ["THAW_SETTINGS"] = str(Path(tempfile.mkdtemp()) / "settings.ini")
    common.seeded_torch_home()
    base, runs = common.bench_dirs()
    data = common.make_jpeg_dataset(base / "memory-jpegs", classes=10, train_per_class=32, val_per_class=8)

    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication, QWidget

    import gui.jobs.memory as memory
    from engine.infer.evaluation import write_run_evaluation
    from engine.planning.presets import make_recipe
    from engine.train.estimate import estimate_run
    from engine.train.trainer import fit
    from gui.jobs.runner import JobRunner

    if not trim:
        memory.give_back_memory = lambda: None
    _app = QApplication.instance() or QApplication([])  # kept: the event loop needs it
    owner = QWidget()
    runner = JobRunner("bench", "Bench", owner)
    recipe = make_recipe("fine_tune_all", "resnet18", str(data), epochs=1)
    recipe.data.resize_size, recipe.data.crop_size = 146, 128
    recipe.data.num_workers = 0
    recipe.output_dir = str(runs)
    recipe.device = "cpu"

    def run_job(name: str, work) -> None:
        loop = QEventLoop()
        runner.job_finished.connect(loop.quit)
        runner.job_failed.connect(lambda message: print(f"  {name} failed: {message}"))
        runner.start(lambda task: work())
        loop.exec()
        runner.job_finished.disconnect()
        runner.job_failed.disconnect()
        print(f"  after {name:<12} {rss_mb():7.0f} MB", flush=True)

    start = rss_mb()
    print(f"trim {'on' if trim else 'off'}: before {start:7.0f} MB (torch, torchvision and Qt loaded)", flush=True)
    results = {}
    run_job("run", lambda: results.setdefault("run", fit(recipe.copy())))
    run_job("estimate", lambda: estimate_run(recipe.copy()))
    run_job("estimate", lambda: estimate_run(recipe.copy()))
    run_job("evaluation", lambda: write_run_evaluation(results["run"].run_dir))
    end = rss_mb()
    print(f"  grew by {end - start:.0f} MB (goal: within 300 MB)", flush=True)
    common.exit_now(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trim", choices=("on", "off"))
    args = parser.parse_args()
    if args.trim:
        sequence(args.trim == "on")
    for trim in ("off", "on"):
        subprocess.run([sys.executable, __file__, "--trim", trim], check=False)


if __name__ == "__main__":
    main()
