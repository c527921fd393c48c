"""Prediction from a checkpoint: the model is rebuilt from the recipe inside it (no download needed) and images
are prepared with the preprocessing stored beside the weights, so inference sees what training saw."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from engine.train.checkpoints import load_checkpoint
from engine.errors import BadInputError
from engine.data.images import IMAGE_EXTENSIONS, UnreadableImageError, load_image
from engine.model.build import build_model
from engine.data.preprocessing import Preprocessing
from engine.recipe import Recipe
from engine.data.transforms import eval_transform


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class name, probability), best first
    error: str = ""  # why the file could not be used

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top"] = [{"class": c, "probability": p} for c, p in self.top]
        return d


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

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "Predictor":
        return cls.from_state(load_checkpoint(path), path, device)

    @classmethod
    def from_state(cls, state: dict, path: str | Path, device: str | torch.device = "cpu") -> "Predictor":
        """From a loaded checkpoint (`path` names it in errors)."""
        for key in ("model", "recipe", "class_names", "preprocessing"):
            if key not in state:
                raise BadInputError(f"{path} is not a Thaw checkpoint (no '{key}')")
        recipe = Recipe.from_dict(state["recipe"])
        built = build_model(recipe.model, len(state["class_names"]), recipe.data, pretrained=False)
        built.model.load_state_dict(state["model"])
        return cls(built.model, list(state["class_names"]), Preprocessing.from_dict(state["preprocessing"]), device,
                   recipe, built.head_path)

    @classmethod
    def from_export(cls, path: str | Path, device: str | torch.device = "cpu") -> "Predictor":
        """From an exported file (ONNX, .pt2, TorchScript): its own metadata gives the classes and preprocessing."""
        from engine.infer.exported import ExportedModule, open_export

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

    def predict(self, paths: list[str | Path], topk: int = 5, batch_size: int = 32) -> list[Prediction]:
        """One Prediction per file, in order; unreadable files get an error instead of a crash."""
        topk = max(1, min(topk, len(self.class_names)))
        results: list[Prediction] = []
        pending: list[tuple[int, torch.Tensor]] = []

        def flush() -> None:
            if not pending:
                return
            probs = torch.softmax(self.logits(torch.stack([t for _, t in pending])), dim=1)
            values, indices = probs.topk(topk, dim=1)
            for (slot, _), vals, idxs in zip(pending, values.tolist(), indices.tolist()):
                results[slot].top = [(self.class_names[i], float(v)) for v, i in zip(vals, idxs)]
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
