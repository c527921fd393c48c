"""Thaw's entry point. No argument opens the studio; a command runs headless (`python main.py --help`);
`--self-test` checks the installation or bundle (gui/selftest.py)."""

from __future__ import annotations

import multiprocessing
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--self-test":
        from gui.selftest import main as self_test_main

        return self_test_main(argv[1:])
    from engine.cli import command_names

    wants_cli = bool(argv) and (argv[0] in command_names() or argv[0] in ("-h", "--help", "-v", "--verbose"))
    if wants_cli:
        from engine.cli import main as cli_main

        return cli_main(argv)
    # Anything else (nothing, a recipe file, an image folder) opens the studio.
    from gui.app import run_studio

    return run_studio(argv)


if __name__ == "__main__":
    multiprocessing.freeze_support()  # first: a frozen worker process runs its task here and exits
    from gui.platform_setup import prepare_process

    prepare_process()  # a windowed build's missing stdout/stderr → the log file, before anything prints
    sys.exit(main())
