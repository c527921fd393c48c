"""Write a model to a file in one format with Thaw's metadata inside: ONNX, torch.export (.pt2), TorchScript,
OpenVINO IR, ExecuTorch or Core ML (the formats: engine/infer/export_formats.py; one writer each in WRITERS).

Every format but ExecuTorch and Core ML has a dynamic batch dimension; an ExecuTorch program takes one image, as a phone
classifies one camera frame at a time (XNNPACK plans its memory for one fixed shape).
ONNX goes through torch's current exporter, `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript's
translation); only where that fails does the legacy TorchScript-based exporter run, and the metadata and the result
say which one wrote the file and why.
TorchScript (`torch.jit.trace`) is deprecated in torch 2.14; it is kept for libtorch users only while its parity
check passes. OpenVINO IR is converted by OpenVINO's own converter from the torch.export program (the same graph
the .pt2 and ONNX files come from), kept in float32 (OpenVINO would compress the weights to fp16 by default).
ExecuTorch (.pte) is lowered from the torch.export program to its XNNPACK delegate (the CPU backend of its Android
and iOS runtimes), the metadata a constant method of the program (`thaw_metadata`).
Core ML (.mlpackage, a folder) is converted by coremltools from the torch.export program of one image to an ML
program for iOS 16 / macOS 13, in float32 (coremltools' default is float16) or, asked for (`quantization.method`
"fp16" in the metadata), in float16; the metadata is the package's user-defined metadata `thaw`
(engine/infer/coreml_package.py). Like ExecuTorch it takes one image: a fixed shape is what the Neural Engine runs.
Nothing here decides whether a file is good: the parity check (engine/infer/parity.py) does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.errors import ThawError
from engine.infer import coreml_package
from engine.infer.export_formats import export_format
from engine.infer.export_metadata import (
    EXTRA_FILE,
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    ExportMetadata,
    channel_order,
)
from engine.infer.exported import (
    EXECUTORCH_METADATA_METHOD,
    OPENVINO_METADATA_PATH,
    UNSEALED_DIGEST,
    executorch_digest,
    executorch_imported_quietly,
    onnx_digest,
    openvino_digest,
    program_digest,
    script_digest,
    unsealed_executorch_bytes,
)

log = logging.getLogger(__name__)

# protobuf cannot hold more than 2 GB: larger models keep their weights in FILE.data beside FILE.onnx.
ONNX_SINGLE_FILE_LIMIT = 1_800_000_000
LEGACY_OPSET = 17
DYNAMO_EXPORTER = "torch.onnx.export(dynamo=True)"
LEGACY_EXPORTER = "torch.onnx.export(dynamo=False) (legacy, TorchScript-based)"
TORCHSCRIPT_NOTE = ("torch.jit.trace is deprecated in torch 2.14 (torch.export is its successor); this TorchScript "
                    "file is kept only because its parity check passed")


class ExportError(ThawError):
    """No exporter could write the model (the CLI exits with 1)."""


class LogitsOnly(nn.Module):
    """The model as the export sees it: one tensor in, the logits tensor out (GoogLeNet/Inception return a
    namedtuple in some modes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.model(x)
        return output.logits if hasattr(output, "logits") else output


@dataclass
class WrittenExport:
    path: Path
    format: str
    exporter: str
    notes: list[str] = field(default_factory=list)  # fallbacks and deprecations the user should read


def write_export(model: nn.Module, example: torch.Tensor, fmt: str, path: str | Path,
                 metadata: ExportMetadata, opset: int | None = None) -> WrittenExport:
    """Write `model` (on the CPU, float32, in eval mode) to `path`; `example` is a batch of at least two inputs
    (tracing with one would fix the batch size at 1). The metadata's `exporter` and `integrity` are filled in."""
    path = Path(path)
    wrapped = LogitsOnly(model).eval()
    example = example.detach().float().contiguous()
    if example.shape[0] < 2:
        example = example.repeat(2, 1, 1, 1)
    if fmt not in WRITERS:
        raise ValueError(f"unknown export format {fmt!r}")
    export_format(fmt).require()
    with torch.no_grad():
        return WRITERS[fmt](wrapped, example, path, metadata, opset)


@contextlib.contextmanager
def _quiet():
    """The exporters print progress, graph dumps and warnings; they go to the log (--verbose), not the terminal."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        try:
            yield got
        finally:
            for warning in got:
                log.info("%s: %s", warning.category.__name__, warning.message)
            if out.getvalue().strip():
                log.info("exporter output:\n%s", out.getvalue().strip())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _parameter_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path, metadata: ExportMetadata,
                opset: int | None) -> WrittenExport:
    import onnx

    external = _parameter_bytes(model) > ONNX_SINGLE_FILE_LIMIT
    notes: list[str] = []
    exporter = DYNAMO_EXPORTER
    try:
        with _quiet():
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=external, verbose=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as dynamo_exc:  # noqa: BLE001 - any failure of the new exporter means: try the legacy one
        reason = _first_line(dynamo_exc)
        log.info("the dynamo ONNX exporter failed", exc_info=True)
        exporter = LEGACY_EXPORTER
        notes.append(f"torch's current ONNX exporter (dynamo=True) failed: {reason}; the legacy exporter wrote "
                     f"the file instead")
        try:
            with _quiet():
                torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], opset_version=opset or LEGACY_OPSET,
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        except Exception as legacy_exc:  # noqa: BLE001
            raise ExportError(f"the model cannot be exported to ONNX: torch.onnx.export(dynamo=True) failed "
                              f"({reason}) and so did the legacy exporter ({_first_line(legacy_exc)})") from legacy_exc
    proto = onnx.load(str(path), load_external_data=True)
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset and opset_used != opset:
        raise ExportError(f"opset {opset} was asked for but the exporter wrote opset {opset_used}; nothing was saved")
    metadata.exporter = {"name": exporter, "opset": opset_used, "external_data": external,
                         "notes": list(notes)}
    stamp_onnx(proto, metadata)
    save_onnx(proto, path, external)
    return WrittenExport(path, "onnx", exporter, notes)


def stamp_onnx(proto, metadata: ExportMetadata) -> None:
    """Record the weights' checksum in `metadata` and put the metadata into the model's properties."""
    metadata.seal(onnx_digest(proto))
    for prop in [p for p in proto.metadata_props if p.key == METADATA_KEY]:
        proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()
    proto.producer_name = "thaw"


def save_onnx(proto, path: Path, external: bool) -> None:
    import onnx

    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()  # onnx appends to an existing external-data file
    if external:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name)
    else:
        onnx.save_model(proto, str(path))


def _export_program(model: nn.Module, example: torch.Tensor):
    """torch.export's program of the model, with a dynamic batch dimension."""
    try:
        with _quiet():
            return torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"the model cannot be exported with torch.export: {_first_line(exc)}") from exc


def _write_pt2(model: nn.Module, example: torch.Tensor, path: Path, metadata: ExportMetadata,
               opset: int | None = None) -> WrittenExport:
    program = _export_program(model, example)
    metadata.exporter = {"name": "torch.export.export", "notes": []}
    metadata.seal(program_digest(program))
    torch.export.save(program, str(path), extra_files={EXTRA_FILE: metadata.to_json()})
    return WrittenExport(path, "pt2", "torch.export.export")


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, metadata: ExportMetadata,
                       opset: int | None = None) -> WrittenExport:
    try:
        with _quiet():
            # check_trace=False: the built-in check re-traces and compares graphs, which fails on harmless
            # differences (ViT's shape asserts); the parity check compares outputs on real images instead.
            traced = torch.jit.trace(model, example, check_trace=False)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"the model cannot be traced to TorchScript: {_first_line(exc)}") from exc
    metadata.exporter = {"name": "torch.jit.trace", "deprecated": True, "notes": [TORCHSCRIPT_NOTE]}
    metadata.seal(script_digest(traced))
    with _quiet():
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: metadata.to_json()})
    return WrittenExport(path, "torchscript", "torch.jit.trace", [TORCHSCRIPT_NOTE])


def _write_openvino(model: nn.Module, example: torch.Tensor, path: Path, metadata: ExportMetadata,
                    opset: int | None = None) -> WrittenExport:
    import openvino as ov

    program = _export_program(model, example)
    try:
        with _quiet():
            converted = ov.convert_model(program)
            # torch.export leaves the image size open in OpenVINO's view; the export takes one size, as the others
            converted.reshape({0: ov.PartialShape([-1, *example.shape[1:]])})
            converted.inputs[0].get_tensor().set_names({INPUT_NAME})
            converted.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    except Exception as exc:  # noqa: BLE001 - the converter raises its own types for an unsupported op
        raise ExportError(f"OpenVINO cannot convert the model: {_first_line(exc)}") from exc
    metadata.exporter = {"name": f"openvino.convert_model {ov.__version__} (from torch.export)", "notes": []}
    metadata.seal(openvino_digest(converted))
    converted.set_rt_info(metadata.to_json(), list(OPENVINO_METADATA_PATH))
    with _quiet():
        ov.save_model(converted, str(path), compress_to_fp16=False)  # float32: the parity check's tolerance
    return WrittenExport(path, "openvino", metadata.exporter["name"])


def _write_executorch(model: nn.Module, example: torch.Tensor, path: Path, metadata: ExportMetadata,
                      opset: int | None = None) -> WrittenExport:
    with executorch_imported_quietly():
        from executorch import version as et_version
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    try:
        with _quiet():
            program = torch.export.export(model, (example[:1],))
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"the model cannot be exported with torch.export: {_first_line(exc)}") from exc
    metadata.exporter = {"name": f"executorch {et_version.__version__} (XNNPACK delegate, from torch.export)",
                         "notes": ["an ExecuTorch program takes one image at a time (batch 1)"]}
    # The file's checksum cannot be inside the file it covers: it is taken over the program written with a
    # placeholder of the same length in its place (exported.py's unsealed_executorch_bytes undoes the seal).
    metadata.seal(UNSEALED_DIGEST)
    unsealed_json = metadata.to_json()
    try:
        with _quiet():
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                                  constant_methods={EXECUTORCH_METADATA_METHOD: unsealed_json})
            unsealed = bytes(lowered.to_executorch().buffer)
    except Exception as exc:  # noqa: BLE001 - the lowering raises its own types for an unsupported op
        raise ExportError(f"ExecuTorch cannot lower the model: {_first_line(exc)}") from exc
    digest = executorch_digest(unsealed)
    metadata.seal(digest)
    sealed = unsealed.replace(unsealed_json.encode("utf-8"), metadata.to_json().encode("utf-8"))
    if unsealed_executorch_bytes(sealed, metadata.to_json(), digest) != unsealed:
        raise ExportError("ExecuTorch stored Thaw's metadata in a form its checksum cannot be checked in")
    path.write_bytes(sealed)
    return WrittenExport(path, "executorch", metadata.exporter["name"], list(metadata.exporter["notes"]))


def _coreml_descriptions(metadata: ExportMetadata) -> tuple[str, str, str]:
    """What Xcode shows of a Core ML package: the model's description, its input's and its output's."""
    prep, size = metadata.preprocessing, metadata.crop_size
    source = metadata.source
    model = (f"{metadata.arch} classifier of {len(metadata.class_names)} classes, exported by Thaw"
             + (f" from run {source['run']} ({source.get('checkpoint', '')}.pt)" if source.get("run") else "")
             + f". Class names, preprocessing and source: the metadata entry '{METADATA_KEY}' (JSON).")
    image = (f"float32 {metadata.channels} × {size} × {size} ({channel_order(metadata.channels)}), one image: "
             f"resized to {prep.resize_size} on the shorter side ({prep.interpolation}), centre-cropped to {size}, "
             f"scaled to [0, 1], then (x − mean) / std with mean {[round(v, 4) for v in prep.mean]} and std "
             f"{[round(v, 4) for v in prep.std]}")
    logits = "logits, one per class in the order of the metadata's class_names (softmax gives probabilities)"
    return model, image, logits


def _write_coreml(model: nn.Module, example: torch.Tensor, path: Path, metadata: ExportMetadata,
                  opset: int | None = None) -> WrittenExport:
    with coreml_package.coremltools_imported_quietly():
        import coremltools as ct

    half = metadata.quantization.get("method") == "fp16"
    try:
        with _quiet():
            # coremltools converts core ATen operators: the program is decomposed to them first
            program = torch.export.export(model, (example[:1],)).run_decompositions({})
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"the model cannot be exported with torch.export: {_first_line(exc)}") from exc
    try:
        with _quiet(), coreml_package.coremltools_imported_quietly():
            converted = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                                   compute_precision=ct.precision.FLOAT16 if half else ct.precision.FLOAT32,
                                   inputs=[ct.TensorType(name=INPUT_NAME, dtype=np.float32)],
                                   outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)])
    except Exception as exc:  # noqa: BLE001 - the converter raises its own types for an unsupported op
        raise ExportError(f"coremltools cannot convert the model: {_first_line(exc)}") from exc
    precision = "float16" if half else "float32"
    metadata.exporter = {"name": f"coremltools {ct.__version__} (ML program, {precision}, iOS 16 / macOS 13, "
                                 f"from torch.export)",
                         "notes": ["a Core ML package takes one image at a time (batch 1)"]}
    description, image, logits = _coreml_descriptions(metadata)
    converted.author = "Thaw"
    converted.short_description = description
    source = metadata.source
    converted.version = ", ".join(part for part in (f"epoch {source['epoch']}" if source.get("epoch") else "",
                                                    f"checkpoint {str(source.get('checkpoint_sha256', ''))[:12]}"
                                                    if source.get("checkpoint_sha256") else "") if part)
    converted.input_description[INPUT_NAME] = image
    converted.output_description[OUTPUT_NAME] = logits
    try:
        with _quiet():
            converted.save(str(path))
    finally:
        if converted.is_temp_package:  # coremltools' own copy in the temp folder, else removed only at exit
            shutil.rmtree(converted.package_path, ignore_errors=True)
    # The checksum is taken over the package as saved, without the metadata entry it is then written into.
    metadata.seal(coreml_package.package_digest(path, coreml_package.read_spec(path)))
    coreml_package.write_metadata(path, metadata.to_json())
    return WrittenExport(path, "coreml", metadata.exporter["name"], list(metadata.exporter["notes"]))


# One writer per format of engine/infer/export_formats.py: (model, example, path, metadata, opset) -> WrittenExport.
WRITERS = {"onnx": _write_onnx, "pt2": _write_pt2, "torchscript": _write_torchscript, "openvino": _write_openvino,
           "executorch": _write_executorch, "coreml": _write_coreml}
