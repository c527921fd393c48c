"""Open an exported model (ONNX, torch.export .pt2, TorchScript, OpenVINO IR, ExecuTorch, Core ML; one opener each in
OPENERS) and run it:
the reader behind the parity check and `predict`. Every way a file can be unusable ends in one ExportFileError that
says which: missing, empty, truncated or corrupted (including a flipped byte in the weights, caught by the checksum
in the metadata), not an export at all, or an export without Thaw's metadata (another tool's file).

The format is recognised by content, not by the file's suffix: ONNX is a protocol buffer, .pt2 and TorchScript are
zip archives with different layouts, OpenVINO IR an XML network beside its .bin weights, a Core ML package a folder
with a manifest; the suffix only helps to name what a damaged file was meant to be.

A format that runs only on some systems (Core ML: macOS) is still opened elsewhere: its metadata and checksum are
read and checked, but the ExportedModel cannot run (`not_runnable` says why). `open_export` refuses such a file
(ExportNotRunnableError, one line) unless the caller asked only to read it (`require_runtime=False`: the parity
check, which then reports "not checkable on this OS").
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.errors import BadInputError
from engine.infer import coreml_package
from engine.infer.export_formats import FORMATS, export_format
from engine.infer.export_metadata import (
    EXTRA_FILE,
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    ExportFileError,
    ExportMetadata,
)
from engine.native_output import PYTREE_LOGGER, loggers_quieted, native_stderr_to_log

EXPORT_SUFFIXES = {suffix: f.name for f in FORMATS.values() for suffix in f.suffixes}
FORMAT_NAMES = {f.name: f.noun for f in FORMATS.values()}
OPENVINO_METADATA_PATH = (METADATA_KEY,)  # where the metadata sits in an OpenVINO model's runtime information
EXECUTORCH_METADATA_METHOD = "thaw_metadata"  # an ExecuTorch program's constant method that returns the metadata
UNSEALED_DIGEST = "0" * 64  # in place of an ExecuTorch file's checksum while it is taken (a SHA-256 in hex)
# The start of the metadata's JSON as ExportMetadata.to_json writes it: how it is found in an ExecuTorch file's bytes
# before anything of the file is handed to the runtime.
EXECUTORCH_METADATA_START = b'{\n "thaw_export_version"'


# --- checksums of the weights -------------------------------------------------------------------------------
# Neither ONNX (a protocol buffer) nor torch's archives (zip entries stored without a checked CRC) notice a
# changed byte inside a weight tensor: the file loads and predicts garbage. The metadata records a SHA-256 of the
# weights as the exporter wrote them, and the reader compares it.

def tensors_digest(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(named, key=lambda item: item[0]):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def onnx_digest(model) -> str:
    """The initializers and Constant nodes' tensors of an onnx.ModelProto, in file order."""
    from onnx import numpy_helper

    digest = hashlib.sha256()
    graph = model.graph
    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(node.name, attr.t) for node in graph.node if node.op_type == "Constant"
                for attr in node.attribute if attr.name == "value"]
    for name, tensor in tensors:
        array = numpy_helper.to_array(tensor)
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def program_digest(program) -> str:
    """The weights and constant tensors of a torch.export ExportedProgram."""
    named = [(f"state:{k}", v) for k, v in program.state_dict.items()]
    named += [(f"const:{k}", v) for k, v in program.constants.items() if isinstance(v, torch.Tensor)]
    return tensors_digest(named)


def script_digest(module) -> str:
    return tensors_digest(module.state_dict().items())


def openvino_digest(model) -> str:
    """The Constant operations' data of an openvino.Model (its weights), in the graph's order."""
    digest = hashlib.sha256()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            array = op.get_data()
            digest.update(f"{op.get_friendly_name()}:{array.dtype}:{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def executorch_digest(unsealed: bytes) -> str:
    """The checksum of an ExecuTorch file: every byte of the program, the metadata's own checksum a placeholder."""
    return hashlib.sha256(unsealed).hexdigest()


def unsealed_executorch_bytes(data: bytes, sealed_json: str, weights_sha256: str) -> bytes | None:
    """`data` as it was before its checksum went into its metadata (the placeholder back in its place); None
    when the metadata is not in the file exactly once."""
    sealed = sealed_json.encode("utf-8")
    if data.count(sealed) != 1 or sealed_json.count(weights_sha256) != 1:
        return None
    return data.replace(sealed, sealed_json.replace(weights_sha256, UNSEALED_DIGEST).encode("utf-8"))


def executorch_expected_size(data: bytes) -> int | None:
    """The length an ExecuTorch file says it has, from its extended header ("eh00" at byte 8: the program's size,
    the offset and size of its data segments, little-endian), or None without one."""
    if len(data) < 40 or data[8:12] != b"eh00":
        return None
    program_size, segment_base, segment_size = (int.from_bytes(data[at:at + 8], "little") for at in (16, 24, 32))
    return segment_base + segment_size if segment_base and segment_size else program_size


def executorch_metadata_text(data: bytes) -> str | None:
    """The metadata's JSON inside an ExecuTorch file, read from its bytes (the constant method's string is stored
    verbatim), or None."""
    start = data.find(EXECUTORCH_METADATA_START)
    if start < 0:
        return None
    end = data.find(b"\x00", start)  # a flatbuffer string ends with a NUL byte
    return data[start:end if end >= 0 else len(data)].decode("utf-8", errors="replace")


def executorch_imported_quietly():
    """ExecuTorch's import (torchao's, through it) logs a deprecation warning of torch's pytree to the terminal:
    not a user's concern."""
    return loggers_quieted(PYTREE_LOGGER)


# --- recognising a file ---------------------------------------------------------------------------------------

def sniff(path: str | Path) -> str:
    """'onnx', 'pt2', 'torchscript', 'openvino', 'executorch', 'coreml', 'checkpoint' (a torch.save file), 'zip'
    (another or a damaged archive), 'folder' (any other folder) or 'unknown'."""
    if os.path.isdir(path):
        return "coreml" if coreml_package.is_package(path) else "folder"
    with open(path, "rb") as f:
        head = f.read(8)
    head4, head = head[4:6], head[:4]
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "zip"
        if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            return "pt2"
        if any("/code/__torch__" in n for n in names) and any(n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            return "checkpoint"
        return "zip"
    if head[:1] == b"\x08":  # an ONNX ModelProto starts with field 1 (ir_version, a varint)
        return "onnx"
    if head4 == b"ET":  # an ExecuTorch flatbuffer's file identifier ("ET12") sits at bytes 4–7
        return "executorch"
    if head.startswith((b"<?xm", b"<net")):
        with open(path, "rb") as f:
            return "openvino" if b"<net " in f.read(4096) else "unknown"
    return "unknown"


def looks_like_export(path: str | Path) -> bool:
    """Whether `predict` should read `path` as an export rather than a checkpoint: by suffix, else by content."""
    path = Path(path)
    if path.suffix.lower() in EXPORT_SUFFIXES:
        return True
    return (path.is_file() or path.is_dir()) and sniff(path) in FORMATS


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _no_metadata(path: Path, fmt: str) -> ExportFileError:
    where = {"onnx": f"metadata property '{METADATA_KEY}'", "openvino": f"runtime information '{METADATA_KEY}'",
             "executorch": f"constant method '{EXECUTORCH_METADATA_METHOD}'",
             "coreml": f"user-defined metadata '{METADATA_KEY}'"}.get(fmt, f"extra file '{EXTRA_FILE}'")
    return ExportFileError(f"{path} ({FORMAT_NAMES[fmt]}) has no Thaw metadata ({where}): it was not exported "
                           f"by Thaw, so its preprocessing and class names are unknown. Export the run with "
                           f"`python main.py export RUN_DIR --format {fmt} --out FILE`")


def _check_digest(path: Path, metadata: ExportMetadata, actual: str) -> None:
    expected = metadata.integrity.get("weights_sha256", "")
    if expected and expected != actual:
        raise ExportFileError(f"{path} is corrupted: its weights do not match the checksum recorded when it was "
                              f"exported (sha256 {actual[:12]}… instead of {expected[:12]}…); export it again")
    sealed = metadata.integrity.get("metadata_sha256", "")
    if sealed and sealed != metadata.metadata_digest():
        raise ExportFileError(f"{path} was changed after it was exported: its metadata (class names, preprocessing "
                              f"…) does not match the checksum recorded with it; export it again")


# --- running an export ------------------------------------------------------------------------------------------

class ExportNotRunnableError(ExportFileError):
    """A sound export whose runtime does not exist here (a Core ML package off macOS): exit 2, in one line."""


class ExportedModel:
    """A loaded export: `logits(batch)` takes a float32 NCHW tensor and returns float32 logits on the CPU. Its
    metadata and checksum were checked; `not_runnable` (when `run` is None) says why it cannot run here."""

    def __init__(self, path: Path, fmt: str, metadata: ExportMetadata,
                 run: Callable[[torch.Tensor], torch.Tensor] | None, device: torch.device, not_runnable: str = ""):
        self.path = path
        self.format = fmt
        self.metadata = metadata
        self._run = run
        self.device = device
        self.not_runnable = not_runnable if run is None else ""

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        if self._run is None:
            raise ExportNotRunnableError(f"{self.path} cannot be run here: {self.not_runnable}")
        output = self._run(batch)
        logits = (output.logits if hasattr(output, "logits") else output).float().cpu()
        names = len(self.metadata.class_names)
        if logits.ndim != 2 or logits.shape[1] != names:
            raise ExportFileError(f"{self.path} gives {logits.shape[-1] if logits.ndim else 0} logits per image but "
                                  f"its metadata names {names} classes; export it again")
        return logits

    @property
    def size_bytes(self) -> int:
        """The file's size, with its companions (ONNX external data, OpenVINO's .bin); a folder's files."""
        return FORMATS[self.format].size_bytes(self.path)


class ExportedModule(nn.Module):
    """An ExportedModel where an nn.Module is expected (the Predictor). The export is held as a plain attribute:
    an exported program's module cannot switch modes, so `.eval()` must not reach it."""

    def __init__(self, exported: ExportedModel):
        super().__init__()
        self.exported = exported

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.exported.logits(batch)


def open_export(path: str | Path, device: str | torch.device = "cpu", threads: int = 0,
                require_runtime: bool = True) -> ExportedModel:
    """Load `path`, check its metadata and weights, and return something that runs it. `threads`: CPU threads
    for onnxruntime (0: torch's count in this thread, so both frameworks are timed alike). A format that cannot run
    on this system is refused in one line (before its library is imported) unless `require_runtime` is False: then
    it is read and checked, and the result's `not_runnable` says why it cannot run."""
    path = Path(path).expanduser()
    intended = EXPORT_SUFFIXES.get(path.suffix.lower())
    if not path.is_file() and not path.is_dir():
        raise ExportFileError(f"export file {path} does not exist")
    if path.is_dir():
        kind = sniff(path)
        if kind == "folder":
            if intended and FORMATS[intended].folder:
                raise ExportFileError(f"{path} is " + ("empty" if not any(path.iterdir()) else
                                                       f"corrupted or incomplete: it is not a complete "
                                                       f"{FORMAT_NAMES[intended]} (it has no "
                                                       f"{coreml_package.MANIFEST})"))
            raise ExportFileError(f"{path} is a folder, not a model export Thaw can read "
                                  f"({', '.join(FORMAT_NAMES.values())})")
    elif path.stat().st_size == 0:
        raise ExportFileError(f"{path} is empty")
    else:
        kind = sniff(path)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device}: no CUDA device is available here; use --device cpu")
    if kind == "unknown" and intended == "onnx":
        kind = "onnx"  # a damaged protocol buffer: onnx's parser says how
    if kind in OPENERS:
        record = export_format(kind)
        if require_runtime and record.unavailable_here():
            raise ExportNotRunnableError(f"{path} cannot be run here: {record.unavailable_here()}. Run the "
                                         f"checkpoint, or another export of the run (ONNX runs everywhere)")
        try:
            record.require()
        except BadInputError as exc:
            raise ExportFileError(f"{path} is an {FORMAT_NAMES[kind]}: {exc}") from None
        exported = OPENERS[kind](path, device, threads or torch.get_num_threads())
        if require_runtime and exported.not_runnable:
            raise ExportNotRunnableError(f"{path} cannot be run here: {exported.not_runnable}")
        return exported
    if kind == "checkpoint":
        raise ExportFileError(f"{path} is a PyTorch checkpoint, not an export; `predict` reads Thaw checkpoints "
                              f"directly, `export` turns one into {', '.join(FORMAT_NAMES.values())}")
    if kind in ("zip", "unknown") and intended:
        raise ExportFileError(f"{path} is corrupted or truncated: it is not a complete {FORMAT_NAMES[intended]}"
                              + (" (the zip archive cannot be read)" if kind == "zip" else ""))
    raise ExportFileError(f"{path} is not a model export Thaw can read ({', '.join(FORMAT_NAMES.values())})")


def _open_onnx(path: Path, device: torch.device, threads: int) -> ExportedModel:
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError types for damaged files
        raise ExportFileError(f"{path} is corrupted or truncated: it cannot be parsed as an ONNX model "
                              f"({_first_line(exc)})") from exc
    if _check_external_data(path, model):
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:  # noqa: BLE001 - a short or unreadable data file
            raise ExportFileError(f"{path}: its external weight data cannot be read ({_first_line(exc)})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise _no_metadata(path, "onnx")
    metadata = ExportMetadata.from_json(props[METADATA_KEY], str(path))
    _check_digest(path, metadata, onnx_digest(model))
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BadInputError(f"onnxruntime on this machine cannot use CUDA (it has "
                                f"{', '.join(ort.get_available_providers())}); run ONNX files with --device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    elif device.type != "cpu":
        raise BadInputError(f"ONNX files run on the CPU (or CUDA) with onnxruntime, not on {device}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime reports a broken graph as a generic failure
        raise ExportFileError(f"{path} is corrupted: onnxruntime cannot load it ({_first_line(exc)})") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ExportFileError(f"{path} has {len(inputs)} inputs; a Thaw export has one image batch")
    shape = inputs[0].shape
    expected = [metadata.channels, metadata.crop_size, metadata.crop_size]
    if len(shape) != 4 or [d if isinstance(d, int) else None for d in shape[1:]] != expected:
        raise ExportFileError(f"{path}: its input shape {shape} does not match its metadata "
                              f"(batch × {' × '.join(map(str, expected))})")
    input_name = inputs[0].name
    output_name = outputs[0].name

    def run(batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(session.run([output_name], {input_name: array})[0])

    return ExportedModel(path, "onnx", metadata, run, device)


def _external_tensors(model):
    """Every tensor of the graph (initializers, constants' attributes, subgraphs) stored as external data."""
    from onnx import TensorProto

    def graphs(graph):
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.g is not None and attribute.HasField("g"):
                    yield from graphs(attribute.g)
                for sub in attribute.graphs:
                    yield from graphs(sub)

    for graph in graphs(model.graph):
        tensors = list(graph.initializer)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    tensors.append(attribute.t)
                tensors.extend(attribute.tensors)
        yield from (t for t in tensors if t.data_location == TensorProto.EXTERNAL)


def _check_external_data(path: Path, model) -> bool:
    """Whether the model has external data; ExportFileError unless every reference is a plain file name of a
    regular file beside it (not a path elsewhere, not `..`, not a symlink, not a device)."""
    folder = Path(os.path.realpath(path.parent))
    found = False
    for tensor in _external_tensors(model):
        found = True
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = path.parent / location
        problem = ""
        if not location or Path(location).is_absolute() or Path(location).name != location or location in (".", ".."):
            problem = "is not a file name beside it"
        elif target.is_symlink():
            problem = "is a symbolic link"
        elif not target.exists():
            problem = "does not exist"
        elif not target.is_file():
            problem = "is not a regular file"
        elif Path(os.path.realpath(target)).parent != folder:
            problem = "is outside its folder"
        if problem:
            shown = location if len(location) <= 80 else location[:77] + "…"
            raise ExportFileError(f"{path}: the external data of its tensor '{tensor.name[:60]}' ({shown!r}) "
                                  f"{problem}; Thaw reads external data only from a regular file beside the model")
    return found


def _read_error(path: Path, fmt: str, exc: BaseException) -> ExportFileError:
    return ExportFileError(f"{path} is corrupted or truncated: it cannot be read as a {FORMAT_NAMES[fmt]} "
                           f"({_first_line(exc)})")


def _open_pt2(path: Path, device: torch.device, threads: int = 0) -> ExportedModel:
    extra = {EXTRA_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - torch's deserialiser raises many types for damaged archives
        raise _read_error(path, "pt2", exc) from exc
    if not extra[EXTRA_FILE]:
        raise _no_metadata(path, "pt2")
    metadata = ExportMetadata.from_json(extra[EXTRA_FILE], str(path))
    _check_digest(path, metadata, program_digest(program))
    if device.type != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    module = program.module()  # exported in eval mode; an exported module cannot switch modes (no .eval())

    def run(batch: torch.Tensor) -> torch.Tensor:
        return module(batch.to(device, torch.float32))

    return ExportedModel(path, "pt2", metadata, run, device)


def _open_torchscript(path: Path, device: torch.device, threads: int = 0) -> ExportedModel:
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": the docs say so
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:  # noqa: BLE001
        raise _read_error(path, "torchscript", exc) from exc
    if not extra[EXTRA_FILE]:
        raise _no_metadata(path, "torchscript")
    metadata = ExportMetadata.from_json(extra[EXTRA_FILE], str(path))
    _check_digest(path, metadata, script_digest(module))
    module.eval()

    def run(batch: torch.Tensor) -> torch.Tensor:
        return module(batch.to(device, torch.float32))

    return ExportedModel(path, "torchscript", metadata, run, device)


def _open_openvino(path: Path, device: torch.device, threads: int) -> ExportedModel:
    import openvino as ov

    if device.type != "cpu":
        raise BadInputError(f"OpenVINO IR files run on the CPU here (OpenVINO's CPU plugin), not on {device}")
    weights = FORMATS["openvino"].companion_paths(path)[0]
    if not weights.is_file():
        raise ExportFileError(f"{path}: its weights file {weights.name} is missing (an OpenVINO IR model is the "
                              f".xml and the .bin beside it)")
    core = ov.Core()
    try:
        model = core.read_model(str(path), str(weights))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError with its parser's text
        raise _read_error(path, "openvino", exc) from exc
    if not model.has_rt_info(list(OPENVINO_METADATA_PATH)):
        raise _no_metadata(path, "openvino")
    metadata = ExportMetadata.from_json(model.get_rt_info(list(OPENVINO_METADATA_PATH)).astype(str), str(path))
    _check_digest(path, metadata, openvino_digest(model))
    if len(model.inputs) != 1:
        raise ExportFileError(f"{path} has {len(model.inputs)} inputs; a Thaw export has one image batch")
    try:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": max(1, threads),
                                                     "INFERENCE_PRECISION_HINT": "f32"})
    except Exception as exc:  # noqa: BLE001
        raise ExportFileError(f"{path} is corrupted: OpenVINO cannot compile it ({_first_line(exc)})") from exc
    request = compiled.create_infer_request()

    def run(batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(np.array(request.infer({0: array})[compiled.outputs[0]]))

    return ExportedModel(path, "openvino", metadata, run, device)


def _open_executorch(path: Path, device: torch.device, threads: int) -> ExportedModel:
    if device.type != "cpu":
        raise BadInputError(f"ExecuTorch programs run on the CPU here (its XNNPACK delegate), not on {device}")
    data = path.read_bytes()
    expected = executorch_expected_size(data)
    if expected is not None and len(data) < expected:
        raise ExportFileError(f"{path} is corrupted or truncated: it is not a complete {FORMAT_NAMES['executorch']} "
                              f"({len(data)} of the {expected} bytes its header announces)")
    # The checksum is checked on the bytes before the runtime reads them: a damaged program never reaches it.
    text = executorch_metadata_text(data)
    if text is None:
        raise _no_metadata(path, "executorch")
    metadata = ExportMetadata.from_json(text, str(path))
    weights = metadata.integrity.get("weights_sha256", "")
    if weights:
        unsealed = unsealed_executorch_bytes(data, text, weights)
        if unsealed is None:
            raise ExportFileError(f"{path} was changed after it was exported: its metadata is not where it was "
                                  f"written; export it again")
        _check_digest(path, metadata, executorch_digest(unsealed))
    with executorch_imported_quietly():
        from executorch.runtime import Runtime
    try:
        # Its C++ side prints cpuinfo's probing of the CPU.
        with native_stderr_to_log(logging.getLogger(__name__), "ExecuTorch's runtime"):
            program = Runtime.get().load_program(data)
            forward = program.load_method("forward")
    except Exception as exc:  # noqa: BLE001 - the runtime raises RuntimeError with its loader's text
        raise _read_error(path, "executorch", exc) from exc
    if EXECUTORCH_METADATA_METHOD not in program.method_names:
        raise _no_metadata(path, "executorch")

    def run(batch: torch.Tensor, program=program) -> torch.Tensor:
        # The program takes one image (export.py): a batch is run image by image, as a phone would. The method
        # lives in its program's memory, so the program is held as long as `run` (freed, the next call crashed).
        rows = batch.detach().to("cpu", torch.float32)
        return torch.cat([forward.execute([rows[i:i + 1].contiguous()])[0] for i in range(len(rows))])

    return ExportedModel(path, "executorch", metadata, run, device)


def _open_coreml(path: Path, device: torch.device, threads: int) -> ExportedModel:
    if device.type != "cpu":
        raise BadInputError(f"Core ML packages are checked and run on Core ML's CPU compute unit here, not on {device}")
    spec = coreml_package.read_spec(path)
    text = coreml_package.metadata_text(spec)
    if text is None:
        raise _no_metadata(path, "coreml")
    metadata = ExportMetadata.from_json(text, str(path))
    _check_digest(path, metadata, coreml_package.package_digest(path, spec))
    reason = coreml_package.runtime_missing()
    if reason:
        return ExportedModel(path, "coreml", metadata, None, device, not_runnable=reason)
    # Where Core ML runs (macOS) from here; the suite on Linux runs these lines with a stand-in for Core ML.
    try:
        model = coreml_package.load_model(path)
    except Exception as exc:  # noqa: BLE001 - Core ML reports a package it cannot compile in its own words
        raise _read_error(path, "coreml", exc) from exc

    def run(batch: torch.Tensor) -> torch.Tensor:
        # The package takes one image (export.py): a batch is run image by image, as an app would.
        rows = batch.detach().to("cpu", torch.float32).numpy()
        return torch.cat([torch.from_numpy(np.asarray(model.predict({INPUT_NAME: rows[i:i + 1]})[OUTPUT_NAME],
                                                      dtype=np.float32)) for i in range(len(rows))])

    return ExportedModel(path, "coreml", metadata, run, device)


# One opener per format of engine/infer/export_formats.py: (path, device, threads) -> ExportedModel.
OPENERS = {"onnx": _open_onnx, "pt2": _open_pt2, "torchscript": _open_torchscript, "openvino": _open_openvino,
           "executorch": _open_executorch, "coreml": _open_coreml}
