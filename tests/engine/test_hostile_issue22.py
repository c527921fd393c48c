"""Issue 22, "Nothing accepted that does not belong": what a hostile trial found, each refused in one line with exit
code 2 (never a traceback) or otherwise made right. Special files are made by the test in its own tmp folder
(os.mknod where permitted, else a FIFO and a unix socket), never a system path."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
from pathlib import Path

import pytest

from engine.errors import BadInputError
from engine.io_files import check_target, remove_stale_partials, temp_dir_beside, write_json_atomic, write_text_atomic
from tests.helpers import tiny_recipe


def _char_device(path: Path) -> Path | None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 7))  # the "full" device's numbers
    except (PermissionError, AttributeError, OSError):
        return None
    return path


def _special_files(folder: Path) -> dict[str, Path]:
    """Every kind of special node this process can make in `folder`."""
    nodes = {}
    device = _char_device(folder / "full")
    if device is not None:
        nodes["device"] = device
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo")
        nodes["fifo"] = folder / "fifo"
    if hasattr(socket, "AF_UNIX"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(folder / "sock"))
        sock.close()  # the node stays
        nodes["socket"] = folder / "sock"
    return nodes


@pytest.fixture
def special_files(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "nodes"
    folder.mkdir()
    nodes = _special_files(folder)
    if not nodes:
        pytest.skip("this system makes no special files")
    return nodes


def _still_special(path: Path) -> bool:
    mode = os.lstat(path).st_mode
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


# --- 1. the writer ---------------------------------------------------------------------------------------------


def test_the_writer_refuses_special_files_and_kernel_filesystems_in_one_line(special_files):
    for kind, node in special_files.items():
        with pytest.raises(BadInputError, match="Thaw writes only regular files") as caught:
            write_json_atomic(node, {"a": 1})
        assert "\n" not in str(caught.value) and str(node) in str(caught.value), kind
        assert _still_special(node), kind
        assert not [p for p in node.parent.iterdir() if p.name.startswith(".")], kind  # no temp file left
    if Path("/proc/self/mounts").exists():
        with pytest.raises(BadInputError, match="kernel's proc filesystem"):
            check_target("/proc/thaw-test.json")


def test_a_symlink_to_a_special_file_is_refused_and_a_symlink_to_a_file_is_replaced_not_followed(special_files,
                                                                                                 tmp_path):
    node = next(iter(special_files.values()))
    link = tmp_path / "link.json"
    link.symlink_to(node)
    with pytest.raises(BadInputError, match="Thaw writes only regular files"):
        write_json_atomic(link, {})
    target = tmp_path / "real.json"
    target.write_text("old")
    other = tmp_path / "other.json"
    other.symlink_to(target)
    write_text_atomic(other, "new")
    assert target.read_text() == "old" and other.read_text() == "new" and not other.is_symlink()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(BadInputError, match="read-only"):
            write_json_atomic(folder / "x.json", {})
    finally:
        folder.chmod(0o755)


def test_temp_folders_are_owner_only_and_stale_ones_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "model.onnx"
    dead = tmp_path / f".model.onnx.{_dead_pid()}.abcd.partial"
    dead.mkdir()
    (dead / "fp32.onnx").write_bytes(b"x" * 10)
    alive = tmp_path / f".model.onnx.{os.getppid()}.efgh.partial"
    alive.mkdir()
    work = temp_dir_beside(out)
    try:
        assert stat.S_IMODE(work.stat().st_mode) == 0o700
        assert not dead.exists() and alive.exists()
        assert remove_stale_partials(out) == []
    finally:
        work.rmdir()


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- 1. export refuses them before any work ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(trained_runs) -> Path:
    return trained_runs.get("feature_extraction", epochs=1)


def test_export_to_a_special_file_is_refused_before_any_work_and_leaves_the_node(tiny_run, special_files, cli,
                                                                                 monkeypatch):
    import engine.infer.export_run as export_run

    def no_work(*args, **kwargs):
        raise AssertionError("the export started before its --out was checked")

    monkeypatch.setattr(export_run, "load_checkpoint", no_work)
    for kind, node in special_files.items():
        before = set(node.parent.iterdir())
        code, out, err = cli("export", tiny_run, "--out", node, "--latency-runs", "0")
        assert code == 2, (kind, err)
        assert "Thaw writes only regular files" in err and err.count("\n") == 1, err
        assert _still_special(node) and set(node.parent.iterdir()) == before, kind


def test_export_beside_a_special_report_file_is_refused(tiny_run, special_files, cli, tmp_path):
    node = next(iter(special_files.values()))
    out = node.parent / "model.onnx"
    os.symlink(node, node.parent / "model.onnx.report.json")
    code, _, err = cli("export", tiny_run, "--out", out, "--latency-runs", "0")
    assert code == 2 and "model.onnx.report.json" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_export_into_proc_is_refused_in_one_line(tiny_run, cli):
    if not Path("/proc/self/mounts").exists():
        pytest.skip("no /proc here")
    code, _, err = cli("export", tiny_run, "--out", "/proc/thaw-export.onnx", "--latency-runs", "0")
    assert code == 2 and "proc" in err and err.count("\n") == 1, err


# --- 3. a file name that is not UTF-8 ----------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="file names of raw bytes are a Linux matter")
def test_evaluate_with_a_non_utf8_image_name_writes_a_whole_csv_and_no_traceback(tiny_run, tmp_path, thaw):
    from tests.helpers import make_image_folder

    images = make_image_folder(tmp_path / "images", classes=3, per_class=2)
    cat = next(p for p in sorted(images.iterdir()) if p.is_dir())
    first = sorted(cat.iterdir())[0]
    os.rename(os.fsencode(first), os.fsencode(cat) + b"/caf\xe9-\xff.png")  # Latin-1 bytes, not UTF-8
    csv_path = tmp_path / "rows.csv"
    out = thaw("evaluate", tiny_run, images, "--csv", csv_path, "--batch-size", "4")
    assert out.returncode == 0, out.stderr
    rows = csv_path.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + 6, rows  # the header and every image, the renamed one included
    assert any("\\xe9-\\xff.png" in row for row in rows), rows
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rows.csv")]


def test_evaluate_refuses_a_special_csv_before_evaluating(tiny_run, special_files, cli, monkeypatch):
    import engine.infer.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", lambda *a, **k: pytest.fail("evaluated first"))
    node = next(iter(special_files.values()))
    code, _, err = cli("evaluate", tiny_run, "--csv", node)
    assert code == 2 and "Thaw writes only regular files" in err and err.count("\n") == 1, err
    assert _still_special(node)


# --- 7. --opset is honoured or refused ----------------------------------------------------------------------------


@pytest.mark.parametrize("opset", ["1", "999", "17"])
def test_an_opset_outside_the_supported_range_is_refused_naming_the_range(tiny_run, opset, cli, tmp_path):
    from engine.infer.export_run import supported_opsets

    low, high = supported_opsets()
    code, _, err = cli("export", tiny_run, "--opset", opset, "--out", tmp_path / "m.onnx", "--latency-runs", "0")
    assert code == 2 and f"opsets {low} to {high}" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_an_opset_in_the_range_is_the_files_opset(tiny_run, cli, tmp_path):
    import onnx

    from engine.infer.export_run import supported_opsets

    low, high = supported_opsets()
    wanted = min(high, low + 2)
    out = tmp_path / "m.onnx"
    code, _, err = cli("export", tiny_run, "--opset", str(wanted), "--out", out, "--latency-runs", "0",
                       "--max-images", "4")
    assert code == 0, err
    proto = onnx.load(str(out))
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == wanted


# --- 9. the int8 agreement threshold is a count -------------------------------------------------------------------


def test_an_agreement_exactly_at_the_threshold_passes():
    import torch

    from engine.infer.parity import ParityCriteria, compare

    reference = torch.zeros(40, 3)
    reference[:, 0] = 1.0
    exported = reference.clone()
    exported[:4, 0], exported[:4, 1] = 0.0, 1.0  # 36 of 40 agree: 90 % exactly
    report = compare("onnx int8", reference, exported, ParityCriteria.int8(0.9))
    assert report.passed, report.failure
    exported[4, 0], exported[4, 1] = 0.0, 1.0  # 35 of 40
    assert not compare("onnx int8", reference, exported, ParityCriteria.int8(0.9)).passed


# --- 10 and smaller: options checked the same way on every command -----------------------------------------------


@pytest.mark.parametrize("args, option", [
    (("evaluate", "{run}", "--device", "cuda:9"), "--device"),
    (("evaluate", "{run}", "--device", "tpu"), "--device"),
    (("label-issues", "{run}", "--device", "cuda:9"), "--device"),
    (("predict", "{run}", "{image}", "--device", "cuda:9"), "--device"),
    (("predict", "{run}", "{image}", "--topk", "0"), "--topk"),
    (("predict", "{run}", "{image}", "--topk", "-1"), "--topk"),
    (("predict", "{run}", "{image}", "--batch-size", "0"), "--batch-size"),
    (("evaluate", "{run}", "--batch-size", "0"), "--batch-size"),
])
def test_bad_options_are_refused_in_one_line_naming_the_option(tiny_run, image_folder, args, option, cli):
    image = next(p for p in sorted((image_folder / "cat").iterdir()) if p.suffix == ".png")
    code, out, err = cli(*[a.format(run=tiny_run, image=image) for a in args])
    assert code == 2 and option in err and err.count("\n") == 1, err


# --- 6. label-issues into a run folder that cannot hold its report --------------------------------------------------


def test_label_issues_with_a_special_report_file_is_refused_before_the_work(trained_runs, tiny_run, special_files,
                                                                            cli, tmp_path, monkeypatch):
    import engine.infer.label_issues as label_issues

    run = trained_runs.copy(tiny_run, tmp_path)
    node = next(iter(special_files.values()))
    os.symlink(node, run / "label_issues.json")
    monkeypatch.setattr(label_issues, "run_split", lambda *a, **k: pytest.fail("the work started"))
    code, _, err = cli("label-issues", run)
    assert code == 2 and "label_issues.json" in err and err.count("\n") == 1, err
    assert _still_special(node)


def test_a_recipe_saved_over_a_fifo_is_refused_and_the_fifo_kept(special_files, tmp_path, image_folder):
    from tests.helpers import tiny_recipe

    node = next(iter(special_files.values()))
    with pytest.raises(BadInputError, match="Thaw writes only regular files"):
        tiny_recipe(image_folder).save(node)
    assert _still_special(node)


# --- 8. a byte flipped inside a checkpoint's weights --------------------------------------------------------------


def _flip_a_weight_byte(checkpoint: Path) -> None:
    """Flip one byte inside the largest tensor's stored data (torch's zip stores it uncompressed; its CRC is not
    checked on load), so the file still loads and only the digest can tell."""
    import zipfile

    with zipfile.ZipFile(checkpoint) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(checkpoint.read_bytes())
    offset = info.header_offset
    name_length = int.from_bytes(raw[offset + 26:offset + 28], "little")
    extra_length = int.from_bytes(raw[offset + 28:offset + 30], "little")
    start = offset + 30 + name_length + extra_length
    raw[start + info.file_size // 2] ^= 0x10
    checkpoint.write_bytes(bytes(raw))


@pytest.mark.parametrize("command", ["resume", "predict", "evaluate", "export", "label-issues"])
def test_a_byte_flipped_in_the_weights_is_refused_by_every_command(trained_runs, command, image_folder, cli,
                                                                   tmp_path):
    import torch

    run = trained_runs.copy(trained_runs.get("fine_tune_all", epochs=2, stop_after_epochs=1), tmp_path)
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        data = path.read_bytes()
        path.unlink()  # best.pt is a hard link to a last.pt: each gets its own flipped copy
        path.write_bytes(data)
        _flip_a_weight_byte(path)
        torch.load(path, weights_only=True)  # still a loadable file: only the digest can tell
    image = next(p for p in sorted((image_folder / "cat").iterdir()) if p.suffix == ".png")
    args = {"resume": (run,), "predict": (run, image), "evaluate": (run,), "label-issues": (run,),
            "export": (run, "--out", tmp_path / "m.onnx", "--latency-runs", "0")}[command]
    code, _, err = cli(command, *args)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # export prints its progress too
    assert len(errors) == 1 and "do not match the digest written with them" in errors[0], err


def test_a_checkpoint_without_a_digest_still_loads(tiny_run, tmp_path):
    import torch

    from engine.train.checkpoints import WEIGHTS_DIGEST, load_checkpoint

    state = torch.load(tiny_run / "checkpoints" / "best.pt", weights_only=True)
    assert isinstance(state.pop(WEIGHTS_DIGEST), str)
    torch.save(state, tmp_path / "old.pt")
    assert WEIGHTS_DIGEST not in load_checkpoint(tmp_path / "old.pt")


# --- 2. another run's checkpoint -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def four_class_run(trained_runs, tmp_path_factory) -> Path:
    from tests.helpers import make_image_folder

    return trained_runs.get("feature_extraction", epochs=1,
                            data=make_image_folder(tmp_path_factory.mktemp("four"), classes=4, per_class=8))


def _transplant(source_run: Path, target_run: Path, name: str) -> None:
    path = target_run / "checkpoints" / name
    path.unlink()
    path.write_bytes((source_run / "checkpoints" / name).read_bytes())


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "label-issues"])
def test_another_runs_checkpoint_is_refused_naming_both_runs(trained_runs, tiny_run, four_class_run, command,
                                                             image_folder, cli, tmp_path):
    run = trained_runs.copy(four_class_run, tmp_path)
    _transplant(tiny_run, run, "best.pt")
    evaluation = (run / "evaluation.json").read_bytes() if (run / "evaluation.json").exists() else None
    image = next(p for p in sorted((image_folder / "cat").iterdir()) if p.suffix == ".png")
    args = {"predict": (run, image), "evaluate": (run,), "label-issues": (run,),
            "export": (run, "--out", tmp_path / "m.onnx", "--latency-runs", "0")}[command]
    code, _, err = cli(command, *args)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err
    assert "belongs to another run" in errors[0] and "3 classes" in errors[0] and "4 classes" in errors[0], err
    after = (run / "evaluation.json").read_bytes() if (run / "evaluation.json").exists() else None
    assert after == evaluation


def test_resume_refuses_the_last_checkpoint_of_another_run_with_the_same_classes(trained_runs, cli, tmp_path):
    import json

    one = trained_runs.copy(trained_runs.get("fine_tune_all", epochs=2, stop_after_epochs=1), tmp_path / "a")
    other = trained_runs.get("fine_tune_all", epochs=3, stop_after_epochs=1)
    _transplant(other, one, "last.pt")
    summary = (one / "summary.json").read_text()
    code, _, err = cli("resume", one)
    assert code == 2 and "belongs to another run" in err and "run id" in err and err.count("\n") == 1, err
    assert (one / "summary.json").read_text() == summary and json.loads(summary)["run_id"]


def test_a_checkpoint_of_an_older_thaw_without_a_run_id_is_compared_on_classes(trained_runs, tiny_run,
                                                                               four_class_run, tmp_path):
    import torch

    from engine.infer.inference import Predictor

    run = trained_runs.copy(four_class_run, tmp_path)
    state = torch.load(tiny_run / "checkpoints" / "best.pt", weights_only=True)
    state.pop("run_id")
    (run / "checkpoints" / "best.pt").unlink()
    torch.save(state, run / "checkpoints" / "best.pt")
    with pytest.raises(BadInputError, match="its classes differ"):
        Predictor.from_checkpoint(run / "checkpoints" / "best.pt")
    own = trained_runs.copy(tiny_run, tmp_path / "own")
    (own / "checkpoints" / "best.pt").unlink()
    torch.save(state, own / "checkpoints" / "best.pt")  # its own run: no id to compare, classes and arch agree
    assert Predictor.from_checkpoint(own / "checkpoints" / "best.pt").class_names == ["cat", "dog", "fox"]


# --- 5. export metadata inside the checksum ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_onnx(tiny_run, tmp_path_factory) -> Path:
    from engine.infer.export_run import ExportRequest, export_run

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_run(ExportRequest(run=str(tiny_run), out=str(out), max_images=4, latency_runs=0))
    return out


def _edit_metadata(source: Path, target: Path, edit, reseal: bool = False) -> Path:
    import json

    import onnx

    from engine.infer.export_metadata import METADATA_KEY, ExportMetadata

    proto = onnx.load(str(source))
    prop = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    data = json.loads(prop.value)
    edit(data)
    if reseal:  # a file whose metadata is consistent with itself but not with its graph
        metadata = ExportMetadata.from_dict(data, "test")
        metadata.seal(data["integrity"]["weights_sha256"])
        data = metadata.to_dict()
    prop.value = json.dumps(data)
    onnx.save_model(proto, str(target))
    return target


@pytest.mark.parametrize("edit", [
    lambda d: d["class_names"].reverse(),
    lambda d: d["preprocessing"].update(mean=[1e6, 1e6, 1e6]),
])
def test_edited_export_metadata_is_refused(small_onnx, edit, image_folder, cli, tmp_path):
    changed = _edit_metadata(small_onnx, tmp_path / "m.onnx", edit)
    image = next(p for p in sorted((image_folder / "cat").iterdir()) if p.suffix == ".png")
    code, out, err = cli("predict", changed, image)
    assert code == 2 and "its metadata" in err and err.count("\n") == 1 and out == "", err


def test_fewer_class_names_than_logits_is_refused_not_a_traceback(small_onnx, image_folder, cli, tmp_path):
    changed = _edit_metadata(small_onnx, tmp_path / "m.onnx", lambda d: d["class_names"].pop(), reseal=True)
    image = next(p for p in sorted((image_folder / "cat").iterdir()) if p.suffix == ".png")
    code, out, err = cli("predict", changed, image)
    assert code == 2 and "gives 3 logits per image but its metadata names 2 classes" in err, err


# --- 4. ONNX external data that points elsewhere ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["/etc/passwd", "/etc/passwd alone", "../../x.data", "symlink", "fifo", "beside"])
def test_onnx_external_data_is_read_only_from_a_regular_file_beside_it(small_onnx, where, image_folder, cli,
                                                                         tmp_path):
    import onnx

    folder = tmp_path / "export"
    folder.mkdir()
    model = folder / "model.onnx"
    proto = onnx.load(str(small_onnx))
    onnx.save_model(proto, str(model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data")
    location = {"/etc/passwd": "/etc/passwd", "/etc/passwd alone": "/etc/passwd", "../../x.data": "../../x.data",
                "symlink": "link.data", "fifo": "pipe.data", "beside": "model.onnx.data"}[where]
    if where == "symlink":
        (folder / "link.data").symlink_to(folder / "model.onnx.data")
    if where == "fifo":
        os.mkfifo(folder / "pipe.data")
    if where.endswith("alone"):  # no data file beside it at all
        (folder / "model.onnx.data").unlink()
    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(proto, str(model))
    image = next(p for p in sorted((image_folder / "cat").iterdir()) if p.suffix == ".png")
    code, out, err = cli("predict", model, image)
    if where == "beside":
        assert code == 0, err
        return
    assert code == 2 and "Thaw reads external data only from a regular file beside the model" in err, err
    assert err.count("\n") == 1 and out == "", err


# --- smaller: a decompression bomb below PIL's hard limit; an unsafe best.ood.pt ------------------------------------


def test_an_image_above_pils_pixel_limit_is_unreadable_in_thaws_words_without_pils_warning(tmp_path, monkeypatch):
    import warnings

    from PIL import Image

    from engine.data.images import UnreadableImageError, load_image

    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: above the limit, below twice it (a warning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UnreadableImageError, match="image too large"):
            load_image(path)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_an_unsafe_ood_calibration_is_ignored_with_one_thaw_line(tiny_run, trained_runs, tmp_path, caplog):
    import argparse
    import logging

    import torch

    from engine.infer.ood import calibration_path, load_calibration

    run = trained_runs.copy(tiny_run, tmp_path)
    checkpoint = run / "checkpoints" / "best.pt"
    torch.save({"x": argparse.Namespace(a=1)}, calibration_path(checkpoint))  # a pickled object
    with caplog.at_level(logging.WARNING):
        assert load_calibration(checkpoint, "digest") is None
    text = caplog.text
    assert "pickled Python object" in text and "weights_only" not in text and text.count("\n") == 1, text


# --- every command's options, hostile values: exit 0 or 2 (1: a started export that failed its check), one line ----


_HOSTILE_TEXT = ["", " ", "-1", "0", "nan", "inf", "cuda:9", "tpu", "best", "last", "none", "int8", "onnx", "pt2",
                 "é", "../..", "/proc/x", "a" * 300, "1e309", "--json"]
_HOSTILE_NUMBERS = [-(2 ** 63), -1, 0, 1, 2, 3, 7, 10 ** 9]


def _options(command: str) -> dict[str, object]:
    """The command's optional arguments that take a value: option string -> its type (int, float or str)."""
    import argparse

    from engine.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    options = {}
    for action in sub.choices[command]._actions:  # noqa: SLF001
        if action.option_strings and action.nargs != 0 and not isinstance(action, argparse._HelpAction):  # noqa: SLF001
            options[action.option_strings[-1]] = action.type or str
    return options


@pytest.mark.parametrize("command", ["predict", "evaluate", "label-issues", "export", "scan", "layers", "recipe",
                                     "models", "train", "resume", "lr-find"])
def test_hostile_option_values_never_give_a_traceback(command, tiny_run, image_folder, tmp_path_factory, cli):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    image = next(p for p in sorted((image_folder / "cat").iterdir()) if p.suffix == ".png")
    recipe = tmp_path_factory.mktemp("recipe") / "recipe.json"
    tiny_recipe(image_folder, "fine_tune_all", epochs=1, out=recipe.parent / "runs").save(recipe)
    finished = tmp_path_factory.mktemp("finished") / tiny_run.name  # resume of a finished run evaluates it again:
    shutil.copytree(tiny_run, finished)  # on a copy, not the shared run
    positional = {"predict": [tiny_run, image], "evaluate": [tiny_run], "label-issues": [tiny_run],
                  "export": [tiny_run], "scan": [image_folder], "layers": ["tiny_resnet"],
                  "recipe": ["fine_tune_all"], "models": [], "train": [recipe], "resume": [finished],
                  "lr-find": [recipe]}[command]
    options = _options(command)
    # Fixed where the option would only make an example slow, not hostile: an export measured and calibrated on two
    # images, a training run estimated (--dry-run: the recipe, the data and every option checked, nothing trained),
    # an LR sweep of its fewest steps, a finished run resumed in this process (with N it starts N to evaluate it).
    fixed = {"export": ["--latency-runs", "0", "--max-images", "2", "--calibration-images", "2"],
             "train": ["--dry-run"], "lr-find": ["--iterations", "5"],
             "resume": ["--processes", "1"]}.get(command, [])  # (train --dry-run checks --processes)
    hostile = {name: kind for name, kind in options.items() if name not in fixed}

    def value(kind):
        if kind in (int, float):
            return st.sampled_from(_HOSTILE_NUMBERS + [1.5, -0.5]).map(str) | st.sampled_from(_HOSTILE_TEXT)
        return st.sampled_from(_HOSTILE_TEXT)

    pairs = st.sampled_from(sorted(hostile)).flatmap(lambda name: st.tuples(st.just(name), value(hostile[name])))

    @settings(max_examples=6 if command in ("export", "resume", "lr-find") else 20, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(pairs, min_size=1, max_size=2, unique_by=lambda p: p[0]))
    def check(chosen):
        folder = tmp_path_factory.mktemp("hostile")
        args = [*positional, *fixed]
        for name, text in chosen:
            if name in ("--out", "--csv", "--output") and text not in ("/proc/x", "../.."):
                text = str(folder / (text.strip() or "x")[:50])
            args += [f"{name}={text}"]
        code, _, err = cli(command, *args)  # an exception the CLI does not turn into a line fails here
        assert code in (0, 1, 2), (args, code, err)
        assert "Traceback" not in err, (args, err)
        if code == 1:
            assert command == "export" and "error:" in err, (args, err)

    check()


# --- smaller: a run killed before its first checkpoint ---------------------------------------------------------------


def test_a_run_killed_before_its_first_checkpoint_is_marked_failed_when_next_seen(tmp_path):
    import json

    from engine.train.run_lock import LOCK_FILE
    from engine.train.runs import FAILED_BEFORE_CHECKPOINT, RunRecord

    run = tmp_path / "20261207-120000-killed"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps({"name": "killed", "model": {"arch": "tiny_resnet"}}))
    (run / "summary.json").write_text(json.dumps({"status": "running", "name": "killed"}))
    (run / LOCK_FILE).write_text(str(_dead_pid()))  # its process is gone: nobody holds the lock
    record = RunRecord.load(run)
    assert record.status == "failed" and not record.live
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == FAILED_BEFORE_CHECKPOINT


def test_resume_refuses_a_run_whose_metrics_csv_was_deleted(trained_runs, cli, tmp_path):
    run = trained_runs.copy(trained_runs.get("fine_tune_all", epochs=2, stop_after_epochs=1), tmp_path)
    (run / "metrics.csv").unlink()
    summary = (run / "summary.json").read_text()
    code, _, err = cli("resume", run)
    assert code == 2 and "metrics.csv is missing" in err and err.count("\n") == 1, err
    assert (run / "summary.json").read_text() == summary and not (run / "metrics.csv").exists()


def test_a_checkpoint_used_outside_its_run_folder_says_whose_it_is(tiny_run, image_folder, cli, tmp_path):
    import json

    loose = tmp_path / "somewhere.pt"
    loose.write_bytes((tiny_run / "checkpoints" / "best.pt").read_bytes())
    image = next(p for p in sorted((image_folder / "cat").iterdir()) if p.suffix == ".png")
    code, _, err = cli("predict", loose, image)
    run_id = json.loads((tiny_run / "summary.json").read_text())["run_id"]
    assert code == 0 and "outside any run folder" in err and f"id {run_id[:12]}" in err and "3 classes" in err, err


def test_evaluate_with_a_special_evaluation_json_is_refused_before_evaluating(trained_runs, tiny_run, special_files,
                                                                              cli, tmp_path, monkeypatch):
    import engine.infer.evaluation as evaluation

    run = trained_runs.copy(tiny_run, tmp_path)
    node = next(iter(special_files.values()))
    (run / "evaluation.json").unlink(missing_ok=True)
    os.symlink(node, run / "evaluation.json")
    monkeypatch.setattr(evaluation, "evaluate_checkpoint", lambda *a, **k: pytest.fail("evaluated first"))
    code, _, err = cli("evaluate", run)
    assert code == 2 and "evaluation.json" in err and "Thaw writes only regular files" in err, err
    assert err.count("\n") == 1 and _still_special(node)


def test_a_weights_file_name_the_file_system_refuses_is_one_line(image_folder, cli, tmp_path):
    """A name longer than the file system allows (found by the option fuzzer above): `exists()` raised OSError."""
    from engine.torch_files import load_plain

    with pytest.raises(BadInputError, match="cannot be read"):
        load_plain(tmp_path / ("w" * 300 + ".pth"), "weights file")
    tiny_recipe(image_folder, out=tmp_path / "runs").save(tmp_path / "recipe.json")
    code, _, err = cli("train", tmp_path / "recipe.json", "--dry-run", "--weights-file", "w" * 300)
    assert code == 2 and "Traceback" not in err and "cannot be read (File name too long)" in err, err
