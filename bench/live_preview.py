"""Live preview: frames per second and added latency of the Inference tab's live preview on this CPU, for ResNet-18
and MobileNet V3 (large and small) in torch eager and ONNX, with the GUI thread's latency while it runs.

Two measurements per model and runtime, in one invocation:
- model only: batch-1 time of one 640×480 frame → preprocessing (resize 256, crop 224) → top-5, as
  engine/infer/live.py does it, on one CPU thread (the studio's workers run torch with one thread); the median of
  `--frames` frames after a warm-up;
- the studio's pipeline: a generated 640×480 video at 30 frames/s plays in real time as the camera
  (gui/workers/frame_sources.py) into the live preview (gui/panels/live_preview.py), offscreen, for `--seconds`:
  frames classified per second, frames dropped (latest frame wins), the added latency (frame arrived on the GUI
  thread → its result ready in the worker: mean and 95th percentile) and the GUI thread's latency (the longest
  and the 99th-percentile gap of a 10 ms timer, whose ideal is 10 ms).

Random-initialised weights (there are no pretrained ones offline): the speed does not depend on the values. The ONNX
file is torch.onnx's export of the same module, run by onnxruntime with one intra-op thread.

    .venv/bin/python bench/live_preview.py [--models resnet18,mobilenet_v3_large,mobilenet_v3_small]
                                           [--seconds 6] [--frames 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from engine.data.preprocessing import Preprocessing  # noqa: E402
from engine.data.video import write_video  # noqa: E402
from engine.infer.inference import Predictor  # noqa: E402
from engine.infer.live import FrameClassifier  # noqa: E402

CLASSES = [f"class{i}" for i in range(10)]


class OnnxModule(nn.Module):
    """An onnxruntime session as a module (as engine/infer/exported.py's ExportedModule does for a Thaw export)."""

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input: batch.numpy()})[0])


def predictor(arch: str, runtime: str, folder: Path) -> Predictor:
    from torchvision import models

    torch.manual_seed(0)
    model = models.get_model(arch, num_classes=len(CLASSES)).eval()
    if runtime == "onnx":
        path = folder / f"{arch}.onnx"
        if not path.exists():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter: fast here
            torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), input_names=["input"],
                              output_names=["logits"], dynamo=False)
        model = OnnxModule(path)
    return Predictor(model, CLASSES, Preprocessing())


def frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return [np.roll(base, 8 * i, axis=1) for i in range(count)]


def model_only(pred: Predictor, count: int) -> float:
    classifier = FrameClassifier(pred, 5)
    shots = frames(count)
    for frame in shots[:5]:
        classifier.classify(frame)
    times = []
    for frame in shots:
        started = time.perf_counter()
        classifier.classify(frame)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pipeline(pred: Predictor, video: Path, seconds: float) -> dict:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gui.panels.live_preview import LivePreviewView
    from gui.workers.live_preview import FrameClassifier as _  # noqa: F401 - the worker's import, loaded up front

    app = QApplication.instance() or QApplication([])
    view = LivePreviewView()
    view.resize(900, 500)
    view.show()
    view.set_checkpoint("bench-model")
    view.set_video(str(video))
    view.worker_thread.ensure()
    view._worker._classifier = FrameClassifier(pred, 5)  # the model is built here, not read from a file
    view._loaded = view.model_path
    latencies, gaps = [], []
    view._worker.frame_classified.connect(lambda result: latencies.append(result["latency"]))
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    heartbeat = QTimer(interval=10)
    heartbeat.timeout.connect(tick)
    view.start()
    heartbeat.start()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        app.processEvents()  # the bench's own event loop (the studio runs app.exec())
        time.sleep(0.001)
    heartbeat.stop()
    dropped = view.mailbox.dropped
    classified = view.frames_classified
    view.shutdown()
    view.deleteLater()
    app.processEvents()
    gaps.sort()
    return {"fps": classified / seconds, "dropped": dropped, "latency_mean": statistics.mean(latencies),
            "latency_p95": float(np.percentile(latencies, 95)), "gui_max": max(gaps),
            "gui_p99": float(np.percentile(gaps, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,mobilenet_v3_large,mobilenet_v3_small")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open("/proc/loadavg") as handle:
        load_before = handle.read().split()[:3]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = write_video(folder / "camera.mp4", frames(int(30 * (args.seconds + 1))), fps=30)
        print(f"camera: 640x480 at 30 frames/s for {args.seconds:g} s; torch {torch.__version__}, 1 CPU thread; "
              f"load before {' '.join(load_before)}")
        print("| model | runtime | model only (ms/frame) | frames/s classified | dropped | added latency mean / "
              "p95 (ms) | GUI thread gap max / p99 (ms) |")
        print("|---|---|---|---|---|---|---|")
        for arch in args.models.split(","):
            for runtime in ("eager", "onnx"):
                pred = predictor(arch, runtime, folder)
                alone = model_only(pred, args.frames)
                live = pipeline(pred, video, args.seconds)
                print(f"| {arch} | {runtime} | {1000 * alone:.1f} | {live['fps']:.1f} | {live['dropped']} | "
                      f"{1000 * live['latency_mean']:.0f} / {1000 * live['latency_p95']:.0f} | "
                      f"{1000 * live['gui_max']:.0f} / {1000 * live['gui_p99']:.0f} |", flush=True)
    with open("/proc/loadavg") as handle:
        print(f"load after: {' '.join(handle.read().split()[:3])} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
