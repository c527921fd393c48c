"""Issue 23: downloads, safely — against a loopback HTTP server only (tests/loopback_server.py), never the internet.

Progress, resume after an interruption (HTTP Range), a stop request, checksum refusal of a damaged archive (named),
an archive the user brings (verified and used, offline), the offline message, the free-space check, and extraction
that never leaves the root; end to end, Caltech-101's real archive layout (a zip of .tar.gz) downloaded and trained
from as `"dataset": "Caltech101"` reads it."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from engine.data.download import DownloadProgress, NotEnoughSpaceError, download_source
from engine.data.fetch import ChecksumError, DownloadError, DownloadStopped, OfflineError, fetch
from engine.data.sources import Archive, get_source
from engine.data.unpack import DamagedArchiveError, UnsafeArchiveError, unpack
from tests import dataset_layouts as layouts
from tests.loopback_server import LoopbackServer

BODY = bytes(range(256)) * 800  # 204 800 bytes: several 64 kB chunks


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("THAW_OFFLINE", raising=False)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_a_fetch_reports_progress_up_to_the_whole_file(server, tmp_path):
    url = server.serve("a.bin", BODY)
    seen = []
    fetch(url, tmp_path / "a.bin", lambda done, total: seen.append((done, total)))
    assert (tmp_path / "a.bin").read_bytes() == BODY
    assert not (tmp_path / "a.bin.part").exists()
    assert seen[0] == (0, len(BODY)) and seen[-1] == (len(BODY), len(BODY))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 4


def test_an_interrupted_fetch_resumes_with_a_range_request(server, tmp_path):
    url = server.serve("a.bin", BODY)
    server.cut_after = 70_000
    with pytest.raises(DownloadError, match="run the same command again"):
        fetch(url, tmp_path / "a.bin")
    assert not (tmp_path / "a.bin").exists()  # never a partial file under the final name
    assert (tmp_path / "a.bin.part").stat().st_size == 70_000
    fetch(url, tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == BODY
    assert server.requests[-1] == ("/a.bin", "bytes=70000-")
    assert server.sent == len(BODY)  # the first 70 000 bytes were not sent twice


def test_a_server_that_ignores_range_sends_the_whole_file_again(server, tmp_path):
    url = server.serve("a.bin", BODY)
    (tmp_path / "a.bin.part").write_bytes(b"x" * 5000)  # not even the right bytes: it must not be kept
    server.honour_range = False
    fetch(url, tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == BODY


def test_a_stop_request_keeps_the_partial_download_for_the_next_try(server, tmp_path):
    url = server.serve("a.bin", BODY)
    calls = []
    with pytest.raises(DownloadStopped, match="a.bin.part is kept"):
        fetch(url, tmp_path / "a.bin", should_stop=lambda: calls.append(1) or len(calls) > 2)
    kept = (tmp_path / "a.bin.part").stat().st_size
    assert 0 < kept < len(BODY)
    fetch(url, tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == BODY
    assert server.requests[-1][1] == f"bytes={kept}-"


def test_offline_names_the_url_and_where_to_put_the_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        fetch("https://example.org/set.tgz", tmp_path / "set.tgz")
    message = str(info.value)
    assert message.startswith("offline (THAW_OFFLINE is set): cannot fetch https://example.org/set.tgz")
    assert str(tmp_path / "set.tgz") in message
    assert "\n" not in message


def test_no_network_is_the_offline_message_too(tmp_path):
    with LoopbackServer() as closed:
        url = closed.url("gone.tgz")
    with pytest.raises(OfflineError, match=rf"no network: cannot reach {url}.*put it at {tmp_path / 'gone.tgz'}"):
        fetch(url, tmp_path / "gone.tgz", timeout=5)


# --- a whole source ------------------------------------------------------------------------------------------------

def tar_bytes(files: dict[str, bytes], gz: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def eurosat_zip(tmp_path: Path, padding: int = 0) -> bytes:
    """EuroSAT.zip as the set ships it: 2750/<class>/<image>.jpg (and `padding` random bytes beside 2750/)."""
    layouts.eurosat(tmp_path / "made")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted((tmp_path / "made" / "eurosat").rglob("*.jpg")):
            zf.write(path, path.relative_to(tmp_path / "made" / "eurosat").as_posix())
        if padding:
            zf.writestr("padding.bin", os.urandom(padding))
    return buffer.getvalue()


def served(source_name: str, archives: tuple[Archive, ...], **changes):
    return dataclasses.replace(get_source(source_name), archives=lambda: archives, **changes)


def test_a_set_is_downloaded_verified_unpacked_and_then_trains(server, tmp_path):
    from tests.engine.test_data_sources import prepare

    body = eurosat_zip(tmp_path)
    url = server.serve("EuroSAT.zip", body)
    source = served("EuroSAT", (Archive(url, "EuroSAT.zip", md5(body), "eurosat", "zip", len(body)),))
    events: list[DownloadProgress] = []
    root = tmp_path / "root"
    result = download_source(source, root, events.append)
    assert result.fetched == ["EuroSAT.zip"] and source.on_disk(root)
    assert [e.stage for e in events if e.stage != "fetch"][-1] == "unpack"
    assert any(e.stage == "verify" and e.done == e.total == len(body) for e in events)
    assert sorted(os.listdir(root)) == ["eurosat"]  # no archive, no state, no staging left behind
    assert sorted(os.listdir(root / "eurosat")) == ["2750"]
    data = prepare("EuroSAT", root)
    assert data.classes == ["AnnualCrop", "Forest", "River"] and len(data.train) + len(data.val) == 12
    assert download_source(source, root).already  # a second call fetches nothing
    assert len(server.requests) == 1


def test_caltech101s_archive_of_archives_downloads_and_trains(server, tmp_path):
    """The real shape: caltech-101.zip holds caltech-101/101_ObjectCategories.tar.gz (and Annotations.tar)."""
    from tests.engine.test_data_sources import prepare

    layouts.caltech101(tmp_path / "made")
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        tar.add(tmp_path / "made" / "caltech101" / "101_ObjectCategories", "101_ObjectCategories")
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("caltech-101/101_ObjectCategories.tar.gz", inner.getvalue())
        zf.writestr("caltech-101/Annotations.tar", tar_bytes({"Annotations/x.mat": b"0"}, gz=False))
    body = outer.getvalue()
    url = server.serve("caltech-101.zip", body)
    source = served("Caltech101", (Archive(url, "caltech-101.zip", md5(body), "caltech101", "zip"),))
    download_source(source, tmp_path / "root")
    assert sorted(os.listdir(tmp_path / "root" / "caltech101")) == ["101_ObjectCategories"]
    data = prepare("Caltech101", tmp_path / "root")
    assert data.classes == ["accordion", "airplanes", "ant"] and len(data.train) + len(data.val) == 15


def test_a_damaged_archive_is_refused_by_name_and_fetched_again_next_time(server, tmp_path):
    body = eurosat_zip(tmp_path)
    url = server.serve("EuroSAT.zip", body[:-10] + b"0123456789")
    source = served("EuroSAT", (Archive(url, "EuroSAT.zip", md5(body), "eurosat", "zip"),))
    with pytest.raises(ChecksumError, match=rf"EuroSAT.zip is damaged.*expected {md5(body)}.*deleted"):
        download_source(source, tmp_path / "root")
    assert not (tmp_path / "root" / "eurosat" / "EuroSAT.zip").exists()
    assert not (tmp_path / "root" / "eurosat" / "2750").exists()  # nothing unpacked from it
    server.files["/EuroSAT.zip"] = body
    download_source(source, tmp_path / "root")
    assert source.on_disk(tmp_path / "root")


def test_an_archive_the_user_brings_is_verified_and_used_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_OFFLINE", "1")
    body = eurosat_zip(tmp_path)
    source = served("EuroSAT", (Archive("https://example.org/EuroSAT.zip", "EuroSAT.zip", md5(body), "eurosat",
                                        "zip"),))
    with pytest.raises(OfflineError, match=f"put it at {tmp_path / 'root' / 'eurosat' / 'EuroSAT.zip'}"):
        download_source(source, tmp_path / "root")
    (tmp_path / "root" / "eurosat" / "EuroSAT.zip").write_bytes(body)
    result = download_source(source, tmp_path / "root")
    assert result.brought == ["EuroSAT.zip"] and source.on_disk(tmp_path / "root")


def test_a_foreign_archive_the_user_brings_is_refused_and_kept(tmp_path):
    body = eurosat_zip(tmp_path)
    source = served("EuroSAT", (Archive("https://example.org/EuroSAT.zip", "EuroSAT.zip", md5(body), "eurosat",
                                        "zip"),))
    (tmp_path / "root" / "eurosat").mkdir(parents=True)
    (tmp_path / "root" / "eurosat" / "EuroSAT.zip").write_bytes(b"some other file")
    with pytest.raises(ChecksumError, match="EuroSAT.zip is damaged or not the published file.*kept"):
        download_source(source, tmp_path / "root")
    assert (tmp_path / "root" / "eurosat" / "EuroSAT.zip").read_bytes() == b"some other file"


def test_a_set_that_does_not_fit_is_refused_before_a_byte_is_fetched(server, tmp_path):
    url = server.serve("EuroSAT.zip", b"x")
    source = served("EuroSAT", (Archive(url, "EuroSAT.zip", md5(b"x"), "eurosat", "zip", 10**6),),
                    disk_bytes=10**16)  # 10 PB extracted
    with pytest.raises(NotEnoughSpaceError, match=r"EuroSAT needs about .* GB free under .* only .* is free"):
        download_source(source, tmp_path)
    assert server.requests == []


def test_a_stopped_download_continues_where_it_stopped(server, tmp_path):
    body = eurosat_zip(tmp_path, padding=300_000)  # several chunks: the stop lands mid-file
    url = server.serve("EuroSAT.zip", body)
    source = served("EuroSAT", (Archive(url, "EuroSAT.zip", md5(body), "eurosat", "zip"),))
    events = []
    stop = lambda: any(e.stage == "fetch" and e.done > 0 for e in events)  # noqa: E731 - stop once bytes came
    with pytest.raises(DownloadStopped):
        download_source(source, tmp_path / "root", events.append, stop)
    assert (tmp_path / "root" / "eurosat" / "EuroSAT.zip.part").exists()
    download_source(source, tmp_path / "root")
    assert source.on_disk(tmp_path / "root") and server.requests[-1][1].startswith("bytes=")


# --- extraction never leaves the root -------------------------------------------------------------------------------

def tar_with(tmp_path: Path, add) -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        good = tarfile.TarInfo("ok/fine.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        add(tar)
    return path


def _file(name: str):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    return add


def _link(name: str, target: str, hard: bool = False):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        info.linkname = target
        tar.addfile(info)
    return add


@pytest.mark.parametrize("add, member, why", [
    (_file("../escaped.txt"), "../escaped.txt", "'..' component"),
    (_file("ok/../../escaped.txt"), "ok/../../escaped.txt", "'..' component"),
    (_file("/tmp/thaw-absolute-escape.txt"), "/tmp/thaw-absolute-escape.txt", "absolute path"),
    (_link("ok/link", "/etc"), "ok/link", "link to the absolute path /etc"),
    # Python's "data" filter refuses these two as well (a second guard): the message says which check refused
    (_link("ok/link", "../../outside"), "ok/link", "a link to ../../outside, outside the folder"),
    (_link("hard", "../outside.txt", hard=True), "hard", "a link to ../outside.txt, outside the folder"),
], ids=["dotdot", "dotdot-inside", "absolute", "symlink-absolute", "symlink-up", "hardlink-up"])
def test_an_archive_that_would_write_outside_the_root_is_refused_whole(tmp_path, add, member, why):
    archive = tar_with(tmp_path, add)
    dest = tmp_path / "root" / "set"
    with pytest.raises(UnsafeArchiveError, match=rf"evil.tar: member '{member}' is .*{why}.*nothing"):
        unpack(archive, dest, "tar")
    assert os.listdir(dest) == []  # not even the harmless member, and no staging folder
    assert not (tmp_path / "root" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/thaw-absolute-escape.txt").exists()


def test_a_zip_member_with_dotdot_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        zf.writestr("../escaped.txt", b"evil")
    with pytest.raises(UnsafeArchiveError, match="evil.zip: member '../escaped.txt'"):
        unpack(path, tmp_path / "root", "zip")
    assert os.listdir(tmp_path / "root") == [] and not (tmp_path / "escaped.txt").exists()


def test_links_inside_the_root_are_kept(tmp_path):
    archive = tar_with(tmp_path, _link("ok/again.txt", "fine.txt"))
    unpack(archive, tmp_path / "root", "tar")
    assert (tmp_path / "root" / "ok" / "again.txt").read_text() == "ok"


def test_a_truncated_archive_is_refused_by_name(tmp_path):
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(tar_bytes({"a/b.txt": os.urandom(50_000)})[:3000])
    with pytest.raises(DamagedArchiveError, match="archive cut.tar.gz is damaged"):
        unpack(path, tmp_path / "root", "tar")
    assert os.listdir(tmp_path / "root") == []


def test_an_interrupted_extraction_leaves_nothing_half_written(tmp_path, monkeypatch):
    import engine.data.unpack as unpack_module

    path = tmp_path / "set.tar.gz"
    path.write_bytes(tar_bytes({"set/a.txt": b"a", "set/b.txt": b"b"}))

    def interrupted(*args):
        raise KeyboardInterrupt  # a Ctrl-C once every member is out, before they are moved into place

    monkeypatch.setattr(unpack_module, "_check_inside", interrupted)
    with pytest.raises(KeyboardInterrupt):
        unpack(path, tmp_path / "root", "tar")
    assert os.listdir(tmp_path / "root") == []  # no half set, and no staging folder
    monkeypatch.undo()
    unpack(path, tmp_path / "root", "tar")  # the next try starts over from the kept archive
    assert sorted(os.listdir(tmp_path / "root" / "set")) == ["a.txt", "b.txt"]


def test_a_stop_during_unpacking_keeps_the_archive_and_the_next_try_finishes(server, tmp_path):
    body = eurosat_zip(tmp_path)
    url = server.serve("EuroSAT.zip", body)
    source = served("EuroSAT", (Archive(url, "EuroSAT.zip", md5(body), "eurosat", "zip"),))
    events = []
    with pytest.raises(DownloadStopped, match="while unpacking EuroSAT.zip"):
        download_source(source, tmp_path / "root", events.append, lambda: any(e.stage == "unpack" for e in events))
    assert sorted(os.listdir(tmp_path / "root" / "eurosat")) == ["EuroSAT.zip"]  # nothing half unpacked
    result = download_source(source, tmp_path / "root")
    assert result.fetched == ["EuroSAT.zip"] and result.brought == []  # still Thaw's own archive, not "brought"
    assert source.on_disk(tmp_path / "root") and len(server.requests) == 1


def test_a_root_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path):
    from engine.errors import UnwritableError

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UnwritableError, match=r"EuroSAT: cannot write .*file.*choose another --root"):
        download_source(get_source("EuroSAT"), tmp_path / "file" / "data")


def test_a_part_longer_than_the_file_is_fetched_again_whole(server, tmp_path):
    url = server.serve("a.bin", BODY)
    (tmp_path / "a.bin.part").write_bytes(b"x" * (len(BODY) + 10))  # the file changed on the server since
    fetch(url, tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == BODY
    assert [r for _, r in server.requests] == [f"bytes={len(BODY) + 10}-", None]


def test_a_part_that_already_holds_the_whole_file_is_just_renamed(server, tmp_path):
    url = server.serve("a.bin", BODY)
    (tmp_path / "a.bin.part").write_bytes(BODY)  # stopped after the last byte, before the rename
    fetch(url, tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == BODY and server.sent == 0
