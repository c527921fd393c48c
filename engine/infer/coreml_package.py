"""A Core ML package (.mlpackage) on disk, as Thaw's writer (engine/infer/export.py) and reader
(engine/infer/exported.py) both see it: a folder, not a file —

    NAME.mlpackage/Manifest.json                          which item is the model (its UUIDs differ on every save)
    NAME.mlpackage/Data/com.apple.CoreML/model.mlmodel    the specification: a protocol buffer, metadata included
    NAME.mlpackage/Data/com.apple.CoreML/weights/…        the weights of the ML program

Thaw's metadata is the specification's user-defined metadata `thaw` (Core ML's own field, which Xcode shows). Its
checksum covers the specification without that entry and every file under Data/, so a changed weight, a changed
layer or a changed description is caught; the manifest (new UUIDs when a tool re-saves the package) and
coremltools' debug-handle map beside it are left out: Core ML refuses a package whose manifest is broken.

Core ML runs only on Apple's systems. coremltools converts and reads packages on any OS but predicts only on macOS
(its native part, libcoremlpython, exists only there), so elsewhere a package is written and read, never run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path

from engine.infer.export_formats import FORMATS
from engine.infer.export_metadata import METADATA_KEY, ExportFileError
from engine.native_output import PYTREE_LOGGER, loggers_quieted

MANIFEST = "Manifest.json"
DATA_FOLDER = "Data"
SPEC_IN_DATA = "com.apple.CoreML/model.mlmodel"  # where coremltools puts it; the manifest is what says so
MIN_MACOS = (13, 0)  # an ML program for iOS 16 / macOS 13 (the deployment target of the writer)


def coremltools_imported_quietly():
    """coremltools' import warns through its logger that its native part is missing (everywhere but macOS, by
    design) and that this torch is newer than those it was tested with, and imports ExecuTorch, whose import logs a
    deprecation of torch's pytree: none of it is a user's concern, so below errors they are dropped."""
    return loggers_quieted("coremltools", PYTREE_LOGGER)


def is_package(path: str | Path) -> bool:
    """Whether `path` is a folder laid out as a Core ML package (it has a manifest)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / MANIFEST).is_file()


def spec_path(package: Path) -> Path:
    """The specification file of `package`, as its manifest names it; ExportFileError when it cannot be found."""
    noun = FORMATS["coreml"].noun
    try:
        manifest = json.loads((package / MANIFEST).read_text(encoding="utf-8"))
        root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportFileError(f"{package} is corrupted: its {MANIFEST} cannot be read as a {noun}'s manifest "
                              f"({type(exc).__name__}: {str(exc)[:100]})") from exc
    path = package / DATA_FOLDER / str(root)
    if Path(str(root)).is_absolute() or ".." in Path(str(root)).parts or not path.is_file():
        raise ExportFileError(f"{package} is corrupted or incomplete: the model specification its {MANIFEST} "
                              f"names ({str(root)[:80]!r}) is not in the package")
    return path


def read_spec(package: Path):
    """The package's specification (a coremltools.proto.Model_pb2.Model); ExportFileError when it is damaged."""
    with coremltools_imported_quietly():
        from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(spec_path(package).read_bytes())
    except ExportFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError types for damaged bytes
        raise ExportFileError(f"{package} is corrupted or truncated: its model specification cannot be parsed "
                              f"({str(exc).strip()[:120] or type(exc).__name__})") from exc
    return spec


def metadata_text(spec) -> str | None:
    """Thaw's metadata (JSON) in a specification, or None."""
    entries = spec.description.metadata.userDefined
    return entries[METADATA_KEY] if METADATA_KEY in entries else None


def package_digest(package: Path, spec) -> str:
    """SHA-256 of the specification without Thaw's metadata entry (serialised deterministically: the same message
    gives the same bytes) and of every file under Data/ but the specification, by path."""
    bare = type(spec)()
    bare.CopyFrom(spec)
    bare.description.metadata.userDefined.pop(METADATA_KEY, None)
    digest = hashlib.sha256(b"spec:" + bare.SerializeToString(deterministic=True))
    spec_file = spec_path(package)
    data = package / DATA_FOLDER
    for root, folders, files in os.walk(data):
        folders.sort()
        for name in sorted(files):
            file = Path(root) / name
            if file == spec_file:
                continue
            if file.is_symlink():
                raise ExportFileError(f"{package} holds a symbolic link ({file.relative_to(package)}); a Core ML "
                                      f"package written by Thaw has none")
            digest.update(f"\n{file.relative_to(data).as_posix()}:{file.stat().st_size}:".encode())
            with open(file, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def write_metadata(package: Path, text: str) -> None:
    """Put `text` into the package's specification as the user-defined metadata entry `thaw` (after the checksum
    was taken: the entry is outside it)."""
    spec = read_spec(package)
    spec.description.metadata.userDefined[METADATA_KEY] = text
    spec_path(package).write_bytes(spec.SerializeToString())


def runtime_missing() -> str:
    """Why Core ML cannot run a package here ("" where it can): not macOS, a macOS older than the packages'
    deployment target, or a coremltools without its native part."""
    reason = FORMATS["coreml"].unavailable_here()
    if reason:
        return reason
    release = tuple(int(p) for p in platform.mac_ver()[0].split(".")[:2] if p.isdigit())
    if release and release < MIN_MACOS:
        return (f"Core ML runs Thaw's packages (ML programs) on macOS {'.'.join(map(str, MIN_MACOS))} or later; "
                f"this is macOS {platform.mac_ver()[0]}")
    with coremltools_imported_quietly():
        from coremltools.models import model as ct_model

    if getattr(ct_model, "_MLModelProxy", None) is None:
        return (f"this coremltools ({sys.modules['coremltools'].__version__}) has no Core ML runtime (its native "
                f"part, libcoremlpython, did not load)")
    return ""


def load_model(package: Path):
    """The package loaded by Core ML (macOS only) on its CPU compute unit: float32 as exported, where the GPU and
    the Neural Engine would compute in float16 and the parity check would measure them, not the export."""
    with coremltools_imported_quietly():
        import coremltools as ct

    return ct.models.MLModel(str(package), compute_units=ct.ComputeUnit.CPU_ONLY)
