"""Exports are checked against their checkpoint: ONNX, .pt2 and TorchScript files of a ResNet (the suite's
tiny_resnet), a MobileNet V3, an EfficientNet and a ViT pass the parity check; an export that disagrees leaves nothing
that looks good; int8 shows its cost beside fp32; `predict` and examples/predict_onnx.py read exports like the
checkpoint; damaged and foreign files give one clear line."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from engine.cli.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from engine.data.images import load_image
from engine.data.preprocessing import Preprocessing
from engine.data.transforms import eval_transform
from engine.infer import export_run as export_run_module
from engine.infer.export import DYNAMO_EXPORTER, LEGACY_EXPORTER, write_export
from engine.infer.export_formats import FORMATS as EXPORT_FORMATS
from engine.infer.export_metadata import FORMATS, SUFFIXES, ExportMetadata
from engine.infer.export_run import FAILED_SUFFIX, REPORT_SUFFIX, ExportRequest, export_run
from engine.infer.exported import open_export
from engine.infer.inference import Predictor
from engine.infer.parity import ParityCriteria, batch_plan, batches_of, collect_logits, compare
from engine.model.build import build_model
from engine.model.surgery import find_classifier
from engine.recipe import PhaseConfig
from engine.train.checkpoints import save_checkpoint
from engine.train.runs import RECIPE_FILE, checkpoint_path
from tests.helpers import tiny_recipe

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "predict_onnx.py"
CLASSES = ["cat", "dog", "fox"]
# The formats whose files run on this system, and of those the ones written as a single file: Core ML runs only on
# macOS (elsewhere tests/engine/test_export_coreml.py checks what can be: the package, its metadata, the verdict).
RUNNABLE = tuple(f for f in FORMATS if not EXPORT_FORMATS[f].unavailable_here())
RUNNABLE_FILES = tuple(f for f in RUNNABLE if not EXPORT_FORMATS[f].folder)


# --- helpers ------------------------------------------------------------------------------------------------------

def calibrate(model: nn.Module, batch: torch.Tensor, seed: int = 0) -> nn.Module:
    """Give a randomly initialised network the batch-norm statistics of its own activations on `batch` and a head
    whose logits spread. Without this MobileNet and EfficientNet give the same near-zero logits for every image,
    and an export that computed anything at all would 'agree' with them."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batch
    model.train()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model(batch)
        head = model.get_submodule(find_classifier(model))
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 2 / head.weight.shape[1] ** 0.5)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def write_run(root: Path, recipe, classes: list[str]) -> Path:
    """A run folder (recipe.json, checkpoints/best.pt) holding a calibrated, randomly initialised model, written
    directly instead of trained: the export only needs a checkpoint and the run's images."""
    run = root / recipe.name
    run.mkdir(parents=True)
    torch.manual_seed(recipe.seed)
    built = build_model(recipe.model, len(classes), recipe.data, pretrained=False)
    size = built.preprocessing.crop_size
    calibrate(built.model, torch.randn(16, recipe.model.in_channels, size, size))
    save_checkpoint(checkpoint_path(run, "best"), {
        "model": built.model.state_dict(), "recipe": recipe.to_dict(), "class_names": list(classes),
        "preprocessing": built.preprocessing.to_dict(), "weights_name": built.weights_name, "epoch": 1,
        "summary": {"final_val_acc": None}})
    recipe.save(run / RECIPE_FILE)
    return run


def report_of(path: Path) -> dict:
    return json.loads(path.with_name(path.name + REPORT_SUFFIX).read_text())


def assert_one_clear_line(text: str, *phrases: str) -> None:
    assert "Traceback" not in text
    lines = [line for line in text.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


FINE_TUNE_ALL = PhaseConfig("all", 2, ["all"], lr=1e-2)  # every layer, one rate: tests/engine/test_promises_analyses.py
# fine-tunes the same run


# --- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(trained_runs, tmp_path_factory) -> Path:
    """tiny_resnet (ResNet-18's layout in miniature: conv, BatchNorm, ReLU, residual additions, global pooling, a
    Linear head) fine-tuned for two epochs on the generated folder (3 classes, 6 validation images): the session's
    fine-tuned run, copied (exports are written into the run folder)."""
    return trained_runs.copy(trained_runs.get("fine_tune_all", epochs=2, phases=[FINE_TUNE_ALL]),
                             tmp_path_factory.mktemp("export-runs"))


@pytest.fixture(scope="module")
def resnet_exports(trained_run, tmp_path_factory, cli) -> dict[str, Path]:
    """The trained tiny_resnet exported by the CLI in every format (TorchScript to the default place in the run)."""
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for fmt in RUNNABLE:
        out = [] if fmt == "torchscript" else ["--out", folder / f"resnet{SUFFIXES[fmt]}"]
        as_json = ["--json"] if fmt == "pt2" else []
        code, stdout, stderr = cli("export", trained_run, "--format", fmt, *out, "--latency-runs", "2", *as_json)
        assert code == EXIT_OK, stderr
        if as_json:
            report = json.loads(stdout)
            assert report["passed"] and report["parity"][0]["label"] == "pt2"
            paths[fmt] = Path(report["path"])
        else:
            assert f"parity {fmt} vs checkpoint on 6 validation images" in stdout and "passed" in stdout
            paths[fmt] = Path(stdout.strip().splitlines()[-1].split()[1])
        assert "load: loading" in stderr and "export: exporting to" in stderr  # the steps, on stderr
    assert paths["torchscript"] == trained_run / "exports" / "best.ts"
    return paths


# --- every format of every family passes its parity check ----------------------------------------------------------

@pytest.mark.parametrize("fmt", RUNNABLE)
def test_resnet_exports_pass_parity_and_carry_their_metadata(resnet_exports, trained_run, fmt):
    path = resnet_exports[fmt]
    report = report_of(path)
    assert report["passed"] and report["path"] == str(path)
    parity = report["parity"][0]
    assert parity["max_abs_reference_logit"] > 0.1  # the logits differ between images: the check means something
    assert parity["max_abs_logit_diff"] <= parity["tolerance"] == pytest.approx(
        1e-3 * max(1.0, parity["max_abs_reference_logit"]))
    assert parity["top1_agreement"] == 1.0 and parity["images"] == 6
    assert parity["batch_sizes"] == [1, 5]  # the dynamic batch dimension at 1 and at 5
    assert [c["label"] for c in report["costs"]] == ["checkpoint (torch)", fmt]
    assert all(c["latency_ms"] > 0 for c in report["costs"])

    exported = open_export(path)
    meta = exported.metadata
    checkpoint = torch.load(checkpoint_path(trained_run, "best"), weights_only=True)
    assert meta.format == fmt and meta.class_names == CLASSES and meta.arch == "tiny_resnet"
    assert meta.preprocessing == Preprocessing.from_dict(checkpoint["preprocessing"])
    assert meta.source["checkpoint"] == "best" and meta.source["run"] == trained_run.name
    assert str(trained_run.parent) not in meta.to_json()  # no absolute path of the user's in a shipped file
    best = checkpoint_path(trained_run, "best")
    assert meta.source["checkpoint_sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert meta.source["epoch"] == 1
    document = meta.to_dict()
    batch = 1 if EXPORT_FORMATS[fmt].one_image else "batch"  # ExecuTorch and Core ML: one image; others any batch
    assert document["input"] == {"name": "input", "shape": [batch, 3, 32, 32], "dtype": "float32",
                                 "layout": "NCHW", "channels": 3, "channel_order": "RGB"}
    assert document["output"]["shape"] == [batch, len(CLASSES)]
    if fmt == "onnx":
        assert meta.exporter["name"] == DYNAMO_EXPORTER and meta.exporter["opset"] >= 17
    if fmt == "torchscript":
        assert meta.exporter["deprecated"] and any("deprecated" in n for n in report["notes"])
    if fmt == "executorch":  # the metadata is the program's own constant method, read by ExecuTorch's runtime
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(path.read_bytes())
        assert json.loads(program.load_method("thaw_metadata").execute([])[0]) == document
        assert "XNNPACK" in meta.exporter["name"]


# The MobileNet V3 and EfficientNet families, in torchvision's own classes cut to 3 and 2 stages (tests/tiny_arch.py:
# every op kind of the full models at a third of the export time; the full models took 100 s of the suite's CPU).
# Not .pt2 for these families: the ONNX exporter traces them with torch.export (asserted below), with the same
# dynamic batch, and what .pt2 adds — saving the ExportedProgram, loading it, running it — is the same for every
# family (resnet and ViT cover it above and below).
@pytest.mark.parametrize("fmt", [f for f in RUNNABLE if f != "pt2"])
@pytest.mark.parametrize("arch", ["shallow_mobilenet_v3", "shallow_efficientnet"])
def test_mobilenet_and_efficientnet_exports_pass_parity(arch, fmt, image_folder, tmp_path):
    recipe = tiny_recipe(image_folder, "fine_tune_all", epochs=1, arch=arch, name=arch)
    run = write_run(tmp_path / "runs", recipe, CLASSES)
    out = tmp_path / f"model{SUFFIXES[fmt]}"
    result = export_run(ExportRequest(str(run), fmt, out=str(out), latency_runs=0))
    assert result.passed and result.path == str(out) and out.is_file()
    parity = result.parity[0]
    assert parity.max_abs_reference_logit > 0.1
    assert parity.max_abs_logit_diff <= parity.tolerance and parity.top1_agreement == 1.0
    metadata = open_export(out).metadata
    assert metadata.arch == arch
    if fmt == "onnx":  # traced by torch.export, not the legacy TorchScript-based exporter
        assert metadata.exporter["name"] == DYNAMO_EXPORTER


def small_vit() -> nn.Module:
    """torchvision's VisionTransformer (the class behind vit_b_16) with 2 layers of width 32: the same patch
    embedding, class token, attention and MLP ops as ViT-B/16 at a cost a test can afford."""
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                              num_classes=3)
    return calibrate(model, torch.randn(4, 3, 32, 32))  # torchvision starts the head at zero


# Not ExecuTorch for ViT: its program is lowered from the same torch.export graph as the .pt2 file (tested here), and
# its XNNPACK lowering of a transformer took 14 s of the suite; the phone families (MobileNet, EfficientNet) and
# tiny_resnet are lowered above.
@pytest.mark.parametrize("fmt", [f for f in RUNNABLE if f != "executorch"])
def test_vit_exports_pass_parity(fmt, image_folder, tmp_path):
    prep = Preprocessing(36, 32)
    transform = eval_transform(prep)
    paths = sorted((image_folder / "dog").glob("*.png"))[:4] + sorted((image_folder / "fox").glob("*.png"))[:3]
    images = [transform(load_image(p)) for p in paths]
    model = small_vit()
    path = tmp_path / f"vit{SUFFIXES[fmt]}"
    write_export(model, torch.stack(images[:2]), fmt, path, ExportMetadata(fmt, CLASSES, prep, "vit_small"))
    exported = open_export(path)
    plan = batch_plan(len(images), 4)
    logits = collect_logits({"torch": model, "export": exported.logits}, batches_of(images.__getitem__, len(images),
                                                                                  plan))
    report = compare(fmt, logits["torch"], logits["export"], ParityCriteria.fp32(), batch_sizes=plan)
    assert report.passed, report.summary()
    assert report.max_abs_reference_logit > 0.1 and report.top1_agreement == 1.0 and plan == [1, 4, 2]


def test_a_five_channel_model_exports_with_its_channel_statistics(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "stacks"
    for label, name in enumerate(("field", "forest")):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            stack = rng.integers(0, 60, (40, 40, 5)) + 150 * (np.arange(5) % 2 == label)
            np.save(folder / name / f"{i}.npy", stack.astype(np.uint8))
    recipe = tiny_recipe(folder, "fine_tune_all", epochs=1, name="five")
    recipe.model.in_channels = 5
    recipe.data.extra_channel_mean, recipe.data.extra_channel_std = [0.3, 0.6], [0.2, 0.1]
    run = write_run(tmp_path / "runs", recipe.validate(), ["field", "forest"])

    out = tmp_path / "five.onnx"
    result = export_run(ExportRequest(str(run), "onnx", out=str(out), latency_runs=0))
    assert result.passed and result.parity[0].max_abs_reference_logit > 0.1
    meta = open_export(out).metadata
    assert meta.channels == 5
    assert meta.preprocessing.mean == pytest.approx([0.485, 0.456, 0.406, 0.3, 0.6])
    assert meta.preprocessing.std == pytest.approx([0.229, 0.224, 0.225, 0.2, 0.1])
    assert meta.to_dict()["input"]["shape"] == ["batch", 5, 32, 32]
    assert ".npy" in meta.to_dict()["input"]["channel_order"]

    stacks = sorted(folder.rglob("*.npy"))
    from_checkpoint = Predictor.from_checkpoint(checkpoint_path(run, "best")).predict(stacks, topk=2)
    from_export = Predictor.from_export(out).predict(stacks, topk=2)
    for a, b in zip(from_checkpoint, from_export):
        assert [c for c, _ in a.top] == [c for c, _ in b.top]
        assert [p for _, p in a.top] == pytest.approx([p for _, p in b.top], abs=1e-5)
    example = run_example(out, folder, "--json", "--topk", "2")
    assert example.returncode == 0, example.stderr
    rows = [json.loads(line) for line in example.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in stacks]
    for row, want in zip(rows, from_checkpoint):
        assert {t["class"]: t["probability"] for t in row["top"]} == pytest.approx(dict(want.top), abs=0.01)


# --- a failed check leaves nothing that looks good; the legacy fallback is named and checked --------------------------

def test_an_export_that_disagrees_fails_loudly_and_leaves_nothing(trained_run, tmp_path, monkeypatch, cli):
    real = export_run_module.write_export

    def skewing_writer(model, example, fmt, path, metadata, opset=None):
        """A planted exporter bug: the file's head has a different bias for the first class."""
        broken = copy.deepcopy(model)
        with torch.no_grad():
            broken.get_submodule(find_classifier(broken)).bias[0] += 0.5
        return real(broken, example, fmt, path, metadata, opset)

    monkeypatch.setattr(export_run_module, "write_export", skewing_writer)
    out = tmp_path / "exports" / "model.pt2"
    code, stdout, stderr = cli("export", trained_run, "--format", "pt2", "--out", out, "--latency-runs", "0")
    assert code == EXIT_FAILED
    assert_one_clear_line(stderr, "the export disagrees with the checkpoint", "exceeds the tolerance", str(out))
    assert "parity pt2 vs checkpoint" in stderr and "FAILED" in stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.pt2" + FAILED_SUFFIX]  # no file, no temp folder
    failed = json.loads((out.parent / ("model.pt2" + FAILED_SUFFIX)).read_text())
    assert failed["passed"] is False and failed["path"] == ""
    assert failed["parity"][0]["max_abs_logit_diff"] == pytest.approx(0.5, rel=1e-3)

    out.write_bytes(b"an earlier export")  # a file already there is another export: it stays as it was
    code, _, stderr = cli("export", trained_run, "--format", "pt2", "--out", out, "--latency-runs", "0")
    assert code == EXIT_FAILED and "earlier export, left unchanged" in stderr
    assert out.read_bytes() == b"an earlier export"


class GatedByBrightness(nn.Module):
    """Negates its logits for dark images: Python control flow on a tensor's value, which torch.export refuses and
    the legacy exporter bakes in for the branch its example took."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(x.mean(dim=(2, 3)))
        if x.mean() > 0:
            return logits
        return -logits


def test_onnx_falls_back_to_the_legacy_exporter_says_so_and_the_check_catches_what_it_baked_in(tmp_path):
    model = GatedByBrightness().eval()
    bright = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    path = tmp_path / "gated.onnx"
    written = write_export(model, bright[:2], "onnx", path, ExportMetadata("onnx", CLASSES, Preprocessing(8, 8), "x"))
    assert written.exporter == LEGACY_EXPORTER
    assert "dynamo=True) failed" in written.notes[0]
    exported = open_export(path)
    assert exported.metadata.exporter["name"] == LEGACY_EXPORTER and exported.metadata.exporter["notes"]
    with torch.no_grad():
        assert compare("onnx", model(bright), exported.logits(bright), ParityCriteria.fp32()).passed
        dark = compare("onnx", model(-bright), exported.logits(-bright), ParityCriteria.fp32())
    assert not dark.passed and "exceeds the tolerance" in dark.failure


def test_compare_fails_beyond_tolerance_on_nan_and_below_the_int8_agreement():
    reference = torch.tensor([[4.0, 1.0, 0.0]] * 10)
    assert compare("x", reference, reference + 3e-3, ParityCriteria.fp32()).passed  # 3e-3 ≤ 1e-3 × 4
    assert not compare("x", reference, reference + 5e-3, ParityCriteria.fp32()).passed
    broken = reference.clone()
    broken[3, 1] = float("nan")
    assert "NaN" in compare("x", reference, broken, ParityCriteria.fp32()).failure
    flipped = reference.clone()
    flipped[:2] = torch.tensor([0.0, 5.0, 0.0])  # 2 of 10 decisions change: 80 % agreement
    assert compare("x", reference, flipped + 0.7, ParityCriteria.int8(0.8)).passed
    report = compare("x", reference, flipped, ParityCriteria.int8(0.9))
    assert not report.passed and "80.0 % is below the required 90 %" in report.failure
    assert compare("x", reference, reference[:, :2], ParityCriteria.fp32()).failure.startswith("the export gives")


# --- int8 ------------------------------------------------------------------------------------------------------------

def test_int8_is_checked_and_its_cost_shown_beside_fp32(trained_run, tmp_path):
    out = tmp_path / "resnet-int8.onnx"
    result = export_run(ExportRequest(str(trained_run), "onnx", quantize="int8", out=str(out), latency_runs=3,
                                      calibration_images=16))
    assert result.passed and out.is_file()
    assert [p.label for p in result.parity] == ["onnx", "onnx int8"]
    fp32_check, int8_check = result.parity
    assert fp32_check.tolerance is not None and fp32_check.max_abs_logit_diff <= fp32_check.tolerance
    assert int8_check.tolerance is None and int8_check.top1_agreement >= 0.9
    assert int8_check.max_abs_logit_diff > fp32_check.max_abs_logit_diff  # int8 really changed the numbers
    torch_cost, fp32, int8 = result.costs
    assert [c.label for c in result.costs] == ["checkpoint (torch)", "onnx", "onnx int8"]
    # int8 weights take a quarter of the bytes; in a 54 k-parameter model the graph's own bytes weigh more
    assert int8.size_bytes < 0.6 * fp32.size_bytes and int8.size_bytes == out.stat().st_size
    assert all(c.latency_ms > 0 and c.val_accuracy is not None for c in result.costs)
    assert fp32.val_accuracy == torch_cost.val_accuracy  # fp32 decides exactly as the checkpoint

    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = open_export(out).metadata
    assert meta.quantization["method"] == "int8-static" and meta.quantization["calibration_images"] == 16
    on_disk = report_of(out)
    assert [c["label"] for c in on_disk["costs"]] == ["checkpoint (torch)", "onnx", "onnx int8"]
    assert not list(tmp_path.glob(".*partial"))  # the fp32 intermediate and the temp folder are gone


# --- predict and the example read exports like the checkpoint --------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint_predictions(trained_run, image_folder, cli) -> list[dict]:
    code, stdout, stderr = cli("predict", trained_run, image_folder, "--json", "--topk", "3")
    assert code == EXIT_OK, stderr
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.mark.parametrize("fmt", RUNNABLE)
def test_predict_on_an_export_gives_the_checkpoints_top_k(resnet_exports, checkpoint_predictions, image_folder, fmt,
                                                          cli):
    code, stdout, stderr = cli("predict", resnet_exports[fmt], image_folder, "--json", "--topk", "3")
    assert code == EXIT_OK, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    expected = checkpoint_predictions
    assert [r["path"] for r in rows] == [r["path"] for r in expected] and len(rows) == 38
    for got, want in zip(rows, expected):
        assert got["error"] == want["error"]
        assert [t["class"] for t in got["top"]] == [t["class"] for t in want["top"]]
        assert [t["probability"] for t in got["top"]] == pytest.approx([t["probability"] for t in want["top"]],
                                                                       abs=1e-5)


def run_example(model: Path, *args) -> subprocess.CompletedProcess:
    """examples/predict_onnx.py in a fresh interpreter where torch, torchvision, onnx and Thaw cannot be
    imported: it must work with onnxruntime, numpy and Pillow alone."""
    argv = [str(EXAMPLE), str(model), *map(str, args)]
    code = ("import runpy, sys\n"
            "for name in ('torch', 'torchvision', 'onnx', 'engine'):\n"
            "    sys.modules[name] = None  # importing it raises ImportError\n"
            f"sys.argv = {argv!r}\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_example_prints_the_same_top_k_as_predict(resnet_exports, image_folder, cli):
    onnx_file = resnet_exports["onnx"]
    code, stdout, _ = cli("predict", onnx_file, image_folder, "--json", "--topk", "3")
    expected = [json.loads(line) for line in stdout.splitlines()]
    example = run_example(onnx_file, image_folder, "--json", "--topk", "3")
    assert example.returncode == 0, example.stderr
    rows = [json.loads(line) for line in example.stdout.splitlines()]
    assert [r["path"] for r in rows] == [r["path"] for r in expected]
    decided = 0
    for got, want in zip(rows, expected):
        assert bool(got["error"]) == bool(want["error"])
        if want["error"]:
            continue
        # Pillow's and torchvision's antialiased resize round differently by a grey level here and there: the
        # same classes with probabilities within 0.01, and the same winner wherever it is not a near-tie.
        probabilities = {t["class"]: t["probability"] for t in got["top"]}
        assert probabilities == pytest.approx({t["class"]: t["probability"] for t in want["top"]}, abs=0.01)
        if want["top"][0]["probability"] - want["top"][1]["probability"] > 0.02:
            assert got["top"][0]["class"] == want["top"][0]["class"]
            decided += 1
    assert decided >= 10  # the winners were compared on many images, not waved through as near-ties

    text = run_example(onnx_file, image_folder / "dog", "--topk", "1")
    code, stdout, _ = cli("predict", onnx_file, image_folder / "dog", "--topk", "1")
    pattern = re.compile(r"^(\S+): (\w+) (\d+\.\d)%$")  # "path: class 97.3%", as `predict` prints it
    assert [pattern.match(line).group(1) for line in text.stdout.splitlines()] == \
        [pattern.match(line).group(1) for line in stdout.splitlines()]


# --- damaged and foreign files -------------------------------------------------------------------------------------

class Tiny(nn.Module):
    """A small net whose file is mostly weights (a 200 k-parameter Linear), so a byte in its middle is a weight."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3 * 16 * 16, 256)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))[:, :3]


@pytest.fixture(scope="module")
def small_exports(tmp_path_factory) -> dict[str, Path]:
    """Thaw exports of Tiny in every format: what the damage tests start from (kilobytes)."""
    folder = tmp_path_factory.mktemp("small-exports")
    paths = {}
    for fmt in RUNNABLE_FILES:
        paths[fmt] = folder / f"tiny{SUFFIXES[fmt]}"
        write_export(Tiny().eval(), torch.rand(2, 3, 16, 16), fmt, paths[fmt],
                     ExportMetadata(fmt, CLASSES, Preprocessing(20, 16), "tiny"))
        assert open_export(paths[fmt]).metadata.class_names == CLASSES
    return paths


def _foreign(fmt: str, path: Path) -> None:
    """What another tool writes: the same formats, without Thaw's metadata."""
    model, example = Tiny().eval(), torch.rand(2, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's and TorchScript's deprecation warnings
        if fmt == "onnx":
            torch.onnx.export(model, (example,), str(path), dynamo=False)
        elif fmt == "openvino":
            import openvino as ov

            ov.save_model(ov.convert_model(torch.export.export(model, (example,))), str(path))
        elif fmt == "pt2":
            torch.export.save(torch.export.export(model, (example,)), str(path))
        elif fmt == "executorch":
            from executorch.exir import to_edge_transform_and_lower

            program = to_edge_transform_and_lower(torch.export.export(model, (example[:1],))).to_executorch()
            path.write_bytes(program.buffer)
        else:
            torch.jit.save(torch.jit.trace(model, example), str(path))


def _flip_middle_byte(source: Path, target: Path) -> None:
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0x5A  # inside the weights: every parser still accepts the file
    target.write_bytes(bytes(data))


DAMAGES = {
    "truncated": (lambda source, target: target.write_bytes(source.read_bytes()[: source.stat().st_size // 2]),
                  "truncated"),
    "scrambled header": (lambda source, target: target.write_bytes(b"\xff" * 64 + source.read_bytes()[64:]),
                         "corrupted"),
    "flipped weight byte": (_flip_middle_byte, "checksum"),
    "empty": (lambda source, target: target.write_bytes(b""), "is empty"),
}


@pytest.mark.parametrize("fmt", RUNNABLE_FILES)  # a Core ML package's damage: tests/engine/test_export_coreml.py
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_export_gives_one_clear_line(small_exports, image_folder, tmp_path, fmt, damage, cli):
    make, phrase = DAMAGES[damage]
    source, target = small_exports[fmt], tmp_path / f"damaged{SUFFIXES[fmt]}"
    record = EXPORT_FORMATS[fmt]
    for companion, copied in zip(record.companion_paths(source), record.companion_paths(target)):
        if companion.is_file():
            shutil.copyfile(companion, copied)  # the files beside it come along, undamaged
    if damage == "flipped weight byte" and record.companions and record.companion_paths(source)[0].is_file():
        shutil.copyfile(source, target)  # the weights are in the file beside it (OpenVINO's .bin): damage that one
        make(record.companion_paths(source)[0], record.companion_paths(target)[0])
    else:
        make(source, target)
    code, stdout, stderr = cli("predict", target, image_folder / "dog" / "dog_000.png")
    assert code == EXIT_BAD_INPUT and not stdout
    assert_one_clear_line(stderr, str(target), phrase)
    if fmt == "onnx" and damage != "flipped weight byte":  # the example cannot read the weights (no onnx package)
        example = run_example(target, image_folder / "dog" / "dog_000.png")
        assert example.returncode == 2 and not example.stdout
        assert_one_clear_line(example.stderr, str(target))


@pytest.mark.parametrize("fmt", RUNNABLE_FILES)
def test_an_export_from_another_tool_is_refused_for_its_missing_metadata(image_folder, tmp_path, fmt, cli):
    path = tmp_path / f"foreign{SUFFIXES[fmt]}"
    _foreign(fmt, path)
    code, _, stderr = cli("predict", path, image_folder / "dog" / "dog_000.png")
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(stderr, str(path), "has no Thaw metadata", "not exported by Thaw")
    if fmt == "onnx":
        example = run_example(path, image_folder / "dog" / "dog_000.png")
        assert example.returncode == 2
        assert_one_clear_line(example.stderr, "no Thaw metadata")


# --- bad input ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, phrase", [
    (["--format", "tflite"], "--format 'tflite' is not one of onnx, pt2, torchscript"),
    (["--format", "pt2", "--quantize", "int8"], "--quantize int8 needs --format onnx"),
    (["--checkpoint", "middle"], "--checkpoint 'middle' is not one of best, last"),
    (["--max-images", "0"], "--max-images must be >= 1"),
    (["--data", "/nowhere/at/all"], "the parity check needs images of the run"),
])
def test_bad_export_options_exit_2_with_the_option_named(trained_run, args, phrase, cli):
    code, _, stderr = cli("export", trained_run, *args)
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(stderr, phrase)


def test_a_missing_run_or_checkpoint_exits_2_with_a_hint(trained_run, tmp_path, cli):
    code, _, stderr = cli("export", tmp_path / "no-such-run")
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(stderr, "neither a run folder nor a checkpoint file")
    run = tmp_path / "only-last"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(checkpoint_path(trained_run, "best").read_bytes())
    code, _, stderr = cli("export", run)
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(stderr, "has no checkpoints/best.pt", "--checkpoint last")


# --- the self-check the packaged app runs ----------------------------------------------------------------------

def test_the_export_self_check_exports_checks_and_quantizes_and_fails_on_a_wrong_file(tmp_path, monkeypatch):
    from engine.infer import export_selfcheck

    summary = export_selfcheck.check_export(tmp_path)
    assert summary.startswith(DYNAMO_EXPORTER) and "int8 calibrated on 2 images" in summary
    assert not list(tmp_path.iterdir())  # it works in a temporary folder of its own

    real = export_selfcheck.write_export

    def skewing_writer(model, example, fmt, path, metadata, opset=None):
        broken = copy.deepcopy(model)
        with torch.no_grad():
            broken[-1].bias += 1.0
        return real(broken, example, fmt, path, metadata, opset)

    monkeypatch.setattr(export_selfcheck, "write_export", skewing_writer)
    with pytest.raises(AssertionError, match=re.escape("FAILED: max |Δlogit|")):
        export_selfcheck.check_export(tmp_path)


# --- the format registry ------------------------------------------------------------------------------------------

def test_every_registered_format_has_a_writer_an_opener_and_a_unique_suffix():
    from engine.infer.export import WRITERS
    from engine.infer.exported import EXPORT_SUFFIXES, OPENERS

    assert set(WRITERS) == set(OPENERS) == set(EXPORT_FORMATS) == set(FORMATS)
    suffixes = [s for f in EXPORT_FORMATS.values() for s in f.suffixes]
    assert len(suffixes) == len(set(suffixes))  # a suffix names one format
    assert all(EXPORT_SUFFIXES[s] == f.name for f in EXPORT_FORMATS.values() for s in f.suffixes)
    assert SUFFIXES == {f.name: f.suffixes[0] for f in EXPORT_FORMATS.values()}  # what a default name ends with


def test_a_format_whose_library_is_missing_says_which_package_before_any_work(trained_run, small_exports,
                                                                             image_folder, tmp_path, monkeypatch,
                                                                             cli):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    monkeypatch.setattr(export_run_module, "load_checkpoint", lambda *a: pytest.fail("work started"))
    code, _, err = cli("export", trained_run, "--format", "openvino", "--out", tmp_path / "m.xml")
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(err, "the openvino format needs the 'openvino' package", "pip install openvino")
    assert not list(tmp_path.iterdir())
    code, _, err = cli("predict", small_exports["openvino"], image_folder / "dog" / "dog_000.png")
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(err, str(small_exports["openvino"]), "'openvino' package")
