"""Thaw's entry point. No argument opens the studio; a command runs headless (`python main.py --help`);
`--self-test` checks the installation or bundle (engine/selftest.py, with the studio's checks from
gui/selftest_checks.py)."""

from __future__ import annotations

import multiprocessing
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--self-test":
        return self_test(argv[1:])
    if argv and argv[0] in ("--torchrun", "--self-test-gloo-worker"):  # a packaged app's child processes
        return child_process(argv[0], argv[1:])
    from engine.cli import command_names

    commands = command_names()
    wants_cli = bool(argv) and (argv[0] in commands or argv[0] in ("-h", "--help", "-v", "--verbose"))
    if wants_cli:
        from engine.cli import main as cli_main

        return cli_main(argv)
    if argv and not argv[0].startswith("-") and not os.path.exists(argv[0]):
        return unknown_command(argv[0], commands)
    # Anything else (nothing, a recipe file, an image folder, Qt's own options) opens the studio.
    from gui.app import run_studio

    return run_studio(argv)


def self_test(argv: list[str]) -> int:
    """The engine's checks, then the studio's; a studio that cannot even be imported is a failed check."""
    from engine.selftest import Check, ExtraChecks
    from engine.selftest import main as run_self_test

    try:
        from gui import selftest_checks as studio
    except Exception as exc:  # noqa: BLE001 - a broken bundle must still print the engine's checks
        error = exc  # `exc` is unbound once the except block ends

        class Unimportable(ExtraChecks):
            def checks(self) -> list[Check]:
                def fail() -> str:
                    raise error

                return [("studio", fail)]

        return run_self_test(argv, lambda _work, _args: Unimportable())
    studio.prepare_display()
    return run_self_test(argv, studio.StudioChecks.from_args, studio.add_arguments, studio.where())


def child_process(flag: str, argv: list[str]) -> int:
    """What a packaged app starts as its own children, having no `python -m`: torchrun (engine/train/launch.py
    torchrun_command) and the self-test's gloo worker."""
    if flag == "--torchrun":
        from engine.train.launch import run_torchrun

        return run_torchrun(argv)
    from engine.selftest import gloo_worker

    return gloo_worker()


def unknown_command(word: str, commands: list[str]) -> int:
    """A mistyped command must not open (or, without a display, crash) the studio: say so, exit 2."""
    import difflib

    from engine.cli.exit_codes import EXIT_BAD_INPUT

    close = difflib.get_close_matches(word, commands, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    print(f"error: unknown command '{word}' (and no such file or folder).{hint} Commands: {', '.join(commands)}; "
          f"see `main.py --help`.", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    multiprocessing.freeze_support()  # first: a frozen worker process runs its task here and exits
    from gui.platform_setup import prepare_process

    prepare_process()  # a windowed build's missing stdout/stderr → the log file, before anything prints
    sys.exit(main())
