"""Hostile mutations of valid recipes, for the loader's property tests (tests/engine/test_recipe_fuzz.py) and
the longer fuzz run (bench/recipe_fuzz.py). Built on hypothesis: it shrinks a failure to the smallest recipe
that shows it."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from hypothesis import strategies as st

from engine.planning.presets import make_recipe
from engine.recipe import GroupSpec, Recipe


@functools.lru_cache(maxsize=1)
def base_recipes() -> list[dict[str, Any]]:
    """Valid recipes that between them use every field: presets, explicit groups, BN modes, extra channels."""
    rich = make_recipe("gradual_unfreezing", "resnet18", "/data/pets", epochs=6)
    rich.model.in_channels = 5
    rich.data.extra_channel_mean, rich.data.extra_channel_std = [0.5, 0.4], [0.2, 0.3]
    rich.phases[1].groups = [GroupSpec("body", ["layer4"], 1e-4, 0.01), GroupSpec("head", ["head"], 1e-3)]
    rich.phases[1].bn_modes = {"layer4": "frozen_stats"}
    rich.phases[2].schedule.name = "onecycle"
    rich.early_stopping.patience = 2
    return [rich.validate().to_dict(), make_recipe("feature_extraction", "mobilenet_v3_small", "/d").to_dict(),
            make_recipe("from_scratch", "vit_b_16", "").to_dict()]


# Values that broke or nearly broke real loaders: NaN/inf, huge and tiny numbers, bounds ± 1, wrong types.
HOSTILE_SCALARS = [
    None, True, False, 0, 1, -1, 2, 3, 5, 64, 4096, 4097, 65536, 65537, 2**31, 2**32, 2**63, 2**64, 10**30,
    -(10**30), 10**400, 0.0, -0.0, 0.5, 1.0, 1e-12, 1e-320, 10.0, 10.5, 1e6, 1e30, -1e30, 1e308,
    float("nan"), float("inf"), float("-inf"), "", " ", "all", "head", "layer4", "none", "DEFAULT", "cuda:x",
    "cuda:0", "frozen", "\x00", "\ud800", "a" * 300, "é" * 50, "../../etc/passwd", "/proc/self/mem",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(HOSTILE_SCALARS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every location in a JSON tree, the root's children first."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(path + (key,))
            out += _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append(path + (i,))
            out += _paths(value, path + (i,))
    return out


def _parent(tree: Any, path: tuple) -> Any:
    for step in path[:-1]:
        tree = tree[step]
    return tree


@st.composite
def mutated_recipe_dicts(draw) -> Any:
    """A valid recipe with one to three hostile edits: a value replaced, a key removed or invented, a list
    emptied or grown, or the whole thing replaced."""
    tree = copy.deepcopy(draw(st.sampled_from(base_recipes())))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(tree)
        if not paths or draw(st.integers(0, 40)) == 0:
            return draw(json_values)
        path = draw(st.sampled_from(paths))
        parent = _parent(tree, path)
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "invent", "grow", "empty"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "invent" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
        elif action == "grow" and isinstance(parent[path[-1]], list):
            parent[path[-1]].extend([copy.deepcopy(x) for x in parent[path[-1]]] or [draw(json_values)])
        elif action == "empty" and isinstance(parent[path[-1]], (list, dict)):
            parent[path[-1]] = type(parent[path[-1]])()
    return tree


@functools.lru_cache(maxsize=1)
def _base_texts() -> list[bytes]:
    return [json.dumps(r, indent=2).encode("utf-8") for r in base_recipes()]


@st.composite
def mutated_recipe_bytes(draw) -> bytes:
    """A valid recipe's JSON text with bytes replaced, inserted or cut, or re-encoded."""
    data = _base_texts()[draw(st.integers(0, len(base_recipes()) - 1))]
    how = draw(st.sampled_from(["splice", "splice", "cut", "encode", "nest"]))
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 8))
        return data[:at] + draw(st.binary(max_size=8)) + data[at + cut:]
    if how == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if how == "encode":
        return data.decode("utf-8").encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig",
                                                                   "latin-1", "cp1252"])))
    depth = draw(st.integers(1, 200_000))
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


def field_is_named(field: str, message: str = "") -> bool:
    """A RecipeError's field is the file, the root, a dotted path starting at a recipe field, or an invented
    key the message calls unknown."""
    if field in ("(file)", "(root)") or "is not a known field" in message:
        return bool(field)
    head = field.split(".", 1)[0].split("[", 1)[0]
    return head in Recipe.__dataclass_fields__
