"""Issue 22, "Nothing accepted that does not belong": what a hostile trial found, each refused in one line with exit
code 2 (never a traceback) or otherwise made right. Special files are made by the test in its own tmp folder
(os.mknod where permitted, else a FIFO and a unix socket), never a system path."""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from engine.errors import BadInputError
from engine.io_files import check_target, remove_stale_partials, temp_dir_beside, write_json_atomic, write_text_atomic


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
