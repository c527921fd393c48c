"""Session-wide test set-up: a seeded TORCH_HOME (torchvision's exact cache layout), no downloads, and runs
written under a temporary folder, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import make_image_folder

# One intra-op thread: the suite's tiny models are faster that way on 2 cores, and a Qt worker thread and the
# test thread do not fight over OpenMP's spinning threads.
torch.set_num_threads(1)

# Weight files the tests put where torchvision's loader looks: <TORCH_HOME>/hub/checkpoints/<file from the URL>.
SEEDED_WEIGHTS = ("resnet18", "mobilenet_v3_small")


def seed_torch_home(torch_home: Path, archs=SEEDED_WEIGHTS) -> dict[str, Path]:
    """Write a seeded random state dict for each arch's DEFAULT weights, named exactly as torchvision expects."""
    from torchvision import models as tvm

    from engine.model.zoo import weights_file_name

    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for arch in archs:
        weights = tvm.get_model_weights(arch).DEFAULT
        path = folder / weights_file_name(weights)
        if not path.exists():
            torch.manual_seed(1234)
            torch.save(tvm.get_model(arch, weights=None).state_dict(), path)
        files[arch] = path
    return files


@pytest.fixture(scope="session", autouse=True)
def offline_torch_home(tmp_path_factory):
    # THAW_TEST_TORCH_HOME keeps the seeded weight files between sessions: bench/mutation.sh runs one short session
    # per mutant, and writing them takes about a second each time.
    kept = os.environ.get("THAW_TEST_TORCH_HOME")
    home = Path(kept) if kept else tmp_path_factory.mktemp("torch_home")
    runs = tmp_path_factory.mktemp("runs")
    cache = tmp_path_factory.mktemp("feature_cache")
    saved = {k: os.environ.get(k) for k in ("TORCH_HOME", "THAW_OFFLINE", "THAW_RUNS_DIR", "THAW_CACHE_DIR")}
    os.environ["TORCH_HOME"] = str(home)
    os.environ["THAW_OFFLINE"] = "1"  # a test that would download fails loudly instead
    os.environ["THAW_RUNS_DIR"] = str(runs)
    os.environ["THAW_CACHE_DIR"] = str(cache)  # cached backbone features
    files = seed_torch_home(home)
    yield {"home": home, "files": files, "runs": runs, "cache": cache}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """3 classes × 12 images of 40×40, plus a truncated JPEG and a non-image in the first class."""
    return make_image_folder(tmp_path_factory.mktemp("images"), classes=3, per_class=12, broken=True)


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path
