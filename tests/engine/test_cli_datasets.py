"""Issue 23: `datasets [--json]` and `download NAME [--root DIR]`, in this process (the exit codes and one-line
messages are engine.cli.main's own; a subprocess would prove nothing more here)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from engine.data import sources
from tests import dataset_layouts as layouts
from tests.conftest import ROOT
from tests.engine.test_download import eurosat_zip, md5, served
from tests.loopback_server import LoopbackServer


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("THAW_OFFLINE", raising=False)


def test_datasets_lists_every_set_and_says_which_are_on_disk(cli, tmp_path):
    layouts.mnist(tmp_path)
    code, out, err = cli("datasets", "--json", "--root", tmp_path)
    assert code == 0, err
    data = json.loads(out)
    rows = {row["name"]: row for row in data["datasets"]}
    assert data["root"] == str(tmp_path)
    assert {"Caltech101", "Food101", "PCAM", "STL10"} <= set(rows) and "folder" not in rows
    assert rows["MNIST"]["on_disk"] is True and rows["Caltech101"]["on_disk"] is False
    for key in ("images", "classes", "download_bytes", "split", "licence"):
        assert rows["Caltech101"][key], key
    code, out, _ = cli("datasets", "--root", tmp_path)
    line = next(line for line in out.splitlines() if line.startswith("MNIST "))
    assert "yes" in line and "70,000" in line and "CC BY-SA 3.0" in line


def test_download_fetches_unpacks_and_says_how_to_train_on_it(cli, tmp_path, monkeypatch):
    body = eurosat_zip(tmp_path)
    with LoopbackServer() as server:
        url = server.serve("EuroSAT.zip", body)
        monkeypatch.setitem(sources._REGISTRY, "EuroSAT",
                            served("EuroSAT", (sources.Archive(url, "EuroSAT.zip", md5(body), "eurosat", "zip"),)))
        code, out, err = cli("download", "EuroSAT", "--root", tmp_path / "data")
        assert code == 0, err
        assert f"EuroSAT is on disk under {tmp_path / 'data'}" in out and '"dataset": "EuroSAT"' in out
        assert "fetch EuroSAT.zip" in err  # not a terminal: one line per stage instead of a bar
        code, out, _ = cli("download", "EuroSAT", "--root", tmp_path / "data")
        assert code == 0 and "already on disk" in out and len(server.requests) == 1


def test_download_offline_exits_2_in_one_line_naming_the_url_and_the_place(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_OFFLINE", "1")
    code, out, err = cli("download", "Caltech101", "--root", tmp_path)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: offline")
    assert "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip" in err
    assert str(tmp_path / "caltech101" / "caltech-101.zip") in err


def test_download_refuses_a_damaged_archive_by_name_with_exit_2(cli, tmp_path, monkeypatch):
    body = eurosat_zip(tmp_path)
    with LoopbackServer() as server:
        url = server.serve("EuroSAT.zip", b"not the archive")
        monkeypatch.setitem(sources._REGISTRY, "EuroSAT",
                            served("EuroSAT", (sources.Archive(url, "EuroSAT.zip", md5(body), "eurosat", "zip"),)))
        code, _, err = cli("download", "EuroSAT", "--root", tmp_path)
    assert code == 2 and "error: EuroSAT.zip is damaged or not the published file" in err


def test_download_of_an_unknown_or_local_name_exits_2(cli, tmp_path):
    code, _, err = cli("download", "Caltech-101", "--root", tmp_path)
    assert code == 2 and "unknown data set 'Caltech-101'; known: folder, csv, Caltech101" in err
    code, _, err = cli("download", "folder", "--root", tmp_path)
    assert code == 2 and "your own data" in err


def test_ctrl_c_during_a_download_exits_3_and_says_how_to_resume(cli, tmp_path, monkeypatch):
    import engine.data.download as download

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "fetch", interrupted)
    code, _, err = cli("download", "CIFAR10", "--root", tmp_path)
    assert code == 3
    assert f"stopped: what was fetched is kept; `python main.py download CIFAR10 --root {tmp_path}` resumes" in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_a_real_ctrl_c_stops_a_download_with_exit_3_and_the_same_command_resumes_it(tmp_path, monkeypatch, cli):
    """A subprocess, because the point is the signal: Python's SIGINT lands in a socket read mid-file."""
    body = eurosat_zip(tmp_path, padding=2_000_000)
    with LoopbackServer() as server:
        server.hold_after = 300_000  # the rest waits: the Ctrl-C lands while the child waits for it in a socket read
        url = server.serve("EuroSAT.zip", body)
        script = (
            "import dataclasses, sys\n"
            "from engine.data import fetch, sources\n"
            "archive = sources.Archive(sys.argv[1], 'EuroSAT.zip', sys.argv[2], 'eurosat', 'zip')\n"
            "sources._REGISTRY['EuroSAT'] = dataclasses.replace(sources._REGISTRY['EuroSAT'], "
            "archives=lambda: (archive,))\n"
            # Each chunk written to the .part file is said on stdout: the test waits for that line, not for time
            "copy = fetch._copy\n"
            "def said(response, part, have, total, url, target, progress, should_stop):\n"
            "    def told(done, total):\n"
            "        print('fetched', done, flush=True)\n"
            "        if progress: progress(done, total)\n"
            "    return copy(response, part, have, total, url, target, told, should_stop)\n"
            "fetch._copy = said\n"
            "import main\n"
            "sys.exit(main.main(['download', 'EuroSAT', '--root', sys.argv[3]]))\n")
        part = tmp_path / "data" / "eurosat" / "EuroSAT.zip.part"
        proc = subprocess.Popen([sys.executable, "-c", script, url, md5(body), str(tmp_path / "data")], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                # as from a terminal: a test command started in the background (`make test &`, a CI
                                # job) ignores SIGINT, and a child inheriting SIG_IGN never hears the Ctrl-C
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            for line in proc.stdout:  # blocks until the child has written 100 kB or more (or ended)
                if line.startswith("fetched ") and int(line.split()[1]) >= 100_000:
                    break
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.hold_after = None
        server.released.set()
        assert proc.returncode == 3, err
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("stopped: what was fetched is kept; `python main.py download "
                                                       "EuroSAT --root")
        kept = part.stat().st_size
        assert 100_000 <= kept < len(body)
        monkeypatch.setitem(sources._REGISTRY, "EuroSAT",
                            served("EuroSAT", (sources.Archive(url, "EuroSAT.zip", md5(body), "eurosat", "zip"),)))
        code, _, err = cli("download", "EuroSAT", "--root", tmp_path / "data")
        assert code == 0, err
        assert server.requests[-1][1] == f"bytes={kept}-"


def test_listing_the_sets_does_not_import_torch():
    """`datasets` answers in a fraction of a second: the registry imports torch only once a set is opened."""
    code = ("import sys, contextlib, io\n"
            "from engine.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['datasets', '--json']) == 0\n"
            "sys.exit(3 if 'torch' in sys.modules else 0)\n")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0
