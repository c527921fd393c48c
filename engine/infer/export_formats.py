"""The export formats Thaw writes and reads: one record per format, the one place that says its name, its file
suffixes, its label, the package it needs and what it can do.

Everything that lists or recognises formats reads this table: `export --format` and its help, the default file
name, `predict` on an exported file (by suffix where the content is ambiguous), the Export dialog's list, the
messages that name a format. The code that writes a format is `engine/infer/export.py` (`WRITERS`), the code that
opens one `engine/infer/exported.py` (`OPENERS`), both keyed by the record's name; tests/engine/test_export.py
checks that every record has both. Adding a format: a record here, a writer, an opener.

A format whose runtime exists only on some systems (Core ML: macOS and iOS) names them in `platforms`; elsewhere
its file is written and its metadata and checksum are read, but it is never run: the parity check reports it as
not checkable on this OS and `predict` refuses it. A format whose export is a folder (an .mlpackage) says `folder`.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BadInputError


@dataclass(frozen=True)
class ExportFormat:
    name: str  # as `--format` takes it
    label: str  # as the Export dialog lists it
    noun: str  # as a message names a file of this format ("an ONNX model")
    suffixes: tuple[str, ...]  # the first is the one written; the others are recognised
    companions: tuple[str, ...] = ()  # files beside it, by suffix: ".data" → FILE.onnx.data, "~.bin" → FILE.bin
    package: str = ""  # a module this format needs beyond torch (checked before any work)
    install: str = ""  # how to get it
    quantizable: bool = False  # whether `--quantize int8` applies
    runs_on: str = "the CPU"  # where its parity check and `predict` run
    one_image: bool = False  # a fixed batch of one image instead of a dynamic batch (engine/infer/export.py)
    platforms: tuple[str, ...] = ()  # the sys.platform values where its runtime exists; (): wherever torch runs
    folder: bool = False  # the export is a folder, not a file (a Core ML package)
    fp16: bool = False  # whether `--quantize fp16` applies (weights and arithmetic in half precision)

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    def companion_paths(self, path: Path) -> list[Path]:
        """The files written beside `path` with it (they move, are checked and are sized with it)."""
        out = []
        for companion in self.companions:
            out.append(path.with_suffix(companion[1:]) if companion.startswith("~") else
                       path.with_name(path.name + companion))
        return out

    def size_bytes(self, path: Path) -> int:
        """What an export at `path` takes: the file and its companions, or every file of a folder format."""
        if self.folder:
            return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink())
        return Path(path).stat().st_size + sum(c.stat().st_size for c in self.companion_paths(Path(path))
                                               if c.is_file())

    def unavailable_here(self) -> str:
        """Why files of this format cannot run on this machine's operating system ("" where they can)."""
        if not self.platforms or sys.platform in self.platforms:
            return ""
        return f"a {self.noun} runs only on {self.runs_on}; this is {platform.system() or sys.platform}"

    def available(self) -> bool:
        return not self.package or importlib.util.find_spec(self.package) is not None

    def require(self) -> None:
        """BadInputError naming the package when this format's library is not installed."""
        if not self.available():
            raise BadInputError(f"the {self.name} format needs the '{self.package}' package, which is not "
                                f"installed: {self.install}")


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", "ONNX (onnxruntime, TensorRT, browsers …)", "ONNX model", (".onnx",),
                 companions=(".data",), package="onnxruntime", install="pip install onnxruntime",
                 quantizable=True, runs_on="the CPU or CUDA (onnxruntime)"),
    ExportFormat("pt2", "torch.export (.pt2, PyTorch 2)", "torch.export archive (.pt2)", (".pt2",),
                 runs_on="any torch device"),
    ExportFormat("torchscript", "TorchScript (libtorch / C++; deprecated in torch 2.14)", "TorchScript archive",
                 (".ts", ".torchscript"), runs_on="any torch device"),
    ExportFormat("openvino", "OpenVINO IR (.xml + .bin; Intel CPUs, GPUs, NPUs, edge boxes)", "OpenVINO IR model",
                 (".xml",), companions=("~.bin",), package="openvino",
                 install="pip install openvino (or pip install -e '.[edge]')", runs_on="the CPU (OpenVINO)"),
    ExportFormat("executorch", "ExecuTorch (.pte, XNNPACK; Android and iOS apps, one image at a time)",
                 "ExecuTorch program (.pte)", (".pte",), package="executorch",
                 install="pip install executorch (or pip install -e '.[mobile]')",
                 runs_on="the CPU (ExecuTorch's runtime, XNNPACK)", one_image=True),
    ExportFormat("coreml", "Core ML (.mlpackage; iOS and macOS apps, one image at a time; checked only on macOS)",
                 "Core ML package (.mlpackage)", (".mlpackage",), package="coremltools",
                 install="pip install coremltools (or pip install -e '.[mobile]')",
                 runs_on="macOS 13 or later and iOS 16 or later (Apple's Core ML)", platforms=("darwin",),
                 folder=True, fp16=True, one_image=True),
)}
FORMAT_NAMES = tuple(FORMATS)


def export_format(name: str) -> ExportFormat:
    """The record for `name`; BadInputError listing the formats otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise BadInputError(f"--format '{name}' is not one of {', '.join(FORMATS)}") from None


def format_of_suffix(path: str | Path) -> ExportFormat | None:
    """The format whose file `path` is by its suffix, or None."""
    suffix = Path(path).suffix.lower()
    return next((f for f in FORMATS.values() if suffix in f.suffixes), None)
