#!/usr/bin/env bash
# Build the onedir bundle dist/Thaw/ from packaging/thaw.spec with the project's venv.
#
#     packaging/build.sh                 # (what `make package` runs)
#     PY=/path/to/python packaging/build.sh
#     CLEAN=1 packaging/build.sh         # also empty PyInstaller's cache first
#     PY=.venv-cpu/bin/python DIST=dist/cpu WORK=build/pyinstaller-cpu packaging/build.sh  # another venv
#
# Installs PyInstaller into that venv if it is missing, builds, prints the build time and the bundle's size.
# Work files go to build/pyinstaller/, the bundle to dist/Thaw/ (both git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
PYINSTALLER_SPEC="${PYINSTALLER_SPEC:-pyinstaller>=6.11}"
DIST="${DIST:-$ROOT/dist}"               # where the bundle goes
WORK="${WORK:-$ROOT/build/pyinstaller}"  # PyInstaller's work files
cd "$ROOT"

if [ ! -x "$PY" ] && [ ! -f "$PY" ]; then
    echo "build.sh: no Python at $PY (run 'make install' first, or set PY=...)" >&2
    exit 2
fi
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
    echo "build.sh: installing $PYINSTALLER_SPEC into $("$PY" -c 'import sys; print(sys.prefix)')"
    "$PY" -m pip install --quiet "$PYINSTALLER_SPEC"
fi

echo "build.sh: PyInstaller $("$PY" -c 'import PyInstaller; print(PyInstaller.__version__)'), \
torch $("$PY" -c 'import torch; print(torch.__version__)')"
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm ${CLEAN:+--clean} --log-level "${PYI_LOG_LEVEL:-WARN}" \
    --distpath "$DIST" --workpath "$WORK" \
    "$ROOT/packaging/thaw.spec"
end=$(date +%s)

case "$(uname -s)" in
    Darwin) bundle="$DIST/Thaw.app" ;;
    *) bundle="$DIST/Thaw" ;;
esac
echo "build.sh: built $bundle in $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s"
echo "build.sh: bundle size $(du -sh "$bundle" | cut -f1) ($(find "$bundle" -type f | wc -l) files)"
