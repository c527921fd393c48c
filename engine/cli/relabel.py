"""`relabel`: move an image of a data folder to another class or to the folder's trash, list the journal of
changes, undo the last one (engine/data/relabel.py)."""

from __future__ import annotations

import json

from engine.cli.exit_codes import EXIT_OK
from engine.errors import BadInputError


def register(sub) -> None:
    help_ = "move an image to another class or to the data folder's trash; list or undo the changes"
    p = sub.add_parser("relabel", help=help_, description=help_ + ". Changes are journalled in "
                       "DATA_DIR/.thaw/relabel-journal.jsonl; a trashed image is kept in DATA_DIR/.thaw/trash until "
                       "that folder is deleted.")
    p.add_argument("data_dir", help="the data folder (root/<class>/… or root/train|val/<class>/…)")
    p.add_argument("file", nargs="?", help="the image to move (a path, or relative to DATA_DIR)")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--to", metavar="CLASS", help="move FILE to this class (the same split in train/val)")
    action.add_argument("--trash", action="store_true", help="move FILE to DATA_DIR/.thaw/trash")
    action.add_argument("--journal", action="store_true", help="list the changes, oldest first")
    action.add_argument("--undo", action="store_true", help="revert the last change not undone yet, byte for byte")
    p.add_argument("--json", action="store_true", help="changes as JSON objects, one a line")
    p.set_defaults(run=cmd_relabel)


def cmd_relabel(args) -> int:
    from engine.data import relabel

    needs_file = args.to is not None or args.trash
    if needs_file and not args.file:
        raise BadInputError(f"{'--to' if args.to is not None else '--trash'} needs the FILE to move")
    if not needs_file and args.file:
        raise BadInputError(f"{'--journal' if args.journal else '--undo'} takes no FILE (got {args.file})")
    if args.journal:
        changes = relabel.read_journal(args.data_dir)
        for change in changes:
            print(json.dumps(change.to_dict()) if args.json else change.describe())
        if not changes and not args.json:
            print(f"no changes journalled in {args.data_dir}")
        return EXIT_OK
    if args.undo:
        change = relabel.undo_last(args.data_dir)
    elif args.trash:
        change = relabel.trash(args.data_dir, args.file)
    else:
        change = relabel.move_to_class(args.data_dir, args.file, args.to)
    print(json.dumps(change.to_dict()) if args.json else change.describe())
    return EXIT_OK
