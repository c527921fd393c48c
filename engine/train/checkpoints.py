"""Checkpoints: plain dicts of tensors and Python values, written atomically and read with weights_only=True.

A checkpoint holds everything needed to resume exactly (model, optimizer, scheduler, scaler, epoch, batch,
phase, freeze state, RNG states, running metrics, recipe) and to predict (class names, preprocessing).

Nothing is lost and nothing is wrong on disk:
- a write goes to a temp file in the same folder, is fsynced, then renamed over the old checkpoint; a crash,
  a full disk or a file-size limit leaves the previous checkpoint as it was and no temp file behind
  (`remove_stale_temp_files` clears those of a process killed mid-write when its run folder is reopened);
- a state with NaN or infinite tensors is refused (`NonFiniteError`), so a diverged model never becomes
  last.pt or best.pt (best.pt is a link to a last.pt that was written);
- a checkpoint read back is checked (`validate_checkpoint`, `check_model_state`) before anything uses it, so a
  tampered or foreign file gets one sentence instead of a traceback.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import BadInputError, CheckpointWriteError, NonFiniteError, RecipeError, ThawError
from engine.io_files import check_target
from engine.model.build import build_model
from engine.model.pruned_structure import PRUNING_KEY, apply_structure
from engine.recipe import Recipe
from engine.torch_files import load_plain

FORMAT_VERSION = 2  # 2: early stopping as one dict ("stopping"), training time excluding pauses
WEIGHTS_DIGEST = "weights_sha256"  # SHA-256 of the model's tensors, written with them and checked on every load
TEMP_SUFFIX = ".tmp"  # every temporary file Thaw writes in a run folder ends with this


# --- finiteness ----------------------------------------------------------------------------------------------

def nonfinite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors holding NaN or ±inf anywhere in `obj` (nested dicts, lists,
    tuples), e.g. ``model.layer4.1.bn2.running_var`` or ``optimizer.state.7.exp_avg_sq``. Plain floats are
    not tensors of the model: a plateau scheduler's initial `best` is legitimately infinite."""
    found: list[str] = []
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and obj.numel() and not _finite(obj.detach()):
            found.append(prefix or "(tensor)")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found += nonfinite_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found += nonfinite_tensors(value, f"{prefix}[{i}]")
    return found


def _finite(tensor: torch.Tensor) -> bool:
    # min and max propagate NaN and hold any ±inf: 5-8x faster than isfinite(t).all() on the CPU (no bool
    # tensor of the model's size is allocated); measured in bench/checkpoint_write.py.
    if tensor.is_complex():
        return bool(torch.isfinite(tensor).all())
    return bool(torch.isfinite(torch.stack(torch.aminmax(tensor))).all())


def check_finite(state: Any, what: str) -> None:
    """Raise NonFiniteError naming the non-finite tensors of `state` (a state dict, a checkpoint payload)."""
    bad = nonfinite_tensors(state)
    if bad:
        raise NonFiniteError(what, bad)


# --- the weights' digest --------------------------------------------------------------------------------------

def weights_digest(model_state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over each tensor's name, dtype, shape and bytes, in name order (as exports' tensors_digest). A byte
    changed in a checkpoint's weights changes it. Cost: 62 ms on a resnet18 checkpoint (46.8 MB), whose load goes
    from 92 to 153 ms (best of 5 on a loaded 2-core machine)."""
    digest = hashlib.sha256()
    for name in sorted(model_state):
        tensor = model_state[name].detach()
        flat = tensor.cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        if flat.numel():
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.hexdigest()


def _has_weights(payload: dict[str, Any]) -> bool:
    model = payload.get("model")
    return isinstance(model, dict) and bool(model) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items())


def check_weights_digest(state: dict[str, Any], source: str | Path) -> None:
    """BadInputError when the checkpoint's weights differ from the digest written with them. A checkpoint of an
    older Thaw has none and is not checked."""
    expected = state.get(WEIGHTS_DIGEST)
    if expected is None or not _has_weights(state):
        return
    if not isinstance(expected, str) or weights_digest(state["model"]) != expected:
        # Refused either way: a more specific reason (NaN weights, a broken structure) is the more useful one.
        validate_checkpoint(state, source, "predict")
        raise BadInputError(f"checkpoint {source}: its weights do not match the digest written with them (the file "
                            f"was changed or damaged after it was saved); Thaw will not use it")


# --- writing -------------------------------------------------------------------------------------------------

class _RecordingWriter(io.RawIOBase):
    """A file object for torch.save that remembers the OSError of a failed write. torch.save turns it into
    "enforce fail at inline_container.cc … unexpected pos", which says nothing about a full disk."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise


def save_checkpoint(path: str | Path, payload: dict[str, Any], allow_nonfinite: bool = False) -> Path:
    """Write `payload` atomically: temp file in the same folder, fsync, rename. The previous file at `path` is
    untouched by any failure. Raises NonFiniteError for a state with NaN/inf tensors (unless allowed) and
    CheckpointWriteError (with the system's reason: no space left, file too large …) when writing fails."""
    path = Path(path)
    if not allow_nonfinite:
        check_finite(payload, f"the state to save as {path.name}")
    try:
        check_target(path, "checkpoint")  # a device or a FIFO in its place: refused, never replaced
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    writer = None
    try:
        with os.fdopen(fd, "wb") as file:
            writer = _RecordingWriter(file)
            digest = {WEIGHTS_DIGEST: weights_digest(payload["model"])} if _has_weights(payload) else {}
            torch.save({"format_version": FORMAT_VERSION, **payload, **digest}, writer)
            writer.flush()
            os.fsync(file.fileno())  # the rename must never expose a file whose data is not on disk yet
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001 - any failure is reported once, with its real cause
        cause = writer.error if writer is not None and writer.error is not None else exc
        raise _write_error(path, cause) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_error(path: Path, cause: BaseException) -> CheckpointWriteError:
    if isinstance(cause, OSError):
        reason = cause.strerror or str(cause) or type(cause).__name__
    else:
        text = str(cause).strip()
        reason = text.splitlines()[0][:200] if text else type(cause).__name__
    kept = " (the previous checkpoint is kept)" if path.exists() else ""
    return CheckpointWriteError(f"cannot write checkpoint {path}: {reason}{kept}")


def link_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Make `target` the same checkpoint as `source` without writing it twice (a hard link, atomically
    replaced; a copy where links are not supported). A later write of `source` replaces its file, so the link
    keeps the old content."""
    source, target = Path(source), Path(target)
    tmp = target.with_name(target.name + ".link" + TEMP_SUFFIX)
    try:
        check_target(target, "checkpoint")
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        raise _write_error(target, exc) from exc
    return target


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Delete the temp files that interrupted writes (kill -9, power loss) left in a run folder and its
    checkpoints/ folder; returns what was removed. Call it only while holding the run's lock
    (engine/train/run_lock.py): a live writer's temp file must not be pulled from under it."""
    run_dir = Path(run_dir)
    removed = []
    for folder in (run_dir, run_dir / "checkpoints"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.endswith(TEMP_SUFFIX) and path.is_file():
                try:
                    path.unlink()
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed


# --- reading and checking ------------------------------------------------------------------------------------

def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"checkpoint {path} does not exist")
    state = load_plain(path, "checkpoint")
    if not isinstance(state, dict):
        raise BadInputError(f"checkpoint {path} is not a Thaw checkpoint (it holds a {type(state).__name__})")
    version = state.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BadInputError(f"{path} was written by a newer Thaw (checkpoint format {version}); this version reads "
                            f"formats up to {FORMAT_VERSION}: update Thaw to use it")
    check_weights_digest(state, path)
    if map_location not in ("cpu", torch.device("cpu")):
        state = _to_device(state, torch.device(map_location))
    return state


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


_PREDICT_KEYS = {"model": dict, "recipe": dict, "class_names": list, "preprocessing": dict}
_RESUME_KEYS = {**_PREDICT_KEYS, "optimizer": dict, "scheduler": dict, "epoch": int, "batch": int, "phase": int,
                "freeze": dict}  # "rng" only in a checkpoint taken mid-epoch


def validate_checkpoint(state: Any, source: str | Path, purpose: str = "predict") -> None:
    """Check a loaded checkpoint's structure before use; BadInputError naming the first problem.

    purpose "predict": model, recipe, class names and preprocessing must be there and well-formed, and the
    weights finite. "resume": also the optimizer, scheduler, position (epoch/batch/phase) and freeze state.
    Whether the weights fit the recipe's architecture is `check_model_state`'s job (it needs the model)."""
    where = f"checkpoint {source}"
    if not isinstance(state, dict):
        raise BadInputError(f"{where} is not a Thaw checkpoint (it holds a {type(state).__name__})")
    required = _RESUME_KEYS if purpose == "resume" else _PREDICT_KEYS
    for key, kind in required.items():
        if key not in state:
            raise BadInputError(f"{where} is not a Thaw checkpoint (it has no '{key}')")
        value = state[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadInputError(f"{where}: '{key}' is a {type(value).__name__}, not a {kind.__name__}")
    model = state["model"]
    bad = [k for k, v in model.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not model:
        raise BadInputError(f"{where}: 'model' is not a state dict of tensors"
                            + (f" (entry {str(bad[0])[:80]!r})" if bad else " (it is empty)"))
    names = state["class_names"]
    if len(names) < 2 or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise BadInputError(f"{where}: 'class_names' must be two or more distinct names")
    try:
        recipe = Recipe.from_dict(state["recipe"])
    except RecipeError as exc:
        raise BadInputError(f"{where}: its recipe is invalid: {exc}") from None
    prep = state["preprocessing"]
    mean, std = prep.get("mean"), prep.get("std")
    if (not isinstance(mean, list) or not isinstance(std, list) or len(mean) != len(std) or not mean
            or not all(isinstance(s, (int, float)) and s > 0 for s in std)):
        raise BadInputError(f"{where}: 'preprocessing' has no usable mean/std per channel")
    if len(mean) != recipe.model.in_channels:
        raise BadInputError(f"{where}: 'preprocessing' has {len(mean)} channels but the recipe's model takes "
                            f"{recipe.model.in_channels}")
    for key in ("resize_size", "crop_size"):
        size = prep.get(key)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 8192:
            raise BadInputError(f"{where}: 'preprocessing.{key}' is {size!r}, not a size in pixels")
    bad = nonfinite_tensors(model)
    if bad:
        raise BadInputError(f"{where} holds non-finite weights ({', '.join(bad[:3])}"
                            f"{' …' if len(bad) > 3 else ''}): it was saved from a diverged model")
    if purpose == "resume":
        _validate_position(state, recipe, where)


def _validate_position(state: dict[str, Any], recipe: Any, where: str) -> None:
    epoch, batch, phase = state["epoch"], state["batch"], state["phase"]
    if not 0 <= phase < len(recipe.phases):
        raise BadInputError(f"{where}: phase {phase} does not exist (the recipe has {len(recipe.phases)})")
    if not 0 <= epoch <= recipe.total_epochs or batch < 0:
        raise BadInputError(f"{where}: epoch {epoch}, batch {batch} is outside the recipe's "
                            f"{recipe.total_epochs} epochs")
    optimizer = state["optimizer"]
    if not isinstance(optimizer.get("state"), dict) or not isinstance(optimizer.get("param_groups"), list):
        raise BadInputError(f"{where}: 'optimizer' is not an optimizer state")
    freeze = state["freeze"]
    if not isinstance(freeze.get("trainable"), list) or not isinstance(freeze.get("bn_modes"), dict):
        raise BadInputError(f"{where}: 'freeze' is not a freeze state")
    bad = nonfinite_tensors(optimizer)
    if bad:
        raise BadInputError(f"{where}: its optimizer state holds non-finite values ({', '.join(bad[:3])})")


def check_model_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path,
                      head_path: str = "") -> None:
    """The state dict must fit `model` exactly (the architecture the checkpoint's recipe builds). Raises
    BadInputError saying what does not fit: another architecture, or a head for another number of classes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    where = f"checkpoint {source}"
    head = [k for k in mismatched if head_path and (k == head_path or k.startswith(head_path + "."))]
    if head and len(head) == len(mismatched) and not missing and not unexpected:
        outputs = next((state_dict[k].shape[0] for k in head if k.endswith("weight")), state_dict[head[0]].shape[0])
        expected = next((own[k].shape[0] for k in head if k.endswith("weight")), own[head[0]].shape[0])
        raise BadInputError(f"{where}: its head '{head_path}' has {outputs} outputs but it names {expected} classes")
    parts = []
    for name, keys in (("missing", missing), ("unknown", unexpected), ("of another shape", mismatched)):
        if keys:
            parts.append(f"{len(keys)} {name} ({', '.join(keys[:3])}{' …' if len(keys) > 3 else ''})")
    raise BadInputError(f"{where}: its weights do not fit the architecture its recipe names "
                        f"({type(model).__name__}, {len(own)} tensors): " + "; ".join(parts))


def model_of_checkpoint(state: dict[str, Any], source: str | Path, meta: bool = False) -> Any:
    """The model the checkpoint's recipe builds (a `BuiltModel`, no weights loaded), for its class count.
    `meta`: on the meta device (shapes only, no memory). A recipe whose model cannot be built is a
    BadInputError about the checkpoint. Call after `validate_checkpoint`."""
    recipe = Recipe.from_dict(state["recipe"])
    classes = len(state["class_names"])
    built = None
    try:
        if meta:
            try:
                with torch.device("meta"):
                    built = build_model(recipe.model, classes, recipe.data, pretrained=False)
            except ThawError:
                raise
            except Exception:  # noqa: BLE001 - RegNet computes its widths with real tensors; build it for real
                pass
        if built is None:
            built = build_model(recipe.model, classes, recipe.data, pretrained=False)
    except ThawError as exc:
        raise BadInputError(f"checkpoint {source}: its recipe's model cannot be built ({exc})") from None
    # A pruned model (python main.py prune) has fewer channels than the architecture builds: put them back.
    apply_structure(built.model, state.get(PRUNING_KEY), f"checkpoint {source}")
    return built


def check_checkpoint_fits(state: dict[str, Any], source: str | Path) -> None:
    """Do the checkpoint's weights fit the model its own recipe builds (for `resume`, before anything is
    prepared)? Checked on the meta device. Call after `validate_checkpoint`."""
    built = model_of_checkpoint(state, source, meta=True)
    check_model_state(built.model, state["model"], source, built.head_path)


def load_model_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path,
                     head_path: str = "") -> None:
    """`check_model_state`, then load (strict)."""
    check_model_state(model, state_dict, source, head_path)
    model.load_state_dict(state_dict)


# --- RNG states ----------------------------------------------------------------------------------------------

def rng_states() -> dict[str, Any]:
    """Every RNG the run uses, as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
