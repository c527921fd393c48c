"""Edits of one phase's freeze plan: freeze or thaw exactly one subtree, set BatchNorm modes.

A phase's `trainable` / `frozen` lists stay minimal and readable (stage names where a whole stage is meant, in
model order) and mean exactly what was asked: freezing `layer4.1` inside a trainable `layer4` adds one frozen
entry; thawing `layer4.1.conv1` inside a frozen `layer4.1` splits that entry into its siblings. Names the model
does not have stay in the lists untouched, for the plan to report. Nothing here builds or changes a model.
"""

from __future__ import annotations

from engine.model.freezing import BN_FROZEN, BN_FROZEN_STATS
from engine.planning.module_index import ALL, ModuleIndex
from engine.recipe import PhaseConfig


def freeze_subtree(phase: PhaseConfig, path: str, index: ModuleIndex) -> None:
    """Freeze exactly the subtree at `path` in this phase (BN "frozen_stats" overrides inside it go too,
    because that mode keeps the affine parameters training)."""
    phase.trainable = [e for e in phase.trainable if not index.inside(e, path)]
    phase.frozen = [e for e in phase.frozen if not index.inside(e, path)]
    if index.overlapping(path, phase.trainable) and not index.covered(path, phase.frozen):
        phase.frozen.append(index.name_of(path))
    _drop_bn_overrides(phase, path, index, BN_FROZEN_STATS)
    normalise_freeze_plan(phase, index)


def thaw_subtree(phase: PhaseConfig, path: str, index: ModuleIndex) -> None:
    """Make exactly the subtree at `path` trainable in this phase (BN "frozen" overrides inside it go too)."""
    phase.frozen = index.carve(phase.frozen, path)
    if not index.covered(path, phase.trainable):
        phase.trainable = [e for e in phase.trainable if not index.inside(e, path)] + [index.name_of(path)]
    _drop_bn_overrides(phase, path, index, BN_FROZEN)
    normalise_freeze_plan(phase, index)


def set_bn_mode(phase: PhaseConfig, path: str, mode: str | None, index: ModuleIndex) -> None:
    """Set the BN mode of every BN layer under `path` (None: back to the default that follows the freeze plan).
    More specific overrides inside the subtree are dropped: they would otherwise still win over this one."""
    phase.bn_modes = {key: value for key, value in phase.bn_modes.items() if not index.inside(key, path)}
    if mode is not None:
        phase.bn_modes[path or ALL] = mode


def _drop_bn_overrides(phase: PhaseConfig, path: str, index: ModuleIndex, mode: str) -> None:
    phase.bn_modes = {key: value for key, value in phase.bn_modes.items()
                      if not (value == mode and index.inside(key, path))}


def normalise_freeze_plan(phase: PhaseConfig, index: ModuleIndex) -> None:
    """Drop entries that change nothing (covered by another entry, trainable entries frozen whole, frozen
    entries outside everything trainable) and sort the rest in model order. The plan's meaning is unchanged."""
    trainable = _without_covered(phase.trainable, index)
    frozen = _without_covered(phase.frozen, index)
    trainable = [e for e in trainable if index.resolve(e) is None
                 or not all(index.covered(m, frozen) for m in index.resolve(e))]
    frozen = [e for e in frozen if index.resolve(e) is None
              or any(index.overlapping(m, trainable) for m in index.resolve(e))]
    phase.trainable = index.sorted(trainable)
    phase.frozen = index.sorted(frozen)


def _without_covered(entries: list[str], index: ModuleIndex) -> list[str]:
    kept: list[str] = []
    for i, entry in enumerate(entries):
        mods = index.resolve(entry)
        others = kept + entries[i + 1:]
        if entry in others:
            continue
        if mods is not None and all(index.covered(m, others) for m in mods):
            continue
        kept.append(entry)
    return kept
