"""What the safe checkpoint write costs: `save_checkpoint` (NaN/inf check of every tensor, a file object that
keeps the system's reason for a failed write, fsync before the rename) against the plain write it replaced
(`torch.save` to a temp path, then rename), interleaved, on a model + Adam state as the trainer saves it.

    .venv/bin/python bench/checkpoint_write.py [--arch resnet18] [--repeats 5] [--dir /path/on/the/disk]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torchvision import models as tvm  # noqa: E402

from engine.train.checkpoints import nonfinite_tensors, save_checkpoint  # noqa: E402


def payload(arch: str) -> dict:
    model = tvm.get_model(arch)
    optimizer = torch.optim.Adam(model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # Adam's exp_avg / exp_avg_sq: a checkpoint is about 3× the weights
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1}


def plain_save(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".plain.tmp")
    torch.save({"format_version": 1, **data}, tmp)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp folder)")
    args = parser.parse_args()
    data = payload(args.arch)
    size = sum(t.numel() * t.element_size() for t in data["model"].values())
    folder = Path(tempfile.mkdtemp(dir=args.dir, prefix="thaw-ckpt-bench-"))
    times: dict[str, list[float]] = {"plain": [], "safe": [], "safe without fsync": [], "finite check alone": []}
    real_fsync = os.fsync

    def without_fsync() -> None:
        os.fsync = lambda fd: None
        try:
            save_checkpoint(folder / "c.pt", data)
        finally:
            os.fsync = real_fsync

    for _ in range(args.repeats):  # interleaved: a busy neighbour slows both alike
        for name, write in (("plain", lambda: plain_save(folder / "a.pt", data)),
                            ("safe", lambda: save_checkpoint(folder / "b.pt", data)),
                            ("safe without fsync", without_fsync),
                            ("finite check alone", lambda: nonfinite_tensors(data))):
            started = time.perf_counter()
            write()
            times[name].append(time.perf_counter() - started)
    file_mb = (folder / "b.pt").stat().st_size / 2**20
    print(f"load average {os.getloadavg()[0]:.2f}; {args.arch}: weights {size / 2**20:.0f} MiB, checkpoint "
          f"{file_mb:.0f} MiB, in {folder}")
    for name, values in times.items():
        print(f"{name:>20}: median {statistics.median(values) * 1e3:7.1f} ms  "
              f"(runs: {', '.join(f'{v * 1e3:.0f}' for v in values)})")
    ratio = statistics.median(times["safe"]) / statistics.median(times["plain"])
    print(f"safe / plain: {ratio:.2f}x")
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
