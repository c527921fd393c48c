"""Prediction from a checkpoint: the model is rebuilt from the recipe inside it (no download needed) and images
are prepared with the preprocessing stored beside the weights, so inference sees what training saw."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.data.images import IMAGE_EXTENSIONS, UnreadableImageError, load_image
from engine.data.preprocessing import Preprocessing
from engine.data.transforms import eval_transform
from engine.errors import BadInputError
from engine.infer.exported import ExportedModule, open_export
from engine.infer.ood import OODCalibration, captured_head_input, head_digest, load_calibration
from engine.recipe import Recipe
from engine.train.checkpoints import load_checkpoint, load_model_state, model_of_checkpoint, validate_checkpoint
from engine.train.devices import pick_device
from engine.train.runs import check_run_identity, checkpoint_owner, run_folder_of


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class name, probability), best first
    error: str = ""  # why the file could not be used
    # How unlike the training data the input is (engine/infer/ood.py), in units of the calibrated threshold;
    # None when the checkpoint has no calibration. `unfamiliar`: above the threshold.
    ood_score: float | None = None
    unfamiliar: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top"] = [{"class": c, "probability": p} for c, p in self.top]
        return d


def inference_device(requested: str | torch.device) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `mps`, present on this machine; BadInputError naming `--device` otherwise."""
    if isinstance(requested, torch.device):
        return requested
    text = str(requested).strip().lower()
    if text == "auto":
        return pick_device("auto")[0]
    match = re.fullmatch(r"(cpu|mps|cuda)(?::(\d{1,3}))?", text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise BadInputError(f"--device {requested!r} is not a device: use cpu, cuda, cuda:N, mps or auto")
    kind, index = match.group(1), int(match.group(2) or 0)
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
    if kind == "cuda" and index >= torch.cuda.device_count():
        raise BadInputError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadInputError(f"--device {requested}: MPS is not available on this machine; use --device cpu")
    return torch.device(text)


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders → their image files (recursively, sorted)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                              and not p.name.startswith(".")))
        else:
            out.append(path)
    return out


class Predictor:
    def __init__(self, model: nn.Module, class_names: list[str], preprocessing: Preprocessing,
                 device: str | torch.device = "cpu", recipe: Recipe | None = None, head_path: str = ""):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.class_names = class_names
        self.preprocessing = preprocessing
        self.transform = eval_transform(preprocessing)
        self.recipe = recipe
        self.head_path = head_path
        self.ood: OODCalibration | None = None  # set by from_checkpoint when a calibration is stored beside it
        self.owner = ""  # whose checkpoint, when it is used outside its run folder (from_checkpoint)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        """A tampered or foreign checkpoint (another architecture, fewer classes, a model that is not a state
        dict, non-finite weights) and a device this machine lacks are BadInputErrors, never tracebacks."""
        state = load_checkpoint(path)
        check_run_identity(state, path)  # another run's checkpoint copied into a run folder is refused
        predictor = cls.from_state(state, path, device)
        # Used outside any run folder, by an explicit path: say whose it is.
        predictor.owner = "" if run_folder_of(path) is not None else checkpoint_owner(state)
        return predictor

    @classmethod
    def from_state(cls, state: dict, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        """From a loaded checkpoint (`path` names it in errors)."""
        device = inference_device(device)
        validate_checkpoint(state, path, "predict")
        recipe = Recipe.from_dict(state["recipe"])
        built = model_of_checkpoint(state, path)
        load_model_state(built.model, state["model"], path, built.head_path)
        predictor = cls(built.model, list(state["class_names"]), Preprocessing.from_dict(state["preprocessing"]),
                        device, recipe, built.head_path)
        predictor.ood = load_calibration(path, head_digest(state["model"], built.head_path))
        return predictor

    @classmethod
    def from_export(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        """From an exported file (ONNX, .pt2, TorchScript): its own metadata gives the classes and preprocessing."""
        device = inference_device(device)
        exported = open_export(path, device)
        return cls(ExportedModule(exported), exported.metadata.class_names, exported.metadata.preprocessing, device)

    @property
    def channels(self) -> int:
        return self.preprocessing.channels

    def prepare(self, path: str | Path) -> torch.Tensor:
        return self.transform(load_image(path, self.channels))

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        output = self.model(batch.to(self.device))
        return (output.logits if hasattr(output, "logits") else output).float().cpu()

    def logits_and_ood(self, batch: torch.Tensor) -> tuple[torch.Tensor, np.ndarray | None]:
        """The logits and, with a calibration, each input's out-of-distribution score (from the same pass)."""
        if self.ood is None:
            return self.logits(batch), None
        with captured_head_input(self.model, self.head_path) as captured:
            logits = self.logits(batch)
        return logits, self.ood.scores(captured[-1])

    def predict(self, paths: list[str | Path], topk: int = 5, batch_size: int = 32) -> list[Prediction]:
        """One Prediction per file, in order; unreadable files get an error instead of a crash."""
        topk = max(1, min(topk, len(self.class_names)))
        results: list[Prediction] = []
        pending: list[tuple[int, torch.Tensor]] = []

        def flush() -> None:
            if not pending:
                return
            logits, ood = self.logits_and_ood(torch.stack([t for _, t in pending]))
            values, indices = torch.softmax(logits, dim=1).topk(topk, dim=1)
            for row, ((slot, _), vals, idxs) in enumerate(zip(pending, values.tolist(), indices.tolist())):
                results[slot].top = [(self.class_names[i], float(v)) for v, i in zip(vals, idxs)]
                if ood is not None:
                    results[slot].ood_score = float(ood[row])
                    results[slot].unfamiliar = bool(ood[row] > 1.0)
            pending.clear()

        for path in paths:
            results.append(Prediction(str(path)))
            try:
                pending.append((len(results) - 1, self.prepare(path)))
            except UnreadableImageError as exc:
                results[-1].error = exc.reason
            except (OSError, RuntimeError, ValueError) as exc:
                results[-1].error = f"cannot be prepared: {exc}"
            if len(pending) >= batch_size:
                flush()
        flush()
        return results
