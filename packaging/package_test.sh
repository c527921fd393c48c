#!/usr/bin/env bash
# Run the built bundle the way a user would, away from the source tree (what `make package-test` runs after
# `make package`):
#   1. `Thaw --self-test` offscreen, with a recipe and an image folder opened in the main window as `Thaw PATH…`
#      does, saving a grab of it (SCREENSHOT, default /tmp/thaw_bundle.png);
#   2. the headless CLI (`Thaw --help`, `Thaw models`);
#   3. a windowed start simulated by closing stdout/stderr: the self-test must still pass and write its report
#      to the log file in the user's log folder (here a temporary XDG_STATE_HOME).
# The whole test has a time limit (THAW_PACKAGE_TEST_LIMIT seconds, default 900): a bundle that hangs is killed and
# the test fails naming the step, instead of waiting for ever (issue 27). The self-test also limits each check.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXE="${THAW_BUNDLE_EXE:-$ROOT/dist/Thaw/Thaw}"
SCREENSHOT="${SCREENSHOT:-/tmp/thaw_bundle.png}"
[ -x "$EXE" ] || { echo "package_test.sh: no bundle at $EXE (run 'make package')" >&2; exit 2; }
LIMIT="${THAW_PACKAGE_TEST_LIMIT:-900}"
deadline=$(( $(date +%s) + LIMIT ))

work="$(mktemp -d "${TMPDIR:-/tmp}/thaw-package-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"  # nothing of the checkout is importable from here
# A clean environment: no PYTHONPATH/PYTHONHOME leaking the venv into the bundle.
step="start"
exec 3>&2  # the failure message's way out, also from step 3, which runs the bundle with stderr closed
# Each command gets what is left of the overall limit; past it, `timeout` ends it (SIGTERM, then SIGKILL 10 s later).
run() {
    local left=$(( deadline - $(date +%s) )) status=0
    [ "$left" -gt 0 ] || left=1
    timeout --kill-after=10 "$left" env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV QT_QPA_PLATFORM=offscreen \
        HOME="$work/home" XDG_STATE_HOME="$work/state" XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data" \
        "$@" || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "package_test.sh: FAILED: step '$step' did not finish within the test's limit of $LIMIT s" \
             "(THAW_PACKAGE_TEST_LIMIT); it was killed" >&3
        exit 124
    fi
    return "$status"
}
mkdir -p "$work/home"

# What "Open with Thaw" hands the studio: a recipe, then an image folder (two classes of the bundled sample).
cp "$ROOT/examples/fine_tune_all.json" "$work/recipe.json"
for cls in ice water; do
    mkdir -p "$work/images/$cls"
    for i in 1 2 3 4; do cp "$ROOT/resources/sample.png" "$work/images/$cls/$i.png"; done
done

echo "== 1. $EXE --self-test (opening a recipe and an image folder in the window)"
step="1. self-test"
start=$(date +%s)
run "$EXE" --self-test --open "$work/recipe.json" --open "$work/images" --screenshot "$SCREENSHOT"
echo "(self-test wall time, bundle start included: $(( $(date +%s) - start )) s)"

echo "== 2. the CLI from the bundle"
step="2. the CLI"
run "$EXE" --help > "$work/help.txt"
head -n 3 "$work/help.txt"
run "$EXE" models > "$work/models.txt"
head -n 3 "$work/models.txt"

echo "== 3. windowed start (no stdout/stderr): the report goes to the log file"
step="3. windowed start"
status=0
run "$EXE" --self-test >&- 2>&- || status=$?
log="$(find "$work/state" -name thaw.log | head -n 1)"
if [ -z "$log" ]; then echo "package_test.sh: no thaw.log written under $work/state" >&2; exit 1; fi
echo "log file: ${log#"$work/"} ($(wc -l < "$log") lines), exit status $status"
tail -n 2 "$log"
grep -q "^self-test passed" "$log" || { echo "package_test.sh: the log does not report a passed self-test" >&2; exit 1; }
[ "$status" -eq 0 ] || exit "$status"
echo "package_test.sh: all good; screenshot $SCREENSHOT"
