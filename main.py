"""Thaw's entry point. No argument opens the studio; a command runs headless (`python main.py --help`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from engine.cli import COMMANDS

    wants_cli = bool(argv) and (argv[0] in COMMANDS or argv[0] in ("-h", "--help", "-v", "--verbose"))
    if wants_cli:
        from engine.cli import main as cli_main

        return cli_main(argv)
    # Anything else (nothing, a recipe file, an image folder) opens the studio.
    from gui.app import run_studio

    return run_studio(argv)


if __name__ == "__main__":
    sys.exit(main())
