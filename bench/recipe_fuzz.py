"""The recipe loader under a long hostile fuzz: N mutated recipes (as dicts) and N mutated recipe files (as
bytes), each either loaded (and round-tripped as strict JSON) or refused with RecipeError naming a field.
Any other exception is a bug: the script stops at the first, prints the input hypothesis shrank it to, and
exits 1. The figures: how many cases were loaded or refused, and the time per case against loading the valid
base recipes in the same invocation (the loader's overhead on hostile input).

    .venv/bin/python bench/recipe_fuzz.py [--cases 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from engine.errors import RecipeError  # noqa: E402
from engine.recipe import Recipe  # noqa: E402
from tests.recipe_mutations import base_recipes, field_is_named, mutated_recipe_bytes, mutated_recipe_dicts  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000, help="cases of each kind (dicts, files)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    outcomes: collections.Counter[str] = collections.Counter()
    fields: collections.Counter[str] = collections.Counter()
    config = settings(max_examples=args.cases, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))

    def judge(load) -> None:
        try:
            recipe = load()
        except RecipeError as exc:
            assert field_is_named(exc.field, str(exc)), exc.field
            assert "\n" not in str(exc), str(exc)
            outcomes["refused"] += 1
            top = exc.field.split("[", 1)[0].split(".", 1)[0]
            fields[top if top in Recipe.__dataclass_fields__ or top.startswith("(") else "(unknown key)"] += 1
            return
        json.dumps(recipe.to_dict(), allow_nan=False)
        assert Recipe.from_json(recipe.to_json()) == recipe
        outcomes["loaded"] += 1

    bases = base_recipes()
    started = time.perf_counter()
    for _ in range(200):
        for base in bases:
            Recipe.from_dict(base)
    per_valid = (time.perf_counter() - started) / (200 * len(bases))

    @seed(args.seed)
    @config
    @given(mutated_recipe_dicts())
    def dicts(data):
        judge(lambda: Recipe.from_dict(data))

    folder = Path(tempfile.mkdtemp(prefix="thaw-recipe-fuzz-"))
    path = folder / "recipe.json"

    @seed(args.seed)
    @config
    @given(mutated_recipe_bytes())
    def files(raw):
        path.write_bytes(raw)
        judge(lambda: Recipe.load(path))

    print(f"load average {os.getloadavg()[0]:.2f}; valid recipe loaded in {per_valid * 1e3:.2f} ms")
    for name, test in (("dicts", dicts), ("files", files)):
        outcomes.clear()
        started = time.perf_counter()
        test()
        seconds = time.perf_counter() - started
        cases = sum(outcomes.values())
        print(f"{name}: {cases} cases in {seconds:.1f} s ({seconds / max(1, cases) * 1e3:.2f} ms per case, "
              f"{seconds / max(1, cases) / per_valid:.1f}x a valid load incl. generation); "
              f"{outcomes['loaded']} loaded, {outcomes['refused']} refused, 0 other exceptions")
    path.unlink(missing_ok=True)
    folder.rmdir()
    print("refusals by top-level field: " + ", ".join(f"{k} {v}" for k, v in fields.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
