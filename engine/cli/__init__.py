"""The headless command line: `python main.py <command> …` (exit codes: engine/cli/exit_codes.py).

Each command lives in a module of this package that registers its parser (`register(sub)`) and sets
`run=<function(args) -> exit code>`; this module only assembles them and turns the engine's errors into one
line and an exit code. `--help` imports every command module, so they import at the top only the standard library,
the engine's errors and events (which the console needs anyway); everything else — torch above all, but also the
recipe's and the launcher's modules, tens of milliseconds — is imported inside the command that uses it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from engine.cli.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from engine.errors import BadInputError, ThawError

# The modules that register commands, in the order `--help` lists them.
COMMAND_MODULES = ("engine.cli.train", "engine.cli.lr_find", "engine.cli.predict", "engine.cli.evaluate",
                   "engine.cli.export", "engine.cli.prune", "engine.cli.relabel", "engine.cli.pretrain",
                   "engine.cli.info", "engine.cli.datasets", "engine.cli.advise", "engine.cli.compare_models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thaw", description="Thaw: transfer learning and fine-tuning of image classifiers. "
                                 "Without a command the studio window opens.")
    parser.add_argument("--verbose", "-v", action="store_true", help="log details (and tracebacks)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def command_names() -> list[str]:
    """Every command's name (for main.py: a known command runs headless, anything else opens the studio)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return list(sub.choices)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return args.run(args)
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ThawError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
