"""The self-test (`python main.py --self-test`), resource lookup, windowed-start set-up and the desktop entry.

The packaged build is not made here (that is `make package-test`); these tests run from source and are fast.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("torch", "torch._dynamo", "torchvision ops", "resources", "image decode", "train step", "engine run",
          "export", "evaluation", "OpenVINO export", "ExecuTorch export", "Core ML export", "distributed run",
          "data loader worker", "Qt", "main window")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


# --- the self-test from source, as a user runs it ---------------------------------------------------------------
def test_self_test_from_source_passes_every_check(tmp_path):
    shot = tmp_path / "window.png"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--self-test", "--screenshot", str(shot)],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, f"self-test failed:\n{out}\n{proc.stderr}"
    lines = out.splitlines()
    assert lines[0].startswith("Thaw ") and "self-test" in lines[0]
    for name in CHECKS:
        pattern = re.compile(rf"^ok\s+{re.escape(name)}\s+\d+\.\d\d s  \S")
        assert any(pattern.match(line) for line in lines), f"no passing line for {name!r} in:\n{out}"
    assert re.match(r"^self-test passed: \d+ checks in \d+\.\d s", lines[-1]), out
    assert shot.is_file() and shot.stat().st_size > 1000


# --- the runner: failures are reported by name and make the exit status non-zero --------------------------------
def test_failed_check_is_reported_with_its_reason(capsys):
    from engine.selftest import CheckWarning, run_checks, summary_line

    def broken():
        raise ImportError("No module named 'gui.nowhere'")

    def shaky():
        raise CheckWarning("workers unavailable")

    results = run_checks([("fine", lambda: "all good"), ("broken", broken), ("shaky", shaky)])
    lines = capsys.readouterr().out.splitlines()
    assert [r.status for r in results] == ["ok", "FAIL", "warn"]
    assert re.match(r"^ok\s+fine\s+\d+\.\d\d s  all good$", lines[0])
    assert re.match(r"^FAIL\s+broken\s+\d+\.\d\d s  ImportError: No module named 'gui.nowhere'$", lines[1])
    assert lines[2].startswith("warn")
    assert summary_line(results, 1.0).startswith("self-test FAILED: 1 of 3 checks failed (broken)")


def test_main_exits_non_zero_when_a_check_fails(monkeypatch, capsys):
    from engine import selftest

    class Failing(selftest.ExtraChecks):
        def checks(self):
            return [("main window", lambda: (_ for _ in ()).throw(RuntimeError("boom")))]

    monkeypatch.setattr(selftest.EngineChecks, "checks", lambda self: [("torch", lambda: "fine")])
    assert selftest.main([], lambda _work, _args: Failing()) == 1
    out = capsys.readouterr().out
    assert "FAIL  main window" in out and "RuntimeError: boom" in out
    assert "self-test FAILED: 1 of 2 checks failed (main window)" in out


def test_missing_main_window_is_a_failed_check_not_a_crash(qapp, monkeypatch, tmp_path, capsys):
    from engine.selftest import run_checks
    from gui.selftest_checks import StudioChecks

    monkeypatch.setitem(sys.modules, "gui.main_window", None)  # `import gui.main_window` now raises ImportError
    test = StudioChecks(tmp_path)
    test.app, test.qt_ok = qapp, True
    (result,) = run_checks([("main window", test.check_main_window)])
    assert result.failed and "Error" in result.detail and "gui.main_window" in result.detail
    assert "FAIL  main window" in capsys.readouterr().out


# --- resources from source, from a bundle, and overridden --------------------------------------------------------
def test_resources_resolve_from_source():
    from gui.resources import ICON_PNG, ICON_SVG, SAMPLE_IMAGE, resource_path, resources_dir

    assert resources_dir() == ROOT / "resources"
    for name in (ICON_PNG, ICON_SVG, SAMPLE_IMAGE):
        assert resource_path(name).is_file()


def test_resources_resolve_from_a_pyinstaller_bundle(monkeypatch, tmp_path):
    from gui import resources

    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "thaw.png").write_bytes(b"png")
    monkeypatch.delenv(resources.RESOURCES_ENV, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resource_path("thaw.png") == tmp_path / "resources" / "thaw.png"
    with pytest.raises(resources.ResourceNotFoundError, match="sample.png"):
        resources.resource_path("sample.png")
    assert resources.find_resource("sample.png") is None
    monkeypatch.setenv(resources.RESOURCES_ENV, str(ROOT / "resources"))
    assert resources.resource_path("sample.png") == ROOT / "resources" / "sample.png"


def test_app_icon_renders(qapp):
    from gui.resources import app_icon

    icon = app_icon()
    assert not icon.isNull()
    assert not icon.pixmap(256, 256).isNull()


# --- windowed builds: streams, freeze support, workers -------------------------------------------------------------
def test_missing_streams_go_to_the_log_file(tmp_path):
    """A windowed build starts with sys.stdout/sys.stderr None; after prepare_process they write to thaw.log."""
    script = (
        "import sys; sys.stdout = None; sys.stderr = None\n"
        "from gui.platform_setup import prepare_process, log_path\n"
        "prepare_process()\n"
        "print('hello from print'); sys.stderr.write('hello from stderr\\n')\n"
        "import logging; logging.basicConfig(); logging.getLogger('t').warning('hello from logging')\n"
        "open(sys.argv[1], 'w').write(str(log_path()))\n"
    )
    where = tmp_path / "where.txt"
    env = _env(XDG_STATE_HOME=str(tmp_path / "state"), HOME=str(tmp_path), LOCALAPPDATA=str(tmp_path))
    subprocess.run([sys.executable, "-c", script, str(where)], cwd=ROOT, env=env, check=True, timeout=60)
    log = Path(where.read_text())
    assert log.name == "thaw.log" and str(log).startswith(str(tmp_path))
    text = log.read_text()
    assert "hello from print" in text and "hello from stderr" in text and "hello from logging" in text


def test_streams_that_exist_are_left_alone(monkeypatch):
    from gui import platform_setup

    monkeypatch.delenv(platform_setup.LOG_TO_FILE_ENV, raising=False)
    before = (sys.stdout, sys.stderr)
    assert platform_setup.redirect_streams_to_log() is None
    assert (sys.stdout, sys.stderr) == before


def test_frozen_build_loads_data_in_the_main_process(monkeypatch):
    from engine.environment import MAX_WORKERS_ENV, max_workers_override
    from gui import platform_setup

    for key in (MAX_WORKERS_ENV, platform_setup.FROZEN_ENV, "PYQTGRAPH_QT_LIB"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    platform_setup.configure_frozen_environment()
    assert not platform_setup.is_frozen() and max_workers_override() is None
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    platform_setup.configure_frozen_environment()
    assert platform_setup.is_frozen()
    assert os.environ[MAX_WORKERS_ENV] == "0" and max_workers_override() == 0
    monkeypatch.setenv(MAX_WORKERS_ENV, "3")  # a user's own choice wins
    platform_setup.configure_frozen_environment()
    assert max_workers_override() == 3


def test_main_calls_freeze_support_before_anything_else():
    tree = ast.parse((ROOT / "main.py").read_text())
    guard = next(node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))
    first = ast.unparse(guard.body[0])
    assert first == "multiprocessing.freeze_support()"
    assert "prepare_process()" in ast.unparse(guard.body[2])


# --- packaging files -------------------------------------------------------------------------------------------------
def test_spec_never_excludes_dynamo():
    tree = ast.parse((ROOT / "packaging" / "thaw.spec").read_text())
    assign = next(node for node in tree.body if isinstance(node, ast.Assign)
                  and any(getattr(t, "id", "") == "excludes" for t in node.targets))
    excludes = ast.literal_eval(assign.value)
    protected = ("torch", "torch._dynamo", "torchvision", "PySide6", "pyqtgraph", "sympy", "engine", "gui")
    for name in excludes:
        assert not any(p == name or p.startswith(name + ".") for p in protected), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="freedesktop.org desktop entries")
def test_desktop_entry_installs_for_the_user(tmp_path):
    fake = tmp_path / "my apps" / "Thaw"  # a bundle path with a space, to check the Exec quoting
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    prefix = tmp_path / "share"
    subprocess.run([str(ROOT / "packaging" / "install_desktop.sh"), "--prefix", str(prefix), "--bundle", str(fake)],
                   check=True, capture_output=True, timeout=60)
    entry = (prefix / "applications" / "thaw.desktop").read_text()
    assert f'Exec=env THAW_LOG_TO_FILE=1 "{fake}" %F\n' in entry
    assert "MimeType=application/json;inode/directory;" in entry and "Icon=thaw\n" in entry
    assert (prefix / "icons" / "hicolor" / "256x256" / "apps" / "thaw.png").is_file()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(prefix / "applications" / "thaw.desktop")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    if not (ROOT / ".venv" / "bin" / "python").exists():
        return
    source = subprocess.run([str(ROOT / "packaging" / "install_desktop.sh"), "--print", "--source"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    assert "main.py %F" in source


def test_a_studio_that_cannot_be_imported_is_a_failed_check_after_the_engines(monkeypatch, capsys):
    import main
    from engine import selftest

    monkeypatch.setattr(selftest.EngineChecks, "checks", lambda self: [("torch", lambda: "fine")])
    import gui

    monkeypatch.setitem(sys.modules, "gui.selftest_checks", None)  # `from gui import selftest_checks` raises
    monkeypatch.delattr(gui, "selftest_checks", raising=False)  # (also once another test imported it)
    assert main.self_test([]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^ok\s+torch", out, re.M) and re.search(r"^FAIL\s+studio\s.*gui.selftest_checks", out, re.M)


# --- Qt's X11 plugin: missing system libraries are named, never Qt's generic abort -----------------------------
LDD_OUTPUT = """\tlinux-vdso.so.1 (0x00007ffd)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f9c)
\tlibxcb-icccm.so.4 => not found
\tlibEGL.so.1 => not found
"""


def test_ldd_output_names_the_missing_libraries_and_their_packages():
    from gui.xcb_libraries import debian_package, missing_from_ldd, missing_text

    missing = missing_from_ldd(LDD_OUTPUT)
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libEGL.so.1"]
    assert [debian_package(s) for s in missing] == ["libxcb-cursor0", "libxcb-icccm4", "libegl1"]
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert debian_package("libX11-xcb.so.1") == "libx11-xcb1"
    text = missing_text(missing)
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libegl1" in text


def test_missing_xcb_libraries_reads_ldd_of_the_plugin(tmp_path):
    from gui.xcb_libraries import missing_xcb_libraries

    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, LDD_OUTPUT, "")

    if not sys.platform.startswith("linux") or shutil.which("ldd") is None:
        assert missing_xcb_libraries(plugin, fake_run) is None
        return
    assert missing_xcb_libraries(plugin, fake_run) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libEGL.so.1"]
    assert calls[0][1] == str(plugin)


@pytest.mark.parametrize(("platform", "status"), [("xcb", "FAIL"), ("offscreen", "warn")])
def test_the_self_test_names_missing_xcb_libraries(monkeypatch, tmp_path, capsys, platform, status):
    from engine.selftest import run_checks
    from gui import selftest_checks

    monkeypatch.setattr(selftest_checks, "missing_xcb_libraries", lambda: ["libxcb-cursor.so.0"])
    monkeypatch.setenv("QT_QPA_PLATFORM", platform)
    checks = selftest_checks.StudioChecks(tmp_path)
    (check,) = [c for c in checks.checks() if c.name == "Qt platform libraries"]

    (result,) = run_checks([check])

    assert result.status == status and "libxcb-cursor.so.0" in result.detail and "libxcb-cursor0" in result.detail
    assert os.environ["QT_QPA_PLATFORM"] == "offscreen"  # the Qt check then runs instead of aborting


def test_the_studio_refuses_to_start_without_them_naming_them(monkeypatch, capsys):
    from gui import app

    monkeypatch.setattr(app, "xcb_will_be_used", lambda: True)
    monkeypatch.setattr(app, "missing_xcb_libraries", lambda: ["libxcb-keysyms.so.1"])
    assert app.run_studio([]) == 1
    err = capsys.readouterr().err
    assert "libxcb-keysyms.so.1" in err and "apt-get install libxcb-keysyms1" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin is Linux's")
def test_python_main_py_on_x11_without_the_libraries_says_which(tmp_path):
    """On a machine that lacks some (this one may, a desktop does not): the real start, in a child process."""
    from gui.xcb_libraries import missing_xcb_libraries

    missing = missing_xcb_libraries()
    if not missing:
        pytest.skip("every library of Qt's xcb plugin is installed here")
    env = _env(QT_QPA_PLATFORM="", DISPLAY=":99", THAW_SETTINGS=str(tmp_path / "s.ini"))
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run([sys.executable, str(ROOT / "main.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert all(name in proc.stderr for name in missing) and "apt-get install" in proc.stderr
    assert "could not load the Qt platform plugin" not in proc.stderr.lower()


# --- a self-test that cannot hang (issue 27) -------------------------------------------------------------------------
def test_a_check_that_blocks_is_reported_timeout_within_its_limit_and_the_others_still_run():
    import threading
    import time

    from engine.selftest import TimedCheck, doing, run_checks

    release = threading.Event()

    def stuck() -> str:
        doing("waiting for a lock nobody releases")
        release.wait(30)  # bounded, so a runner without limits fails this test instead of hanging it
        return "released"

    started = time.perf_counter()
    hangs = []  # never ends pytest's process, should the check run in the main thread after all
    try:
        results = run_checks([TimedCheck("stuck", stuck, limit_s=0.5, in_thread=True),
                              TimedCheck("after", lambda: "ran", limit_s=5, in_thread=True)], on_hang=hangs.append)
    finally:
        release.set()
    assert time.perf_counter() - started < 10
    assert [(r.name, r.status) for r in results] == [("stuck", "TIMEOUT"), ("after", "ok")]
    assert results[0].failed and results[0].seconds < 5
    detail = results[0].detail
    assert "0 s limit" in detail and "waiting for a lock nobody releases" in detail
    assert "test_selftest.py" in detail and "in stuck" in detail  # where it was stuck


def test_a_main_thread_check_that_hangs_ends_the_self_test_with_timeout_and_a_summary():
    """A Qt check runs in the main thread, which nothing can take back: past its limit the self-test prints the
    TIMEOUT line (what it was doing) and a FAILED summary, and the process ends with status 1."""
    script = (
        "import threading\n"
        "from engine.selftest import TimedCheck, doing, run_checks\n"
        "def hangs():\n"
        "    doing('showing a dialog nobody answers')\n"
        "    threading.Event().wait(120)\n"
        "run_checks([('fine', lambda: 'all good'), TimedCheck('main window', hangs, limit_s=1.0)])\n"
        "print('NOT REACHED')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.match(r"^ok\s+fine", lines[0])
    assert re.match(r"^TIMEOUT main window\s+1\.\d\d s  did not finish within its 1 s limit while showing a dialog "
                    r"nobody answers; at <string>:5 in hangs \(innermost threading.py:\d+ in wait\) \(in the main "
                    r"thread: the self-test stops here\)$", lines[1]), lines
    assert lines[2].startswith("self-test FAILED: 1 of 2 checks failed (main window)")
    assert "NOT REACHED" not in proc.stdout


def _window_checks(qapp, tmp_path, monkeypatch, open_paths):
    """The studio's Qt and main-window checks as the self-test runs them, in this process, with a safety net: a modal
    dialog still open after 45 s is closed by the test (and counted), so a regression fails instead of hanging."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from engine.selftest import run_checks
    from gui.selftest_checks import StudioChecks

    monkeypatch.setenv("THAW_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("THAW_OFFLINE", "1")
    rescued = []

    def rescue():
        modal = QApplication.activeModalWidget()
        if modal is not None:
            rescued.append(modal.windowTitle())
            modal.reject()

    net = QTimer()
    net.timeout.connect(rescue)
    net.start(45_000)
    checks = StudioChecks(tmp_path, open_paths=[str(p) for p in open_paths])
    hangs = []
    try:
        results = run_checks([c for c in checks.checks() if c.name in ("Qt", "main window")], on_hang=hangs.append)
    finally:
        net.stop()
        checks.close()
    return {r.name: r for r in results}, rescued, hangs


def test_a_dialog_in_the_self_test_fails_its_check_and_is_never_left_open(qapp, tmp_path, monkeypatch):
    bad = tmp_path / "broken.json"
    bad.write_text("{ not a recipe", encoding="utf-8")  # the window answers with QMessageBox.warning
    results, rescued, hangs = _window_checks(qapp, tmp_path, monkeypatch, [bad])
    assert rescued == [] and hangs == []  # the self-test closed it itself, at once
    window = results["main window"]
    assert window.status == "FAIL", window.line()
    assert "a dialog opened" in window.detail and "Cannot open recipe" in window.detail


def test_opening_a_recipe_and_a_folder_then_closing_asks_nothing(qapp, tmp_path, monkeypatch):
    """What package_test.sh does (`--open recipe.json --open images/`): the folder edits the recipe, and closing the
    window must not ask to save that edit (the box that hung the bundle's self-test for minutes)."""
    from PIL import Image

    recipe = tmp_path / "recipe.json"
    shutil.copy(ROOT / "examples" / "fine_tune_all.json", recipe)
    for cls in ("ice", "water"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(tmp_path / "images" / cls / f"{i}.png")
    results, rescued, hangs = _window_checks(qapp, tmp_path, monkeypatch, [recipe, tmp_path / "images"])
    assert rescued == [] and hangs == []
    assert results["main window"].status == "ok", results["main window"].line()


def _fake_bundle(tmp_path, body: str) -> Path:
    exe = tmp_path / "Thaw"
    exe.write_text("#!/usr/bin/env bash\n" + body)
    exe.chmod(0o755)
    return exe


@pytest.mark.skipif(shutil.which("timeout") is None, reason="coreutils' timeout")
def test_package_test_has_an_overall_limit_and_names_the_step(tmp_path):
    import time

    exe = _fake_bundle(tmp_path, "exec sleep 300\n")  # a bundle whose self-test never ends
    env = _env(THAW_BUNDLE_EXE=str(exe), THAW_PACKAGE_TEST_LIMIT="2", SCREENSHOT=str(tmp_path / "shot.png"))
    started = time.perf_counter()
    proc = subprocess.run([str(ROOT / "packaging" / "package_test.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert time.perf_counter() - started < 30
    assert proc.returncode != 0
    assert "step '1. self-test' did not finish within the test's limit of 2 s" in proc.stderr


# --- multi-process runs from a packaged app: it runs torchrun itself and starts itself as each worker ----------------
def _fake_frozen_app(tmp_path) -> Path:
    """An executable that behaves as the bundle's `Thaw` does (main.py with the arguments), to stand for it."""
    return _fake_bundle(tmp_path, f'exec "{sys.executable}" "{ROOT / "main.py"}" "$@"\n')


def test_a_packaged_app_starts_training_processes_through_its_own_torchrun(monkeypatch, tmp_path):
    from engine.train import launch

    exe = str(_fake_frozen_app(tmp_path))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", exe)
    run = launch.ProcessRun(["train", "recipe.json"], processes=2, channel=tmp_path / "channel")  # not refused
    command = run.command
    assert command[:2] == [exe, "--torchrun"] and "--nproc-per-node=2" in command
    assert command[command.index("--no-python") + 1:] == [exe, "train", "recipe.json"]
    assert "-m" not in command and "-u" not in command  # a bundle has no python options
    assert launch.ProcessRun(["train", "r.json"], processes=1, channel=tmp_path / "c1").command == [
        exe, "train", "r.json"]


def test_the_frozen_torchrun_command_really_runs_two_gloo_workers(tmp_path):
    """The command a packaged app builds, run for real with a stand-in executable: torchrun through `--torchrun`, two
    workers through main.py's child entry, gloo between them."""
    exe = _fake_frozen_app(tmp_path)
    script = (
        "import subprocess, sys\n"
        f"sys.frozen = True; sys.executable = {str(exe)!r}\n"
        "from engine.train.launch import torchrun_command\n"
        "command = torchrun_command(2, [], ['--self-test-gloo-worker'])\n"
        "sys.exit(subprocess.run(command, timeout=150).returncode)\n"
    )
    env = _env(OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Searched, not split into lines: the two workers share one pipe and a clean clone's run once joined their lines.
    assert sorted(re.findall(r"rank (\d+): gloo sum 3", proc.stdout)) == ["0", "1"], proc.stdout
