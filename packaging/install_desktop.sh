#!/usr/bin/env bash
# Install Thaw's desktop entry and icon for the current user (Linux; freedesktop.org menus).
#
#     packaging/install_desktop.sh              # what `make install-desktop` runs
#     packaging/install_desktop.sh --uninstall  # remove both again
#     packaging/install_desktop.sh --print      # show the .desktop file it would write, write nothing
#
# Writes  $XDG_DATA_HOME/applications/thaw.desktop              (default ~/.local/share/applications)
#         $XDG_DATA_HOME/icons/hicolor/256x256/apps/thaw.png     (+ scalable/apps/thaw.svg)
# The entry starts the bundle dist/Thaw/Thaw if it has been built (`make package`), else the venv:
# .venv/bin/python main.py. Choose with --bundle [PATH] or --source; --prefix DIR replaces $XDG_DATA_HOME.
# Files and folders given to it (%F: "Open with Thaw" on a recipe .json or an image folder) open in the studio.
# The launcher sets THAW_LOG_TO_FILE=1: output goes to the log file (~/.local/state/Thaw/log/thaw.log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${XDG_DATA_HOME:-$HOME/.local/share}"
MODE=auto          # auto | bundle | source
BUNDLE="$ROOT/dist/Thaw/Thaw"
ACTION=install     # install | uninstall | print

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) MODE=bundle; if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then BUNDLE="$2"; shift; fi ;;
        --source) MODE=source ;;
        --prefix) PREFIX="$2"; shift ;;
        --uninstall) ACTION=uninstall ;;
        --print) ACTION=print ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install_desktop.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

APPS="$PREFIX/applications"
ICONS="$PREFIX/icons/hicolor"
DESKTOP_FILE="$APPS/thaw.desktop"

refresh_caches() {
    if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$APPS" || true; fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$ICONS/index.theme" ]; then
        gtk-update-icon-cache -q -t -f "$ICONS" || true
    fi
    if command -v xdg-desktop-menu >/dev/null 2>&1; then xdg-desktop-menu forceupdate || true; fi
}

if [ "$ACTION" = uninstall ]; then
    rm -f "$DESKTOP_FILE" "$ICONS/256x256/apps/thaw.png" "$ICONS/scalable/apps/thaw.svg"
    refresh_caches
    echo "install_desktop.sh: removed $DESKTOP_FILE and the Thaw icons from $ICONS"
    exit 0
fi

# One argument of an Exec line, quoted per the Desktop Entry spec: inside double quotes, " ` $ \ are
# backslash-escaped; then the value is escaped once more as a desktop-file string (\ → \\), and % → %%.
exec_arg() {
    local s="$1"
    s="${s//%/%%}"
    case "$s" in
        *[[:space:]\"\'\\\>\<~\|\&\;\$\*\?\#\(\)\`=]*)
            s="${s//\\/\\\\\\\\}"   # \  → \\\\
            s="${s//\"/\\\\\"}"     # "  → \\"
            s="${s//\$/\\\\\$}"     # $  → \\$
            s="${s//\`/\\\\\`}"     # `  → \\`
            printf '"%s"' "$s" ;;
        *) printf '%s' "$s" ;;
    esac
}

if [ "$MODE" = auto ]; then
    if [ -x "$BUNDLE" ]; then MODE=bundle; else MODE=source; fi
fi
if [ "$MODE" = bundle ]; then
    if [ ! -x "$BUNDLE" ]; then
        echo "install_desktop.sh: no bundle at $BUNDLE (build it with 'make package')" >&2
        exit 2
    fi
    BUNDLE="$(cd "$(dirname "$BUNDLE")" && pwd)/$(basename "$BUNDLE")"
    EXEC="env THAW_LOG_TO_FILE=1 $(exec_arg "$BUNDLE")"
    TRYEXEC="$BUNDLE"
else
    PY="$ROOT/.venv/bin/python"
    if [ ! -x "$PY" ]; then
        echo "install_desktop.sh: neither a bundle ($BUNDLE) nor the venv ($PY) exists; run 'make install' or 'make package'" >&2
        exit 2
    fi
    EXEC="env THAW_LOG_TO_FILE=1 $(exec_arg "$PY") $(exec_arg "$ROOT/main.py")"
    TRYEXEC="$PY"
fi

# sed replacement text: escape \ & and the | delimiter
sed_escape() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
ENTRY="$(sed -e "s|@EXEC@|$(sed_escape "$EXEC")|" -e "s|@TRYEXEC@|$(sed_escape "${TRYEXEC//\\/\\\\}")|" \
    "$ROOT/packaging/thaw.desktop")"

if [ "$ACTION" = print ]; then
    printf '%s\n' "$ENTRY"
    exit 0
fi

mkdir -p "$APPS" "$ICONS/256x256/apps" "$ICONS/scalable/apps"
install -m 644 "$ROOT/resources/thaw.png" "$ICONS/256x256/apps/thaw.png"
install -m 644 "$ROOT/resources/thaw.svg" "$ICONS/scalable/apps/thaw.svg"
tmp="$(mktemp "$APPS/.thaw.desktop.XXXXXX")"
printf '%s\n' "$ENTRY" > "$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$DESKTOP_FILE"
if command -v desktop-file-validate >/dev/null 2>&1; then desktop-file-validate "$DESKTOP_FILE" || true; fi
refresh_caches
echo "install_desktop.sh: installed $DESKTOP_FILE ($MODE: $TRYEXEC)"
echo "install_desktop.sh: icon $ICONS/256x256/apps/thaw.png"
