"""Core ML export (.mlpackage, a folder): converted on any OS, its metadata in Core ML's own field and under a
checksum, its parity check run only where Core ML runs. On Linux (where the suite runs) the package is written
and read back, the verdict is "not checked on this OS" — never "passed" — and `predict` refuses it in one line.
An earlier package is replaced only by a complete one; a failed or stopped export leaves no package; a folder of
the user's is never replaced. Where Core ML's runtime exists (macOS) the ordinary parity check runs: a fake runtime
that answers as Core ML's Python API does stands in for it here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from engine.data.preprocessing import Preprocessing
from engine.infer import coreml_package
from engine.infer import export_run as export_run_module
from engine.infer.export import ExportError, write_export
from engine.infer.export_formats import ExportFormat
from engine.infer.export_metadata import ExportFileError, ExportMetadata
from engine.infer.export_run import (
    FAILED_SUFFIX,
    REPORT_SUFFIX,
    ExportCancelled,
    ExportFailedError,
    ExportRequest,
    export_run,
)
from engine.infer.exported import ExportNotRunnableError, open_export
from engine.infer.inference import Predictor
from engine.infer.parity import ParityReport, compare
from engine.model.surgery import find_classifier
from engine.train.runs import checkpoint_path
from tests.engine.test_export import CLASSES, Tiny, assert_one_clear_line, write_run
from tests.helpers import tiny_recipe

SPEC = Path("Data/com.apple.CoreML/model.mlmodel")
WEIGHTS = Path("Data/com.apple.CoreML/weights/weight.bin")


def package_files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Hidden work folders and set-aside packages an export left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(image_folder, tmp_path_factory) -> Path:
    """A tiny_resnet run with a calibrated random model (written, not trained: the export needs a checkpoint and the
    run's images) and a last.pt beside best.pt, so that two exports of it differ."""
    run = write_run(tmp_path_factory.mktemp("coreml-runs"), tiny_recipe(image_folder, "fine_tune_all", epochs=1,
                                                                        name="to-core-ml"), CLASSES)
    shutil.copyfile(checkpoint_path(run, "best"), checkpoint_path(run, "last"))
    return run


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory, cli) -> tuple[Path, str, str]:
    """The run exported to Core ML by the CLI: (package, stdout, stderr)."""
    out = tmp_path_factory.mktemp("coreml-out") / "model.mlpackage"
    code, stdout, stderr = cli("export", run, "--format", "coreml", "--out", out, "--latency-runs", "2")
    assert code == EXIT_OK, stderr
    return out, stdout, stderr


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory) -> Path:
    """A Thaw Core ML package of a small net (its weights are most of it): what the damage tests start from."""
    path = tmp_path_factory.mktemp("coreml-small") / "tiny.mlpackage"
    write_export(Tiny().eval(), torch.rand(2, 3, 16, 16), "coreml", path,
                 ExportMetadata("coreml", CLASSES, Preprocessing(20, 16), "tiny"))
    return path


# --- written, read back, reported as not checked ---------------------------------------------------------------------

def test_the_export_is_a_package_with_its_metadata_and_is_reported_not_checked_never_passed(exported, run):
    out, stdout, stderr = exported
    assert out.is_dir() and (out / "Manifest.json").is_file() and (out / SPEC).is_file() and (out / WEIGHTS).is_file()
    assert "parity coreml vs checkpoint: NOT CHECKED on this OS" in stdout and "runs only on macOS" in stdout
    assert "passed" not in stdout and "passed" not in stderr
    assert f"saved {out} (coremltools" in stdout and "NOT CHECKED against the checkpoint on this OS" in stdout
    assert not (out.parent / (out.name + FAILED_SUFFIX)).exists() and not leftovers(out.parent)

    report = json.loads((out.parent / (out.name + REPORT_SUFFIX)).read_text())
    assert report["passed"] is False and report["verdict"] == "not checked" and report["path"] == str(out)
    parity = report["parity"][0]
    assert parity["verdict"] == "not checked" and "runs only on macOS" in parity["not_checked"]
    assert parity["max_abs_logit_diff"] is None and parity["top1_agreement"] is None  # no number made up
    torch_cost, coreml_cost = report["costs"]
    assert coreml_cost["label"] == "coreml" and coreml_cost["latency_ms"] is None
    assert coreml_cost["size_bytes"] == sum(len(b) for b in package_files(out).values()) > 0  # the folder's files
    assert torch_cost["latency_ms"] > 0

    meta = open_export(out, require_runtime=False).metadata  # read and checked, though it cannot run here
    checkpoint = torch.load(checkpoint_path(run, "best"), weights_only=True)
    assert meta.format == "coreml" and meta.class_names == CLASSES and meta.arch == "tiny_resnet"
    assert meta.preprocessing == Preprocessing.from_dict(checkpoint["preprocessing"])
    assert meta.source["run"] == run.name and meta.source["checkpoint"] == "best"
    assert str(run.parent) not in meta.to_json()  # no absolute path of the user's in a shipped file
    assert meta.to_dict()["input"]["shape"] == [1, 3, 32, 32] and meta.quantization["method"] == "none"
    assert "float32" in meta.exporter["name"]
    spec = coreml_package.read_spec(out)  # Core ML's own fields, as Xcode shows them
    assert json.loads(coreml_package.metadata_text(spec)) == meta.to_dict()
    assert spec.description.metadata.author == "Thaw" and "tiny_resnet" in spec.description.metadata.shortDescription
    assert [f.name for f in spec.description.input] == ["input"]
    assert "mean" in spec.description.input[0].shortDescription
    assert [f.name for f in spec.description.output] == ["logits"]


def test_predict_refuses_a_package_in_one_line_naming_it(exported, image_folder, cli):
    out = exported[0]
    code, stdout, stderr = cli("predict", out, image_folder / "dog" / "dog_000.png")
    assert code == EXIT_BAD_INPUT and not stdout
    assert_one_clear_line(stderr, str(out), "cannot be run here", "runs only on macOS 13 or later and iOS 16")
    with pytest.raises(ExportNotRunnableError):  # when it is opened, not at its first image
        Predictor.from_export(out)


def test_fp16_is_for_core_ml_only_and_halves_the_weights(exported, run, cli):
    code, stdout, _ = cli("export", run, "--format", "coreml", "--quantize", "fp16", "--latency-runs", "0", "--json")
    assert code == EXIT_OK
    result = json.loads(stdout)
    out = run / "exports" / "best-fp16.mlpackage"
    assert result["path"] == str(out) and result["verdict"] == "not checked" and not result["passed"]
    assert result["parity"][0]["label"] == "coreml fp16"
    meta = open_export(out, require_runtime=False).metadata
    assert meta.quantization["method"] == "fp16" and "float16" in meta.exporter["name"]
    assert (out / WEIGHTS).stat().st_size < 0.6 * (exported[0] / WEIGHTS).stat().st_size

    code, _, stderr = cli("export", run, "--format", "onnx", "--quantize", "fp16")
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(stderr, "--quantize fp16 needs --format coreml, not onnx")


def test_an_unchecked_file_is_never_passed_and_a_failed_one_wins():
    unchecked = ParityReport.unchecked("coreml", "no Core ML here")
    assert not unchecked.passed and unchecked.verdict == "not checked" and "passed" not in unchecked.summary()
    reference = torch.tensor([[2.0, 1.0, 0.0]] * 4)
    good = compare("onnx", reference, reference, export_run_module.ParityCriteria.fp32())
    bad = compare("onnx int8", reference, reference.flip(1), export_run_module.ParityCriteria.int8())

    def verdict(*reports):
        return export_run_module.ExportResult(passed=False, path="", report_path="", format="coreml", exporter="",
                                              notes=[], parity=list(reports), costs=[], metadata={}, images=0,
                                              labels_match=False, seconds=0.0).verdict

    assert verdict(good) == "passed" and verdict(good, unchecked) == "not checked"
    assert verdict(unchecked, bad) == "failed" and verdict() == "failed"


# --- replacing, failing, stopping ---------------------------------------------------------------------------------

def test_an_earlier_package_is_replaced_only_by_a_complete_one(run, tmp_path, monkeypatch, cli):
    out = tmp_path / "model.mlpackage"
    assert cli("export", run, "--format", "coreml", "--out", out, "--latency-runs", "0").code == EXIT_OK
    earlier = package_files(out)
    real = export_run_module.write_export
    seen = []

    def watching_writer(model, example, fmt, path, metadata, opset=None):
        written = real(model, example, fmt, path, metadata, opset)
        seen.append(package_files(out) == earlier)  # the new package is complete; the old one is still whole
        return written

    monkeypatch.setattr(export_run_module, "write_export", watching_writer)
    code, _, stderr = cli("export", run, "--format", "coreml", "--checkpoint", "last", "--out", out,
                          "--latency-runs", "0")
    assert code == EXIT_OK, stderr
    assert seen == [True]
    assert open_export(out, require_runtime=False).metadata.source["checkpoint"] == "last"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mlpackage", "model.mlpackage" + REPORT_SUFFIX]


def test_a_failed_or_stopped_export_leaves_no_package_and_an_earlier_one_as_it_was(run, tmp_path, monkeypatch,
                                                                                  cli):
    out = tmp_path / "model.mlpackage"
    real = export_run_module.write_export

    def failing_writer(model, example, fmt, path, metadata, opset=None):
        real(model, example, fmt, path, metadata, opset)  # a whole package in the work folder, then a failure
        raise ExportError("coremltools cannot convert the model: planted")

    monkeypatch.setattr(export_run_module, "write_export", failing_writer)
    code, _, stderr = cli("export", run, "--format", "coreml", "--out", out, "--latency-runs", "0")
    assert code == EXIT_FAILED
    assert_one_clear_line(stderr, "planted")
    assert not list(tmp_path.iterdir())  # no package, no report, no work folder
    monkeypatch.undo()

    stages = []

    def stop_after_the_export() -> bool:
        return "export" in stages

    with pytest.raises(ExportCancelled):
        export_run(ExportRequest(str(run), "coreml", out=str(out), latency_runs=0),
                   [lambda event: stages.append(event.stage)], stop_after_the_export)
    assert not list(tmp_path.iterdir())

    out.mkdir()
    (out / "Manifest.json").write_text("{}")  # an earlier package (as far as the layout goes) stays as it was
    with pytest.raises(ExportCancelled):
        export_run(ExportRequest(str(run), "coreml", out=str(out), latency_runs=0),
                   [lambda event: stages.append(event.stage)], stop_after_the_export)
    assert package_files(out) == {"Manifest.json": b"{}"} and not leftovers(tmp_path)


def test_a_folder_or_file_that_is_not_a_package_is_refused_before_any_work(run, tmp_path, monkeypatch, cli):
    monkeypatch.setattr(export_run_module, "load_checkpoint", lambda *a: pytest.fail("work started"))
    photos = tmp_path / "photos.mlpackage"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"the user's")
    code, _, stderr = cli("export", run, "--format", "coreml", "--out", photos)
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(stderr, str(photos), "is a folder that is not a Core ML package")
    assert package_files(photos) == {"holiday.jpg": b"the user's"}
    file = tmp_path / "file.mlpackage"
    file.write_bytes(b"not a folder")
    code, _, stderr = cli("export", run, "--format", "coreml", "--out", file)
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(stderr, str(file), "is a file; what Thaw writes there is a folder")
    assert file.read_bytes() == b"not a folder" and not leftovers(tmp_path)


def test_a_folder_that_appeared_at_out_after_the_first_check_is_still_left_alone(tmp_path):
    """The last line of defence: a folder made at --out while the export ran (after the checks before any work) is
    not a package Thaw wrote, and the swap refuses it too, leaving both folders as they were."""
    from engine import io_files

    theirs, new = tmp_path / "out.mlpackage", tmp_path / "work" / "out.mlpackage"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    new.mkdir(parents=True)
    (new / "a").write_text("new")
    with pytest.raises(io_files.UnwritableError, match="a folder Thaw did not write"):
        io_files.replace_folder_into(new, theirs, "--out", lambda path: False)
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"] and (new / "a").read_text() == "new"


def test_a_failed_second_rename_puts_the_earlier_folder_back(tmp_path, monkeypatch):
    from engine import io_files

    old, new = tmp_path / "out.mlpackage", tmp_path / "work" / "out.mlpackage"
    old.mkdir()
    (old / "a").write_text("old")
    new.mkdir(parents=True)
    (new / "a").write_text("new")
    real = io_files.os.rename
    calls = []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(io_files.os, "rename", second_fails)
    with pytest.raises(io_files.UnwritableError, match="No space left"):
        io_files.replace_folder_into(new, old, "--out", lambda path: True)
    assert (old / "a").read_text() == "old" and (new / "a").read_text() == "new"
    monkeypatch.undo()
    io_files.replace_folder_into(new, old, "--out", lambda path: True)
    assert (old / "a").read_text() == "new" and sorted(p.name for p in (tmp_path / "work").iterdir()) == []


# --- damaged, edited and foreign packages -------------------------------------------------------------------------

def _edit_spec(package: Path, change) -> None:
    spec = coreml_package.read_spec(package)
    change(spec)
    (package / SPEC).write_bytes(spec.SerializeToString())


def _reverse_class_names(spec) -> None:
    entries = spec.description.metadata.userDefined
    document = json.loads(entries["thaw"])
    document["class_names"].reverse()
    entries["thaw"] = json.dumps(document, indent=1)


def _flip_weight_byte(package: Path) -> None:
    data = bytearray((package / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0x5A
    (package / WEIGHTS).write_bytes(bytes(data))


DAMAGES = {
    "class names edited": (lambda p: _edit_spec(p, _reverse_class_names), "was changed after it was exported"),
    "description edited": (lambda p: _edit_spec(p, lambda s: setattr(s.description.metadata, "shortDescription",
                                                                     "x")), "checksum"),
    "flipped weight byte": (_flip_weight_byte, "checksum"),
    "weights removed": (lambda p: (p / WEIGHTS).unlink(), "checksum"),
    "truncated spec": (lambda p: (p / SPEC).write_bytes((p / SPEC).read_bytes()[: (p / SPEC).stat().st_size // 2]),
                       "corrupted or truncated"),
    "spec removed": (lambda p: (p / SPEC).unlink(), "is not in the package"),
    "manifest removed": (lambda p: (p / "Manifest.json").unlink(), "not a complete Core ML package"),
    "manifest scrambled": (lambda p: (p / "Manifest.json").write_bytes(b"\xff" * 64), "manifest"),
    "emptied": (lambda p: [shutil.rmtree(c) if c.is_dir() else c.unlink() for c in list(p.iterdir())], "is empty"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_an_edited_or_damaged_package_is_refused_when_its_metadata_is_read(tiny_package, tmp_path, damage):
    make, phrase = DAMAGES[damage]
    target = tmp_path / "damaged.mlpackage"
    shutil.copytree(tiny_package, target)
    make(target)
    with pytest.raises(ExportFileError) as caught:
        open_export(target, require_runtime=False)
    message = str(caught.value)
    assert "\n" not in message and str(target) in message and phrase in message, message


def test_a_package_from_another_tool_is_refused_for_its_missing_metadata(tmp_path):
    with coreml_package.coremltools_imported_quietly():
        import coremltools as ct

    model = Tiny().eval()
    program = torch.export.export(model, (torch.rand(1, 3, 16, 16),)).run_decompositions({})
    path = tmp_path / "foreign.mlpackage"
    ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16).save(str(path))
    with pytest.raises(ExportFileError, match="has no Thaw metadata \\(user-defined metadata 'thaw'\\): it was not "
                                              "exported by Thaw"):
        open_export(path, require_runtime=False)


def test_without_coremltools_the_format_says_which_package_before_any_work(run, tmp_path, monkeypatch, cli):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "coremltools" else
                        real(name, *a))
    monkeypatch.setattr(export_run_module, "load_checkpoint", lambda *a: pytest.fail("work started"))
    code, _, stderr = cli("export", run, "--format", "coreml", "--out", tmp_path / "m.mlpackage")
    assert code == EXIT_BAD_INPUT
    assert_one_clear_line(stderr, "the coreml format needs the 'coremltools' package", "pip install coremltools")
    assert not list(tmp_path.iterdir())


# --- where Core ML runs (macOS): the ordinary parity check -----------------------------------------------------------

class FakeCoreML:
    """Stands in for the model Core ML loads on macOS (coreml_package.load_model): `predict({"input": one image})`
    → {"logits": …} as coremltools' MLModel answers, computed by `model` (the checkpoint's network or a skewed
    copy)."""

    model: torch.nn.Module
    calls: list

    def __init__(self, package: Path):
        assert Path(package).is_dir()

    def predict(self, inputs: dict) -> dict:
        array = inputs["input"]
        assert array.dtype == np.float32 and array.shape[0] == 1  # one image, as the package takes
        FakeCoreML.calls.append(array.shape)
        with torch.no_grad():
            return {"logits": FakeCoreML.model(torch.from_numpy(array)).numpy()}


@pytest.mark.parametrize("skew", [0.0, 0.5])
def test_where_core_ml_runs_the_parity_check_runs_and_decides(run, tmp_path, monkeypatch, skew):
    model = Predictor.from_checkpoint(checkpoint_path(run, "best")).model.eval()
    with torch.no_grad():
        model.get_submodule(find_classifier(model)).bias[0] += skew
    FakeCoreML.model, FakeCoreML.calls = model, []
    monkeypatch.setattr(ExportFormat, "unavailable_here", lambda self: "")  # as on macOS
    monkeypatch.setattr(coreml_package, "runtime_missing", lambda: "")
    monkeypatch.setattr(coreml_package, "load_model", FakeCoreML)
    out = tmp_path / "model.mlpackage"
    request = ExportRequest(str(run), "coreml", out=str(out), latency_runs=0)
    if not skew:
        result = export_run(request)
        assert result.passed and result.verdict == "passed" and result.path == str(out) and out.is_dir()
        assert result.parity[0].images == 6 and result.parity[0].max_abs_logit_diff < 1e-4
        assert len(FakeCoreML.calls) == 6  # image by image
        return
    with pytest.raises(ExportFailedError, match="disagrees with the checkpoint") as caught:
        export_run(request)
    assert caught.value.result.verdict == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mlpackage" + FAILED_SUFFIX]
