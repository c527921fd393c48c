"""Export: batch-1 CPU latency of the ONNX, OpenVINO and ExecuTorch exports vs the checkpoint in torch eager, for
ResNet-18 and MobileNet V3, and what int8 costs (size, latency, validation accuracy) beside fp32 — all in one
invocation, on one machine. (OpenVINO, ExecuTorch and Core ML only where their packages are installed. A Core ML
package runs only on macOS: elsewhere its row has its size and conversion time, and says it cannot run here.)

Per model: a short feature-extraction run on the generated JPEGs (10 classes, 256 px → 224 crop; the backbone's
seeded weights have batch-norm statistics estimated on calibration images, like a released checkpoint), then
`export_run` to ONNX fp32 and to ONNX int8 (128 training images calibrate; the parity check runs on the 80
validation images), then batch-1 latency of torch eager, ONNX fp32 and ONNX int8, interleaved (A B C A B C …)
so that a change in the machine's load hits all three alike; the median of the repeats' medians is reported.
torch and onnxruntime use the same number of CPU threads (torch's default here).

    .venv/bin/python bench/export_latency.py [--models resnet18,mobilenet_v3_large,mobilenet_v3_small]
                                             [--repeats 5] [--runs 30] [--epochs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from common import bench_dirs, calibration_images, make_jpeg_dataset, seeded_torch_home

from engine.infer.parity import INT8_MIN_TOP1_AGREEMENT  # noqa: E402 - common put the repository on sys.path

# Measured beside ONNX where their package is installed: (format, the label its row has).
OPTIONAL_FORMATS = (("openvino", "openvino fp32"), ("executorch", "executorch"), ("coreml", "coreml"))


def seed_weights(home: Path, arch: str) -> None:
    """Seeded DEFAULT weights of `arch` in torchvision's cache layout, batch-norm statistics estimated on the
    calibration images (common.seeded_torch_home does this for ResNet-18)."""
    import torch
    from torchvision import models as tvm

    from engine.model.zoo import weights_file_name

    target = home / "hub" / "checkpoints" / weights_file_name(tvm.get_model_weights(arch).DEFAULT)
    if target.exists():
        return
    torch.manual_seed(0)
    model = tvm.get_model(arch)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for batch in calibration_images(256).split(32):
            model(batch)
    for norm in norms:
        norm.momentum = 0.01 if "mobilenet" in arch else 0.1
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), target)


def train(arch: str, data: Path, runs: Path, epochs: int) -> Path:
    from engine.planning.presets import make_recipe
    from engine.train.trainer import fit

    recipe = make_recipe("feature_extraction", arch, str(data), epochs=epochs, name=f"export-bench-{arch}")
    recipe.batch_size, recipe.data.num_workers, recipe.output_dir = 32, 0, str(runs)
    recipe.data.feature_cache_mb = 0
    result = fit(recipe.validate())
    if result.status != "finished":
        raise SystemExit(f"{arch}: the run failed: {result.error}")
    return Path(result.run_dir)


def measure(arch: str, run: Path, folder: Path, repeats: int, runs: int, method: str) -> dict:
    import torch

    from engine.infer.export_run import ExportRequest, export_run
    from engine.infer.exported import open_export
    from engine.infer.inference import Predictor
    from engine.infer.latency import measure_latency
    from engine.train.runs import checkpoint_path

    tick = time.perf_counter()
    fp32 = export_run(ExportRequest(str(run), "onnx", out=str(folder / f"{arch}.onnx"), latency_runs=0))
    fp32_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    # int8_min_agreement=0: the benchmark keeps the int8 file whatever its agreement, to measure it; the CLI's
    # default (0.9) would refuse one below 90 %, and the table says whether it would have.
    int8 = export_run(ExportRequest(str(run), "onnx", quantize="int8", out=str(folder / f"{arch}-int8.onnx"),
                                    latency_runs=0, calibration_method=method, int8_min_agreement=0.0))
    int8_seconds = time.perf_counter() - tick
    from engine.infer.export_formats import FORMATS

    optional = {}  # label → (export result, seconds), for the formats whose package is installed
    for fmt, label in OPTIONAL_FORMATS:
        if FORMATS[fmt].available():
            tick = time.perf_counter()
            exported = export_run(ExportRequest(str(run), fmt, out=str(folder / f"{arch}{FORMATS[fmt].suffix}"),
                                                latency_runs=0))
            optional[label] = exported, time.perf_counter() - tick

    predictor = Predictor.from_checkpoint(checkpoint_path(run, "best"))
    models = {"torch eager": predictor.logits, "onnx fp32": open_export(fp32.path).logits,
              "onnx int8": open_export(int8.path).logits}
    for label, (exported, _) in optional.items():
        if not exported.not_checked:  # a Core ML package off macOS: written, sized, never run
            models[label] = open_export(exported.path).logits
    one = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    medians: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, run_model in models.items():
            medians[name].append(measure_latency(run_model, one, runs=runs, warmup=5).median_ms)
    check, check8 = fp32.parity[0], int8.parity[1]
    result = {
        "arch": arch, "latency": {k: statistics.median(v) for k, v in medians.items()}, "repeats": medians,
        "sizes": {"torch eager": fp32.costs[0].size_bytes, "onnx fp32": fp32.costs[1].size_bytes,
                  "onnx int8": int8.costs[2].size_bytes},
        "accuracy": {"torch eager": check.reference_accuracy, "onnx fp32": check.exported_accuracy,
                     "onnx int8": check8.exported_accuracy},
        "agreement": {"onnx fp32": check.top1_agreement, "onnx int8": check8.top1_agreement},
        "max_diff": {"onnx fp32": check.max_abs_logit_diff, "onnx int8": check8.max_abs_logit_diff},
        "images": check.images, "method": method, "exporter": fp32.exporter, "export_s": fp32_seconds,
        "int8_export_s": int8_seconds,
    }
    for label, (exported, seconds) in optional.items():
        parity = exported.parity[0]
        result["sizes"][label] = exported.costs[1].size_bytes
        result["accuracy"][label] = parity.exported_accuracy
        result["agreement"][label] = parity.top1_agreement
        result["max_diff"][label] = parity.max_abs_logit_diff
        result[f"{label}_export_s"] = seconds
        if parity.not_checked:
            result.setdefault("not_runnable", {})[label] = parity.not_checked
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v3_large,mobilenet_v3_small")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved latency measurements per model")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per measurement")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch and onnxruntime (0: torch's "
                                                                   "default)")
    parser.add_argument("--calibration-method", default="minmax", help="int8 calibration: minmax, entropy, "
                                                                        "percentile")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    home = seeded_torch_home()
    archs = [a.strip() for a in args.models.split(",") if a.strip()]
    for arch in archs:
        seed_weights(home, arch)
    base, runs = bench_dirs()
    data = make_jpeg_dataset(base / "jpegs-10x32", 10, 32, 8)
    import torch

    results = []
    default_threads = torch.get_num_threads()
    for arch in archs:
        run = train(arch, data, runs, args.epochs)  # with torch's default threads
        # The measurement with --threads (onnxruntime's sessions get torch's count in open_export).
        torch.set_num_threads(args.threads or default_threads)
        results.append(measure(arch, run, runs / "exports", args.repeats, args.runs, args.calibration_method))
        torch.set_num_threads(default_threads)

    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, onnxruntime "
          f"{__import__('onnxruntime').__version__}, {args.threads or default_threads} threads for torch and "
          f"onnxruntime; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    for r in results:
        lat, size, acc = r["latency"], r["sizes"], r["accuracy"]
        print(f"\n{r['arch']} ({r['exporter']}; export {r['export_s']:.1f} s, with int8 {r['int8_export_s']:.1f} s; "
              f"parity on {r['images']} validation images)")
        print(f"  {'':12} {'size':>9} {'batch-1 latency':>16} {'val acc':>8} {'top-1 = ckpt':>13} "
              f"{'max |Δlogit|':>13}")
        for name in [n for n in ("torch eager", "onnx fp32", "onnx int8", "openvino fp32", "executorch", "coreml")
                     if n in size]:
            if name in r.get("not_runnable", {}):
                print(f"  {name:12} {size[name] / 1e6:7.1f} MB  not runnable here: {r['not_runnable'][name]} "
                      f"(converted in {r[f'{name}_export_s']:.1f} s)")
                continue
            agreement = r["agreement"].get(name)
            diff = r["max_diff"].get(name)
            print(f"  {name:12} {size[name] / 1e6:7.1f} MB {lat[name]:13.2f} ms {100 * acc[name]:7.1f} % "
                  f"{'' if agreement is None else f'{100 * agreement:.1f} %':>13} "
                  f"{'' if diff is None else f'{diff:.2g}':>13}")
        verdict = "accepted" if r["agreement"]["onnx int8"] >= INT8_MIN_TOP1_AGREEMENT else "REFUSED"
        print(f"  int8 ({r['method']} calibration): {verdict} by `export --quantize int8` at its default "
              f"{100 * INT8_MIN_TOP1_AGREEMENT:.0f} % top-1 agreement")
        print(f"  latency ratios: torch eager / onnx fp32 = {lat['torch eager'] / lat['onnx fp32']:.2f}×, "
              f"onnx fp32 / onnx int8 = {lat['onnx fp32'] / lat['onnx int8']:.2f}×; size fp32 / int8 = "
              f"{size['onnx fp32'] / size['onnx int8']:.2f}×"
              + (f"; onnx fp32 / openvino fp32 = {lat['onnx fp32'] / lat['openvino fp32']:.2f}× "
                 f"(OpenVINO export {r['openvino fp32_export_s']:.1f} s)" if "openvino fp32" in lat else "")
              + (f"; torch eager / executorch = {lat['torch eager'] / lat['executorch']:.2f}× "
                 f"(ExecuTorch export {r['executorch_export_s']:.1f} s)" if "executorch" in lat else ""))
        print("  repeats (ms): " + "; ".join(f"{k} " + " ".join(f"{v:.1f}" for v in vs)
                                              for k, vs in r["repeats"].items()))


if __name__ == "__main__":
    main()
