"""Session-wide test set-up: a seeded TORCH_HOME (torchvision's exact cache layout), no downloads, and runs
written under a temporary folder, never the user's."""

from __future__ import annotations

import contextlib
import gc
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import tests.tiny_arch  # noqa: F401 - registers the suite's architecture (tiny_resnet) with the zoo in this process
from tests.helpers import make_image_folder

ROOT = Path(__file__).parents[1]

# One intra-op thread: the suite's tiny models are faster that way on 2 cores, and a Qt worker thread and the
# test thread do not fight over OpenMP's spinning threads.
torch.set_num_threads(1)

# The files that take longest, longest first (--junitxml on an idle machine, 2026-12-07). `make test` hands whole
# files to its two processes in collection order (pytest-xdist's loadfile with --no-loadscope-reorder); xdist's own
# order (most tests first) left the few-test, many-process files last, and one process then ran them alone for
# minutes while the other idled. Longest first keeps both busy to the end. A file not listed keeps its place after
# these; a slow new file belongs here.
LONGEST_FILES = (
    "tests/engine/test_export.py",  # every format of every family, parity-checked
    "tests/engine/test_distributed_runs.py",  # two-process runs (torchrun): ~3 torch imports and a run each
    "tests/test_selftest.py",  # the self-test from source, in child processes
    "tests/gui/test_training_processes.py",  # the studio's child and two-process runs
    "tests/engine/test_surgery.py",
    "tests/engine/test_hostile_issue22.py",
    "tests/gui/test_strategy_presets.py",
    "tests/gui/test_main_window.py",
    "tests/gui/test_evaluate_panel.py",
    "tests/engine/test_prune.py",  # a pruned run exported in every format, parity-checked
    "tests/gui/test_quitting.py",  # the studio quit mid-job, as a real process
    "tests/gui/test_export_dialog.py",
    "tests/engine/test_training.py",
    "tests/engine/test_head_fit.py",
    "tests/test_bundle_contents.py",  # one child process importing every lazily imported library
    "tests/gui/test_recipe_files.py",
    "tests/engine/test_hostile_cli.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Longest files first (LONGEST_FILES), then the rest with the most tests first; within a file, its own order."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    count: dict[str, int] = {}
    for item in items:
        count[item.nodeid.split("::")[0]] = count.get(item.nodeid.split("::")[0], 0) + 1
    position = {id(item): i for i, item in enumerate(items)}

    def key(item):
        path = item.nodeid.split("::")[0]
        return (rank.get(path, len(rank)), -count[path], path, position[id(item)])

    items.sort(key=key)


def pytest_collection_finish(session):
    """Move everything the imports made (torch, torchvision, Qt, pyqtgraph, the engine, the studio, every test
    module: collection has imported them all, and no test has run) out of the cyclic garbage collector's reach:
    a full collection then walks only what the tests make. The studio's tests collect in the GUI thread before and
    after each test (tests/gui/conftest.py), and with ~400 k objects from the imports each pass took ~0.3 s.
    Objects are only frozen, not kept: what the tests create is collected as before."""
    gc.collect()
    gc.freeze()


# Weight files the tests put where torchvision's loader looks: <TORCH_HOME>/hub/checkpoints/<file from the URL>.
# tiny_resnet (tests/tiny_arch.py) is what most tests train; resnet18 and mobilenet_v3_small where the architecture
# is the subject (zoo, weights, surgery, stages, a few end-to-end runs).
SEEDED_WEIGHTS = ("tiny_resnet", "resnet18", "mobilenet_v3_small")


def seed_torch_home(torch_home: Path, archs=SEEDED_WEIGHTS) -> dict[str, Path]:
    """Write a seeded random state dict for each arch's DEFAULT weights, named exactly as torchvision expects."""
    from engine.model import zoo

    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for arch in archs:
        weights = zoo.weights_enum(arch).DEFAULT
        path = folder / zoo.weights_file_name(weights)
        if not path.exists():
            torch.manual_seed(1234)
            # Written aside, then renamed: the test processes of `make test` (pytest-xdist) may seed one kept
            # THAW_TEST_TORCH_HOME at once, and none may read another's half-written file.
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            torch.save(zoo.get_model(arch, weights=None, num_classes=len(weights.meta["categories"])).state_dict(),
                       partial)
            os.replace(partial, path)
        files[arch] = path
    return files


@pytest.fixture(scope="session", autouse=True)
def offline_torch_home(tmp_path_factory):
    # THAW_TEST_TORCH_HOME keeps the seeded weight files between sessions: bench/mutation.sh runs one short session
    # per mutant, and writing them takes about a second each time.
    kept = os.environ.get("THAW_TEST_TORCH_HOME")
    home = Path(kept) if kept else tmp_path_factory.mktemp("torch_home")
    runs = tmp_path_factory.mktemp("runs")
    cache = tmp_path_factory.mktemp("feature_cache")
    names = ("TORCH_HOME", "THAW_OFFLINE", "THAW_RUNS_DIR", "THAW_CACHE_DIR", "THAW_ARCH_MODULES", "PYTHONPATH")
    saved = {k: os.environ.get(k) for k in names}
    # Every process the tests start (the CLI, torchrun's ranks, the studio's child run) knows tiny_resnet and
    # imports this checkout's code whatever its working folder.
    os.environ["THAW_ARCH_MODULES"] = "tests.tiny_arch"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    os.environ["TORCH_HOME"] = str(home)
    os.environ["THAW_OFFLINE"] = "1"  # a test that would download fails loudly instead
    os.environ["THAW_RUNS_DIR"] = str(runs)
    os.environ["THAW_CACHE_DIR"] = str(cache)  # cached backbone features
    files = seed_torch_home(home)
    yield {"home": home, "files": files, "runs": runs, "cache": cache}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """3 classes × 12 images of 40×40, plus a truncated JPEG and a non-image in the first class."""
    return make_image_folder(tmp_path_factory.mktemp("images"), classes=3, per_class=12, broken=True)


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


# --- the command line: in this process, or as a user runs it ------------------------------------------------------


def run_thaw(*args, timeout: float = 300, cwd: Path | str = ROOT, env: dict | None = None,
         traceback_allowed: bool = False) -> subprocess.CompletedProcess:
    """`python main.py ARGS` in a subprocess, as a user runs it (exit code, stdout, stderr as text). Where the process
    boundary is the point (Ctrl-C, an interpreter's start, what reaches the terminal); elsewhere use `cli`, which
    runs the same `engine.cli.main` in this process without an interpreter's and torch's start-up. The CLI never
    shows a traceback: this fails the test if stderr holds one (unless `traceback_allowed`)."""
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=cwd,
                         env=dict(os.environ) if env is None else env, capture_output=True, text=True,
                         timeout=timeout)
    if not traceback_allowed:
        assert "Traceback (most recent call last)" not in out.stderr, out.stderr
    return out


@dataclass
class CliResult:
    """What `cli` saw: the exit code and everything printed."""

    code: int
    out: str
    err: str

    def __iter__(self):  # code, out, err = cli(...)
        return iter((self.code, self.out, self.err))

    @property
    def returncode(self) -> int:  # the name subprocess.CompletedProcess uses
        return self.code

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err


def run_cli(*args) -> CliResult:
    """The command line in this process: `engine.cli.main(ARGS)` with stdout and stderr captured, an argparse exit
    turned into its code. The exit codes and one-line messages are the CLI's own (main() turns the engine's errors
    into them); an exception main() does not handle propagates and fails the test, as a traceback would."""
    from engine.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def thaw():
    """`thaw(*args)`: the command line in a subprocess (see run_thaw)."""
    return run_thaw


@pytest.fixture(scope="session")
def cli():
    """`cli(*args)`: the command line in this process (see run_cli)."""
    return run_cli


# --- events ------------------------------------------------------------------------------------------------------


class EventRecorder:
    """A subscriber that keeps every event it hears, in order: `Trainer(recipe, [recorder])`."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def first(self, kind: type):
        return next(e for e in self.events if isinstance(e, kind))

    def types(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


@pytest.fixture
def recorder() -> EventRecorder:
    return EventRecorder()


# --- trained runs, shared by the session ---------------------------------------------------------------------------


class TrainedRuns:
    """Finished (or stopped) runs trained once per session and shared: `trained_runs.get("feature_extraction")`.

    A run is identified by everything that makes it — strategy, epochs, data folder, recipe overrides and a stop
    after some epoch — so two tests asking for the same run share one folder. The folder is shared: a test that
    changes it (evaluates it, resumes it, tampers with a checkpoint) takes `copy(...)` into its own tmp_path."""

    def __init__(self, root: Path, default_data: Path):
        self.root = root
        self.default_data = default_data
        self._runs: dict[str, Path] = {}

    def get(self, strategy: str = "feature_extraction", epochs: int = 2, data: Path | None = None,
            stop_after_epochs: int = 0, evaluated: bool = False, **overrides) -> Path:
        """The run's folder. `stop_after_epochs`: stopped (with a checkpoint) after that many epochs instead of
        finished; `evaluated`: evaluation.json and the OOD calibration written, as the CLI and the studio do at
        the end of a run."""
        data = Path(data) if data is not None else self.default_data
        key = repr((strategy, epochs, str(data), stop_after_epochs, evaluated, sorted(overrides.items())))
        if key not in self._runs:
            self._runs[key] = self._train(strategy, epochs, data, stop_after_epochs, evaluated, overrides)
        return self._runs[key]

    def copy(self, run: Path, into: Path) -> Path:
        """A private copy of a shared run, in a runs folder of its own (`into`/runs/<run name>)."""
        target = into / "runs" / run.name
        shutil.copytree(run, target)
        return target

    def _train(self, strategy: str, epochs: int, data: Path, stop_after_epochs: int, evaluated: bool,
               overrides: dict) -> Path:
        from engine.train import events as ev
        from engine.train.trainer import Trainer
        from tests.helpers import tiny_recipe

        out = self.root / f"run{len(self._runs)}"
        recipe = tiny_recipe(data, strategy, epochs=epochs, out=out, **overrides)
        control = ev.RunControl()
        callbacks = []
        if stop_after_epochs:
            def stop(event) -> None:
                if isinstance(event, ev.EpochFinished) and event.epoch + 1 >= stop_after_epochs:
                    control.request_stop()
            callbacks.append(stop)
        result = Trainer(recipe, callbacks, control).fit()
        expected = ("stopped",) if stop_after_epochs else ("finished", "early_stopped")
        assert result.status in expected, result.error
        if evaluated:
            from engine.infer.evaluation import write_run_evaluation

            write_run_evaluation(result.run_dir)
        return Path(result.run_dir)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, image_folder, offline_torch_home) -> TrainedRuns:
    return TrainedRuns(tmp_path_factory.mktemp("trained_runs"), image_folder)
