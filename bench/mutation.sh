#!/usr/bin/env bash
# Mutation testing of the modules that hold Thaw's promises with mutmut; the configuration is [tool.mutmut] in
# pyproject.toml (freezing, groups, engine/train, engine/infer, engine/data, the recipe), the method and the last
# measured results are in docs/TESTING.md. Not part of `make test`: the first six modules alone (freezing,
# checkpoints, feature and RAM caches, groups, schedules: 1139 lines) took 11-19 minutes on 2 cores; the whole
# configuration covers about ten times as many lines and has not been run yet.
#
#   bench/mutation.sh                 run every mutant (results are kept in mutants/; a rerun retests what changed)
#   bench/mutation.sh NAME...         run only these mutants (names as `mutmut results` prints them)
#   bench/mutation.sh --fresh         forget earlier results first
#   bench/mutation.sh --report        print the score and the surviving mutants with their diffs, run nothing
#
# Environment: PY (default .venv/bin/python), JOBS (parallel mutants, default: the number of cores), NICE (default
# 10: the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-$(nproc)}
NICE=${NICE:-10}
MUTMUT=("$PY" -m mutmut)

if ! "$PY" -c "import mutmut" 2>/dev/null; then
    echo "mutmut is not installed: $PY -m pip install -e '.[mutation]'" >&2
    exit 2
fi

report() {
    # `mutmut results` lists survivors (and, with --all, every mutant); the score counts killed and timed-out
    # mutants among those that some test covers.
    "${MUTMUT[@]}" results --all true 2>/dev/null | "$PY" -c '
import collections, sys
rows = [line.strip().rsplit(": ", 1) for line in sys.stdin if ": " in line]
counts = collections.Counter(status for _, status in rows)
covered = sum(n for status, n in counts.items() if status not in ("no tests", "not checked", "skipped"))
caught = counts["killed"] + counts["timeout"] + counts["caught by type check"]
print(", ".join(f"{status}: {n}" for status, n in sorted(counts.items())))
if covered:
    print(f"mutation score: {caught}/{covered} = {100 * caught / covered:.1f} %")
'
    local survivors
    survivors=$("${MUTMUT[@]}" results 2>/dev/null | awk -F': ' '$2 == "survived" {gsub(/^ +/, "", $1); print $1}')
    for name in $survivors; do
        echo "== $name"
        "${MUTMUT[@]}" show "$name" 2>/dev/null | grep -E '^[-+][^-+]' || true
    done
}

if [[ "${1:-}" == "--report" ]]; then
    report
    exit 0
fi
if [[ "${1:-}" == "--fresh" ]]; then
    rm -rf mutants
    shift
fi

# The test session of every mutant would otherwise write the seeded weight files again (conftest.py).
export THAW_TEST_TORCH_HOME=${THAW_TEST_TORCH_HOME:-${TMPDIR:-/tmp}/thaw-mutation-torch-home}
PYTHONPATH=. "$PY" -c "import sys; from pathlib import Path; from tests.conftest import seed_torch_home; \
seed_torch_home(Path(sys.argv[1]))" "$THAW_TEST_TORCH_HOME"
export QT_QPA_PLATFORM=offscreen

log=${TMPDIR:-/tmp}/thaw-mutation.log
started=$(date +%s)
status=0
nice -n "$NICE" "${MUTMUT[@]}" run --max-children "$JOBS" "$@" >"$log" 2>&1 || status=$?
tr '\r' '\n' <"$log" | grep -v '^\s*$' | tail -n 3  # mutmut redraws one progress line; its last state
echo "mutmut ran for $(( $(date +%s) - started )) s with $JOBS jobs (full output: $log)"
report
exit "$status"
