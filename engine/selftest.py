"""The self-test (`python main.py --self-test`, `Thaw --self-test` in a bundle): does this installation work?

One line per check, with its time, then a summary; exit status 0 when every check passed, 1 otherwise:

    ok    torch              3.10 s  torch 2.14.1+cu130 (CUDA 13.0 build), no GPU found: CPU
    FAIL  main window        0.12 s  ImportError: cannot import name 'MainWindow' from 'gui.main_window'
    self-test FAILED: 1 of 10 checks failed (main window)

This module runs checks and holds the engine's (no Qt): torch, torch._dynamo (the optimizer path imports it),
torchvision ops (nms, the compiled extension), image decode (PIL and torchvision's image extension agree), train
step (forward/backward/Adam on generated images), engine run (a one-batch run through engine.train.trainer,
checkpoint written and read back), data loader worker, export (ONNX through torch's exporter, read back and
checked in onnxruntime, int8). The studio adds its own (gui/selftest_checks.py:
resources, Qt, main window); main.py puts them together.

Each check imports what it checks inside itself: a package that is missing or broken fails its own line, not the
whole self-test. A `warn` line is reported but does not fail the test (e.g. data loader workers in a frozen build,
which the engine does not use there). Nothing touches the user's files: settings and runs go to a temporary folder,
no model needs pretrained weights, and downloads are forbidden (THAW_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.environment import MAX_WORKERS_ENV

OK, FAIL, WARN, SKIP, TIMEOUT = "ok", "FAIL", "warn", "skip", "TIMEOUT"

# Every check has a time limit (a hung self-test reports nothing, which is how issue 27's bundle hid its failures).
# Generous: a first `import torch` from a bundle on a busy machine takes tens of seconds.
DEFAULT_LIMIT_S = 120.0
LIMIT_SCALE_ENV = "THAW_SELFTEST_LIMIT_SCALE"  # e.g. 3 on a very slow machine: every limit × 3


@dataclass(frozen=True)
class TimedCheck:
    """A check with its time limit. `in_thread`: it runs in a worker thread, so a check that hangs is reported as
    TIMEOUT and the self-test goes on (the thread is abandoned). Checks that need the main thread (Qt's) run there
    under a watchdog that, past the limit, prints the TIMEOUT line and the summary and ends the process: a thread
    that cannot return cannot be taken back, and a self-test that never ends reports nothing."""

    name: str
    run: Callable[[], str]
    limit_s: float = DEFAULT_LIMIT_S
    in_thread: bool = False


Check = tuple[str, Callable[[], str]] | TimedCheck


class CheckWarning(Exception):
    """Raised by a check whose problem is worth reporting but does not make the installation unusable."""


class CheckSkipped(Exception):
    """Raised by a check that cannot run here (e.g. it needs an earlier check that failed)."""


class _Activity:
    """What the running check says it is doing (`doing()`), for its TIMEOUT line."""

    text = ""


def doing(text: str) -> None:
    """Called by a check before each step that could take long: a TIMEOUT names the step it was in."""
    _Activity.text = text


@dataclass
class CheckResult:
    name: str
    status: str  # ok, FAIL, warn, skip, TIMEOUT
    seconds: float
    detail: str

    @property
    def failed(self) -> bool:
        return self.status in (FAIL, TIMEOUT)

    def line(self) -> str:
        return f"{self.status:<5} {self.name:<18} {self.seconds:6.2f} s  {self.detail}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _as_timed(check: Check) -> TimedCheck:
    # A plain (name, function) runs in the main thread, as before limits existed (Qt needs it), with the default limit.
    return check if isinstance(check, TimedCheck) else TimedCheck(check[0], check[1])


def _limit(check: TimedCheck) -> float:
    try:
        scale = float(os.environ.get(LIMIT_SCALE_ENV, "") or 1.0)
    except ValueError:
        scale = 1.0
    return check.limit_s * max(scale, 0.01)


def _where(thread_id: int | None) -> str:
    """Where a stuck thread is: its innermost frame outside Python's standard library (the check's own code or the
    library it called), and the innermost frame when that is another (e.g. threading.py's wait), as file:line."""
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    if frame is None:
        return ""

    def text(f) -> str:
        return f"{Path(f.f_code.co_filename).name}:{f.f_lineno} in {f.f_code.co_name}"

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    own, probe = None, frame
    while probe is not None and own is None:
        if not Path(probe.f_code.co_filename).resolve().is_relative_to(stdlib):
            own = probe
        probe = probe.f_back
    if own is None or own is frame:
        return text(frame)
    return f"{text(own)} (innermost {text(frame)})"


def _timeout_detail(limit: float, thread_id: int | None) -> str:
    where = _where(thread_id)
    return (f"did not finish within its {limit:.0f} s limit while {_Activity.text or 'starting'}"
            + (f"; at {where}" if where else ""))


def _outcome(check: TimedCheck) -> tuple[str, str]:
    try:
        return OK, check.run() or ""
    except CheckWarning as exc:
        return WARN, str(exc)
    except CheckSkipped as exc:
        return SKIP, str(exc)
    except BaseException as exc:  # noqa: BLE001 - a self-test reports every failure, SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = _describe(exc)
        if os.environ.get("THAW_SELFTEST_TRACEBACK"):
            detail += "\n" + traceback.format_exc()
        return FAIL, detail


def _in_thread(check: TimedCheck, limit: float) -> tuple[str, str]:
    box: list[tuple[str, str]] = []
    worker = threading.Thread(target=lambda: box.append(_outcome(check)), name=f"self-test {check.name}",
                              daemon=True)  # daemon: a hung check never keeps the process alive at exit
    worker.start()
    worker.join(limit)
    if worker.is_alive() or not box:
        return TIMEOUT, _timeout_detail(limit, worker.ident)
    return box[0]


class _Watchdog:
    """For a check in the main thread: past its limit, print its TIMEOUT line and the summary, then `on_hang(1)`
    (os._exit: the main thread is stuck, nothing else can end the process)."""

    def __init__(self, check: TimedCheck, limit: float, done: list[CheckResult], started: float, out,
                 on_hang: Callable[[int], None]):
        self.check, self.limit, self.done, self.started, self.out, self.on_hang = (check, limit, done, started, out,
                                                                                  on_hang)
        self._lock = threading.Lock()
        self._finished = False
        self._timer = threading.Timer(limit, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._finished = True
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            result = CheckResult(self.check.name, TIMEOUT, time.perf_counter() - self.started,
                                 _timeout_detail(self.limit, threading.main_thread().ident)
                                 + " (in the main thread: the self-test stops here)")
            _print(result.line(), self.out)
            _print(summary_line([*self.done, result], time.perf_counter() - _RunClock.started), self.out)
            self.on_hang(1)


class _RunClock:
    started = time.perf_counter()


def _hard_exit(code: int) -> None:
    os._exit(code)


def run_checks(checks: list[Check], out=None, on_hang: Callable[[int], None] = _hard_exit) -> list[CheckResult]:
    """Run each check within its limit, print its line at once (a later hard crash still leaves the earlier lines)."""
    results: list[CheckResult] = []
    for check in map(_as_timed, checks):
        limit = _limit(check)
        doing("")
        start = time.perf_counter()
        if check.in_thread:
            status, detail = _in_thread(check, limit)
        else:
            with _Watchdog(check, limit, results, start, out, on_hang):
                status, detail = _outcome(check)
        result = CheckResult(check.name, status, time.perf_counter() - start, detail)
        results.append(result)
        _print(result.line(), out)
    return results


def summary_line(results: list[CheckResult], seconds: float) -> str:
    failed = [r.name for r in results if r.failed]
    if failed:
        return (f"self-test FAILED: {len(failed)} of {len(results)} checks failed ({', '.join(failed)}) "
                f"in {seconds:.1f} s")
    warned = [r.name for r in results if r.status == WARN]
    extra = f", {len(warned)} warning(s) ({', '.join(warned)})" if warned else ""
    return f"self-test passed: {len(results)} checks in {seconds:.1f} s{extra}"


def _print(text: str, out=None) -> None:
    stream = out or sys.stdout
    if stream is None:
        return
    print(text, file=stream, flush=True)


@contextmanager
def _temporary_environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class EngineChecks:
    """The checks that need no Qt, sharing a temporary folder."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.run_dir: Path | None = None  # the engine run's folder, which the evaluation check evaluates
        self.images: Path | None = None
        self.restore: Callable[[], None] = lambda: None

    def checks(self) -> list[Check]:
        # In worker threads: none needs the main thread, and a hung one is reported while the others still run.
        return [TimedCheck(name, run, limit, in_thread=True) for name, run, limit in (
            ("torch", self.check_torch, 180.0),  # the first import of torch, from a cold bundle on a busy machine
            ("torch._dynamo", self.check_dynamo, 120.0),
            ("torchvision ops", self.check_torchvision_ops, 60.0),
            ("image decode", self.check_image_decode, 60.0),
            ("train step", self.check_train_step, 60.0),
            ("engine run", self.check_engine_run, 120.0),
            ("data loader worker", self.check_worker, 150.0),  # the DataLoader's own timeout is 120 s
            ("export", self.check_export, 180.0),
            ("evaluation", self.check_evaluation, 120.0),
            ("OpenVINO export", self.check_openvino, 180.0),
            ("ExecuTorch export", self.check_executorch, 180.0),
            ("Core ML export", self.check_coreml, 180.0),
            ("distributed run", self.check_distributed, 180.0),
        )]

    # --- torch ------------------------------------------------------------------------------------------------
    def check_torch(self) -> str:
        import torch

        x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        if float((x @ x.T).sum()) != 83.0:
            raise AssertionError("a 2×3 matrix product gave the wrong result")
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        if torch.cuda.is_available():
            device = f"GPU: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} found)"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "Apple GPU (MPS)"
        else:
            device = "no GPU found: CPU"
        threads = torch.get_num_threads()
        # The checks' tensors are tiny: one thread is faster than a pool, and far faster on a busy machine.
        torch.set_num_threads(1)
        self.restore = lambda: torch.set_num_threads(threads)
        return f"torch {torch.__version__} ({build}), {device}, {threads} CPU threads"

    def check_torchvision_ops(self) -> str:
        import torch
        import torchvision
        from torchvision.ops import nms, roi_align

        boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
        scores = torch.tensor([0.9, 0.8, 0.7])
        keep = nms(boxes, scores, iou_threshold=0.5).tolist()
        if keep != [0, 2]:
            raise AssertionError(f"torchvision.ops.nms kept {keep}, expected [0, 2]")
        feature = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
        pooled = roi_align(feature, [torch.tensor([[0.0, 0.0, 3.0, 3.0]])], output_size=1, aligned=False)
        if pooled.shape != (1, 1, 1, 1):
            raise AssertionError(f"torchvision.ops.roi_align gave shape {tuple(pooled.shape)}")
        return f"torchvision {torchvision.__version__}: nms kept [0, 2], roi_align ok (compiled ops loaded)"

    def check_dynamo(self) -> str:
        import torch._dynamo  # what torch.optim and torchvision import; it reads torch's own .py sources

        if not callable(getattr(torch._dynamo, "is_compiling", None)):
            raise AssertionError("torch._dynamo imported without is_compiling()")

        @torch._dynamo.disable
        def plus_one(x):
            return x + 1

        if int(plus_one(torch.tensor(1))) != 2:
            raise AssertionError("a torch._dynamo.disable'd function gave the wrong result")
        return "imported, disable() works"

    def check_image_decode(self) -> str:
        import numpy as np
        import torch
        from PIL import Image
        from torchvision.io import ImageReadMode, decode_image, read_file

        from engine.data.images import load_image

        path = self.workdir / "decode.png"
        pixels = np.zeros((48, 64, 3), dtype=np.uint8)
        pixels[:, :, 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
        pixels[0, 0] = (255, 255, 255)
        Image.fromarray(pixels).save(path)
        pil = load_image(path, channels=3)  # the engine's decoder (PIL)
        if tuple(pil.shape) != (3, 48, 64) or pil[:, 0, 0].tolist() != [255, 255, 255]:
            raise AssertionError(f"a generated 64×48 PNG decoded to shape {tuple(pil.shape)}, top-left "
                                 f"{pil[:, 0, 0].tolist()}")
        native = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)  # torchvision's image extension
        if not torch.equal(native, pil):
            raise AssertionError("PIL and torchvision.io decode the same PNG differently")
        return "a generated 64×48 RGB PNG: PIL and torchvision.io agree"

    # --- training -----------------------------------------------------------------------------------------------
    def check_train_step(self) -> str:
        import torch
        from torchvision.models import mobilenet_v3_small

        torch.manual_seed(0)
        model = mobilenet_v3_small(weights=None, num_classes=3)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        images = torch.rand(4, 3, 32, 32)  # generated images
        labels = torch.tensor([0, 1, 2, 0])
        head = model.classifier[-1]
        before = head.weight.detach().clone()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not torch.isfinite(loss):
            raise AssertionError(f"loss is {float(loss)}")
        if torch.equal(before, head.weight):
            raise AssertionError("the optimizer step did not change the weights")
        return f"mobilenet_v3_small, 4 generated 32×32 images: loss {loss.item():.3f}, Adam step applied"

    def check_engine_run(self) -> str:
        import numpy as np
        from PIL import Image

        from engine.planning.presets import make_recipe
        from engine.train.checkpoints import load_checkpoint
        from engine.train.trainer import fit

        data = self.workdir / "images"
        rng = np.random.default_rng(0)
        for k, name in enumerate(("ice", "water")):
            (data / name).mkdir(parents=True, exist_ok=True)
            for i in range(6):
                pixels = np.full((36, 36, 3), (40 + 160 * k, 120, 220 - 160 * k), dtype=np.float64)
                pixels += rng.normal(0, 20, pixels.shape)
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(data / name / f"{i}.png")
        recipe = make_recipe("from_scratch", "mobilenet_v3_small", str(data), epochs=1)
        recipe.data.resize_size, recipe.data.crop_size = 36, 32
        recipe.data.num_workers = 0
        recipe.data.max_train_batches, recipe.data.max_val_batches = 1, 1
        recipe.batch_size = 4
        recipe.device = "cpu"
        recipe.output_dir = str(self.workdir / "runs")
        recipe.validate()
        doing("a one-batch training run")
        result = fit(recipe)
        if result.status != "finished":
            raise AssertionError(f"run {result.status}: {result.error or 'no error recorded'}")
        last = Path(result.run_dir) / "checkpoints" / "last.pt"
        state = load_checkpoint(last)
        if "model" not in state:
            raise AssertionError(f"{last} has no model state")
        self.run_dir, self.images = Path(result.run_dir), data
        return f"mobilenet_v3_small, one 1-batch epoch from scratch: {result.status}, checkpoint read back"

    def check_export(self) -> str:
        """A small net through the real export path: dynamo exporter, Thaw's reader, onnxruntime, parity, int8."""
        from engine.infer.export_selfcheck import check_export

        return check_export(self.workdir)

    def check_evaluation(self) -> str:
        """The engine run's checkpoint evaluated on its 12 generated images (evaluation, calibration, metrics)."""
        if self.run_dir is None:
            raise CheckSkipped("needs the engine run's checkpoint")
        from engine.infer.evaluation import evaluate_checkpoint

        doing("evaluating the engine run's checkpoint")
        evaluation = evaluate_checkpoint(self.run_dir, self.images, kind="last")
        text = evaluation.format_text(listed=0)
        if not text.strip():
            raise AssertionError("the evaluation produced no report")
        return f"{text.strip().splitlines()[0][:100]}"

    def check_openvino(self) -> str:
        """A small net exported as OpenVINO IR (from torch.export), read back by Thaw's reader, parity-checked on
        OpenVINO's CPU plugin: its native plugins and frontends are loaded by path, which a bundle can lack."""
        return self._check_export_format("openvino", "check.xml", "converting to OpenVINO IR",
                                         "running the IR on OpenVINO's CPU plugin")

    def check_executorch(self) -> str:
        """A small net lowered to an ExecuTorch program (XNNPACK), run by ExecuTorch's runtime and parity-checked:
        the lowering reads operator tables as package data and the runtime is native, both of which a bundle can
        lack."""
        return self._check_export_format("executorch", "check.pte", "lowering to ExecuTorch (XNNPACK)",
                                         "running the program on ExecuTorch's runtime")

    def check_coreml(self) -> str:
        """A small net converted to a Core ML package and read back (its metadata, its checksum): coremltools'
        converter imports its frontends and native parts, which a bundle can lack. Its parity is checked where Core
        ML runs (macOS); elsewhere the line says it was not checked, and never that it passed."""
        return self._check_export_format("coreml", "check.mlpackage", "converting to Core ML",
                                         "running the package on Core ML (CPU)")

    def _check_export_format(self, fmt: str, file_name: str, converting: str, running: str) -> str:
        import importlib.util

        from engine.infer.export_formats import export_format

        record = export_format(fmt)
        if importlib.util.find_spec(record.package) is None:
            raise CheckSkipped(f"{record.package} is not installed (the {fmt} export format is offered only with it)")
        import torch
        from torch import nn

        from engine.data.preprocessing import Preprocessing
        from engine.infer.export import write_export
        from engine.infer.export_metadata import ExportMetadata
        from engine.infer.exported import open_export
        from engine.infer.parity import ParityCriteria, compare

        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 2)).eval()
        images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        path = self.workdir / file_name
        doing(converting)
        written = write_export(model, images[:1], fmt, path, ExportMetadata(fmt, ["a", "b"], Preprocessing(16, 16),
                                                                            "self-check"))
        doing("reading the export back (its metadata and checksum)")
        exported = open_export(path, threads=1, require_runtime=False)
        if exported.metadata.class_names != ["a", "b"]:
            raise AssertionError(f"the metadata read back names {exported.metadata.class_names}, not ['a', 'b']")
        if exported.not_runnable:
            return f"{written.exporter}: written and read back; parity NOT CHECKED on this OS ({exported.not_runnable})"
        doing(running)
        with torch.no_grad():
            report = compare(fmt, model(images), exported.logits(images), ParityCriteria.fp32())
        if not report.passed:
            raise AssertionError(report.summary())
        return f"{written.exporter}: parity max |Δlogit| {report.max_abs_logit_diff:.1g}"

    def check_distributed(self) -> str:
        """Two processes under torchrun agree through gloo, started as `train --processes 2` starts them
        (engine/train/launch.py torchrun_command): `python -m torch.distributed.run` from source, the bundle running
        torchrun itself and starting itself as each worker in a packaged app."""
        import subprocess

        from engine.train.launch import frozen, torchrun_command

        worker = [GLOO_WORKER_FLAG]
        command = torchrun_command(2, [], worker)  # the workers run main.py's (or the bundle's) child entry
        doing("waiting for 2 processes under torchrun to all-reduce through gloo")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(key, None)
        proc = subprocess.run(command, capture_output=True, text=True, timeout=170, env=env, cwd=self.workdir,
                              stdin=subprocess.DEVNULL)
        # Searched, not split into lines: two workers printing to one pipe can run their lines together.
        sums = sorted(set(re.findall(r"rank (\d+): gloo sum 3", proc.stdout)))
        if proc.returncode != 0 or len(sums) != 2:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise AssertionError(f"torchrun exited {proc.returncode} with {len(sums)} of 2 workers done: {tail}")
        how = "the bundle's own torchrun (--no-python)" if frozen() else "python -m torch.distributed.run"
        return f"2 processes under {how}, gloo: all_reduce gave 1 + 2 = 3 on both"

    def check_worker(self) -> str:
        import torch
        from torch.utils.data import DataLoader

        from engine.train.setup import worker_cap

        loader = DataLoader(_SquaresDataset(), batch_size=2, num_workers=1, timeout=120)
        try:
            total = int(sum(batch.sum() for batch in loader))
        except Exception as exc:  # noqa: BLE001
            if getattr(sys, "frozen", False) and worker_cap(1) == 0:
                raise CheckWarning(f"{_describe(exc)} (not used: {MAX_WORKERS_ENV}=0 in this build)") from exc
            raise
        if total != sum(i * i for i in range(4)):
            raise AssertionError(f"worker returned a wrong sum {total}")
        note = f"; the engine uses none ({MAX_WORKERS_ENV}=0)" if worker_cap(1) == 0 else ""
        return f"1 worker process ({torch.multiprocessing.get_start_method()}) delivered 2 batches{note}"


GLOO_WORKER_FLAG = "--self-test-gloo-worker"


def gloo_worker() -> int:
    """One rank of the distributed check (`main.py --self-test-gloo-worker` under torchrun): all-reduce its rank + 1
    through gloo and print the sum."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        value = torch.tensor([float(dist.get_rank() + 1)])
        dist.all_reduce(value)
        print(f"rank {dist.get_rank()}: gloo sum {int(value.item())}", flush=True)
    finally:
        dist.destroy_process_group()
    return 0


class _SquaresDataset:
    """Four numbers squared; module level so a spawned worker can unpickle it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        import torch

        return torch.tensor(float(i * i))


def header(where: str = "") -> str:
    try:
        from engine import __version__
    except Exception:  # noqa: BLE001 - a broken install still gets its header
        __version__ = "?"
    where = where or f"source {Path(__file__).resolve().parent.parent}"
    return f"Thaw {__version__} self-test: {where} (Python {platform.python_version()}, " \
           f"{platform.system()} {platform.machine()})"


class ExtraChecks:
    """What a front end adds (the studio: resources, Qt, the main window): its checks and its clean-up."""

    def checks(self) -> list[Check]:
        return []

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None,
         extra: Callable[[Path, argparse.Namespace], ExtraChecks] | None = None,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None, where: str = "") -> int:
    """Run the engine's checks, then `extra(workdir, args)`'s; print a line each and the summary."""
    parser = argparse.ArgumentParser(prog="Thaw --self-test", description="Check that this Thaw installation works.")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(list(argv or []))
    start = _RunClock.started = time.perf_counter()
    _print(header(where))
    with tempfile.TemporaryDirectory(prefix="thaw-selftest-") as tmp:
        work = Path(tmp)
        env = {
            "THAW_OFFLINE": "1",  # never download during a self-test
            "THAW_SETTINGS": str(work / "settings.ini"),  # never touch the user's window settings
            "THAW_RUNS_DIR": str(work / "runs"),
        }
        with _temporary_environment(env):
            engine = EngineChecks(work)
            more = extra(work, args) if extra is not None else ExtraChecks()
            try:
                results = run_checks(engine.checks() + more.checks())
            finally:
                engine.restore()
                more.close()
    _print(summary_line(results, time.perf_counter() - start))
    return 1 if any(r.failed for r in results) else 0
