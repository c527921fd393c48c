"""A finished (or stopped) run as the analyses see it: its checkpoint, the model trained, the model the run
started from, and the run's own train / validation split prepared for evaluation.

Everything is rebuilt from what the checkpoint stores (recipe, class names, preprocessing), never from the
user's current settings, so an analysis sees exactly the data and model of the run.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from engine.data.datasets import PreparedData, SeededDataset, prepare_data
from engine.data.preprocessing import Preprocessing
from engine.data.transforms import eval_transform
from engine.errors import BadInputError
from engine.model.build import BuiltModel, build_model
from engine.model.pruned_structure import PRUNING_KEY, apply_structure
from engine.recipe import Recipe
from engine.train.checkpoints import load_checkpoint
from engine.train.runs import CHECKPOINT_DIR, RECIPE_FILE, check_run_identity, checkpoint_path

CHECKPOINT_KINDS = ("best", "last")


@dataclass
class RunCheckpoint:
    path: Path  # the checkpoint file
    run_dir: Path | None  # the run folder holding it (None for a checkpoint outside a run folder)
    kind: str  # "best", "last", or the file's stem for a loose checkpoint
    recipe: Recipe
    class_names: list[str]
    preprocessing: Preprocessing
    head_path: str
    weights_name: str
    model_state: dict[str, torch.Tensor]
    epoch: int | None = None  # epochs done when it was saved (None: no position recorded)
    batch: int = 0  # > 0: saved by a stop in the middle of epoch `epoch` + 1
    phase: int | None = None
    pruning: dict | None = None  # a pruned model's structure (engine/model/pruned_structure.py)

    @property
    def channels(self) -> int:
        return self.recipe.model.in_channels

    def describe(self) -> str:
        """Which weights these are, in words: "best.pt (after epoch 1 of 6, phase 1 'head')". A view of a run's
        model says this, never "after the run": a gradual run's best.pt may be from before its backbone trained."""
        name = self.path.name
        if self.epoch is None:
            return name
        total = self.recipe.total_epochs
        when = (f"after epoch {self.epoch} of {total}" if self.batch == 0
                else f"stopped in epoch {self.epoch + 1} of {total}")
        phases = self.recipe.phases
        phase = (f", phase {self.phase + 1} '{phases[self.phase].name}'"
                 if self.phase is not None and 0 <= self.phase < len(phases) and len(phases) > 1 else "")
        return f"{name} ({when}{phase})"


def open_checkpoint(target: str | Path, kind: str = "best") -> RunCheckpoint:
    """A run folder (its checkpoints/<kind>.pt) or a checkpoint file. Raises BadInputError naming what is wrong."""
    target = Path(target).expanduser()
    if kind not in CHECKPOINT_KINDS:
        raise BadInputError(f"checkpoint '{kind}' is not one of {', '.join(CHECKPOINT_KINDS)}")
    if target.is_dir():
        path = checkpoint_path(target, kind)
        if not path.is_file():
            what = "is not a run folder (no recipe.json)" if not (target / RECIPE_FILE).is_file() else \
                f"has no {CHECKPOINT_DIR}/{kind}.pt (the run wrote no {kind} checkpoint yet)"
            raise BadInputError(f"{target} {what}")
    elif target.is_file():
        path = target
        kind = path.stem
    else:
        raise BadInputError(f"{target} does not exist")
    state = load_checkpoint(path)
    check_run_identity(state, path)
    for key in ("model", "recipe", "class_names", "preprocessing"):
        if key not in state:
            raise BadInputError(f"{path} is not a Thaw checkpoint (no '{key}')")
    run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else None
    recipe = Recipe.from_dict(state["recipe"])
    return RunCheckpoint(path, run_dir, kind, recipe, list(state["class_names"]),
                         Preprocessing.from_dict(state["preprocessing"]), str(state.get("head_path", "")),
                         str(state.get("weights_name", recipe.model.weights)), state["model"],
                         _int_or_none(state.get("epoch")), int(state.get("batch") or 0),
                         _int_or_none(state.get("phase")), state.get(PRUNING_KEY) or None)


def _int_or_none(value) -> int | None:
    return int(value) if isinstance(value, int) else None


def trained_model(checkpoint: RunCheckpoint) -> BuiltModel:
    """The checkpoint's model (no pretrained weights are loaded: the checkpoint holds every tensor)."""
    built = build_model(checkpoint.recipe.model, len(checkpoint.class_names), checkpoint.recipe.data,
                        pretrained=False)
    apply_structure(built.model, checkpoint.pruning, f"checkpoint {checkpoint.path}")  # a pruned run's channels
    built.model.load_state_dict(checkpoint.model_state)
    built.model.eval()
    return built


def start_model(checkpoint: RunCheckpoint) -> BuiltModel:
    """The model as the run started: the pretrained weights (from the local cache; offline it is an error
    naming the file) and the new head initialised from the run's seed, exactly as the trainer builds it (it
    seeds python, numpy and torch with the recipe's seed right before building the model)."""
    recipe = checkpoint.recipe
    random.seed(recipe.seed)
    np.random.seed(recipe.seed % 2**32)
    torch.manual_seed(recipe.seed)
    built = build_model(recipe.model, len(checkpoint.class_names), recipe.data, pretrained=True)
    built.model.eval()
    return built


def run_split(checkpoint: RunCheckpoint) -> PreparedData:
    """The run's train and validation sets, both with the evaluation transform (resize, centre crop,
    normalise). The same scan and seeded split as the trainer's, so the validation images are the run's."""
    recipe = checkpoint.recipe
    transform = eval_transform(checkpoint.preprocessing)
    try:
        return prepare_data(recipe.data, transform, transform, checkpoint.channels, seed=recipe.seed)
    except BadInputError as exc:
        raise BadInputError(f"the run's data cannot be read any more: {exc}") from exc


def sample_ids(dataset: SeededDataset, split: str) -> list[str]:
    """Each image's path, or '<dataset>:<split>[i]' for a torchvision data set (whose images have no files)."""
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return [str(path) for path, _ in samples]
    name = type(getattr(dataset, "base", dataset)).__name__
    return [f"{name}:{split}[{i}]" for i in range(len(dataset))]


def loader_workers(recipe: Recipe, dataset_size: int) -> int:
    """The recipe's worker count; automatic: none for a few hundred images (spawning costs more than decoding
    them), else up to one per spare core. THAW_MAX_WORKERS caps it, as it caps the trainer's loaders."""
    workers = recipe.data.num_workers
    if workers < 0:
        workers = 0 if dataset_size < 512 else max(0, min(8, (os.cpu_count() or 2) - 1))
    cap = os.environ.get("THAW_MAX_WORKERS", "").strip()
    return min(workers, int(cap)) if cap.isdigit() else workers


def make_loader(recipe: Recipe, device: torch.device, **kwargs: Any):
    """A `make_loader(dataset, indices)` for engine.train.feature_cache.build_feature_set."""

    def make(dataset, indices: list[int]) -> DataLoader:
        return DataLoader(dataset, batch_size=max(1, recipe.batch_size), sampler=indices,
                          num_workers=loader_workers(recipe, len(dataset)), pin_memory=device.type == "cuda",
                          **kwargs)

    return make
