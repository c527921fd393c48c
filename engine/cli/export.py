"""`export`: a run's checkpoint in one of the formats of engine/infer/export_formats.py (ONNX, torch.export .pt2,
TorchScript, OpenVINO IR, ExecuTorch, Core ML), checked against the checkpoint on the run's validation images;
`--quantize int8` adds int8 and its cost side by side with fp32, `--quantize fp16` writes half precision.

Exit codes: 0 when the file passed its check, and also when it was written but could not be checked on this system
(a Core ML package off macOS: the user asked for a file and has it; the output and the report say "NOT CHECKED",
never "passed"); 1 when it disagrees with the checkpoint (nothing kept); 2 for unusable input."""

from __future__ import annotations

import json
import sys

from engine.cli.exit_codes import EXIT_OK


def register(sub) -> None:
    from engine.infer.export_formats import FORMATS

    help_ = ("export a run's checkpoint (ONNX, .pt2, TorchScript, OpenVINO, ExecuTorch, Core ML), checked against it "
             "on validation images")
    p = sub.add_parser("export", help=help_, description=help_ + ". The file is kept only when its parity check "
                       "passes; FILE.report.json beside it holds the check, the metadata and the costs. A format "
                       "that cannot run on this system (Core ML off macOS) is written and reported as NOT CHECKED "
                       "(exit 0), never as passed.")
    p.add_argument("run_dir", metavar="RUN", help="a run folder (or one of its checkpoint files)")
    p.add_argument("--format", default="onnx", metavar="FORMAT",
                   help="; ".join(f"{f.name}: {f.label}" for f in FORMATS.values()) + " (default: onnx)")
    p.add_argument("--checkpoint", default="best", help="best (default) or last")
    p.add_argument("--quantize", default="none", help="int8: static quantization with onnxruntime, calibrated on "
                                                      "training images (ONNX only); fp16: half-precision weights "
                                                      "and arithmetic (Core ML only)")
    p.add_argument("--out", default="", metavar="FILE",
                   help="the file to write (default: RUN/exports/<checkpoint>[-int8].<ext>)")
    p.add_argument("--data", default="", metavar="FOLDER",
                   help="image folder for the check and calibration, if the run's moved")
    p.add_argument("--max-images", type=int, default=256, help="validation images in the parity check (256)")
    p.add_argument("--calibration-images", type=int, default=128, help="training images calibrating int8 (128)")
    p.add_argument("--calibration-method", default="minmax", help="int8 calibration: minmax, entropy, percentile")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="fp32: max |Δlogit| allowed, relative to max(1, largest |logit|) (1e-3)")
    p.add_argument("--int8-min-agreement", type=float, default=0.9,
                   help="int8: least top-1 agreement with the checkpoint (0.9)")
    p.add_argument("--opset", type=int, default=0, help="ONNX opset (default: the exporter's)")
    p.add_argument("--latency-runs", type=int, default=30, help="batch-1 latency runs per model; 0: none")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_export)


def cmd_export(args) -> int:
    from engine.infer.export_run import ExportFailedError, ExportRequest, export_run

    request = ExportRequest(run=args.run_dir, format=args.format, out=args.out, checkpoint=args.checkpoint,
                            quantize=args.quantize, data_root=args.data, max_images=args.max_images,
                            calibration_images=args.calibration_images, calibration_method=args.calibration_method,
                            tolerance=args.tolerance, int8_min_agreement=args.int8_min_agreement, opset=args.opset,
                            latency_runs=args.latency_runs)

    def show(event) -> None:
        if event.stage in ("load", "data", "export", "quantize", "latency") and not event.done:
            print(f"{event.stage}: {event.message}", file=sys.stderr, flush=True)

    try:
        result = export_run(request, [show])
    except ExportFailedError as exc:
        if exc.result is not None:
            print("\n".join(exc.result.summary_lines()), file=sys.stderr)
        raise
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
        return EXIT_OK
    print("\n".join(result.summary_lines()))
    if result.not_checked:
        print(f"saved {result.path} ({result.exporter}), NOT CHECKED against the checkpoint on this OS; report "
              f"{result.report_path}")
    else:
        print(f"saved {result.path} ({result.exporter}); report {result.report_path}")
    return EXIT_OK
