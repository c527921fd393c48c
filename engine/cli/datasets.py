"""`datasets` and `download`: the data sources Thaw knows (engine/data/sources) and fetching one safely
(engine/data/download.py). Exit codes as every command: 0 done, 2 bad input (an unknown name, offline, a damaged
archive, no space), 1 the server failed, 3 stopped with Ctrl-C (what was fetched is kept; the same command resumes)."""

from __future__ import annotations

import json
import sys

from engine.cli.exit_codes import EXIT_OK, EXIT_STOPPED
from engine.errors import BadInputError


def register(sub) -> None:
    help_ = "list the data sets Thaw can download and train on (images, classes, size, split, licence, on disk)"
    p = sub.add_parser("datasets", help=help_, description=help_)
    p.add_argument("--root", help="the data folder to look in (default: Thaw's data folder)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_datasets)

    help_ = "download a data set: free space checked, checksum verified, safe extraction, resumable"
    p = sub.add_parser("download", help=help_, description=help_ + ". Offline (THAW_OFFLINE=1), put the archive "
                       "the message names where it says, and run the command again: it is verified and used.")
    p.add_argument("name", help="a name from `datasets` (e.g. Caltech101, Food101, CIFAR10)")
    p.add_argument("--root", help="the data folder (default: Thaw's data folder); use it as data.root")
    p.set_defaults(run=cmd_download)


def _root(args):
    from engine.data.sources.torchvision_sets import default_data_root

    return args.root or str(default_data_root())


def cmd_datasets(args) -> int:
    from engine.data.sources import all_sources

    root = _root(args)
    rows = [s.to_dict(root) for s in all_sources() if not s.local]
    if args.json:
        print(json.dumps({"root": root, "datasets": rows}, indent=2))
        return EXIT_OK
    print(f"{'name':<14} {'images':>8} {'classes':>7} {'download':>9} {'on disk':>7}  split; licence")
    for row in rows:
        disk = "yes" if row["on_disk"] else "no"
        print(f"{row['name']:<14} {row['images']:>8,} {row['classes']:>7} {_size(row['download_bytes']):>9} "
              f"{disk:>7}  {row['split']}; {row['licence']}")
    print(f"\nroot: {root}  (download NAME --root DIR; then \"dataset\": NAME, \"root\": DIR in a recipe)")
    return EXIT_OK


def cmd_download(args) -> int:
    from engine.data.download import download_source
    from engine.data.fetch import DownloadStopped
    from engine.data.sources import get_source, source_names

    if args.name not in source_names():
        raise BadInputError(f"unknown data set '{args.name}'; known: {', '.join(source_names())}")
    source = get_source(args.name)
    root = _root(args)
    bar = _Bar()
    try:
        result = download_source(source, root, bar)
    except (KeyboardInterrupt, DownloadStopped) as exc:
        bar.close()
        detail = str(exc) if isinstance(exc, DownloadStopped) else "what was fetched is kept"
        print(f"stopped: {detail}; `python main.py download {source.name} --root {root}` resumes", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        bar.close()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.already:
        print(f"{source.name} is already on disk under {root}")
    else:
        used = f" (used the archive you put there: {', '.join(result.brought)})" if result.brought else ""
        print(f"{source.name} is on disk under {root}{used}")
    print(f"  train on it with \"data\": {{\"dataset\": \"{source.name}\", \"root\": \"{root}\"}}; "
          f"licence: {source.licence}")
    return EXIT_OK


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class _Bar:
    """A tqdm bar per archive and stage on a terminal; one line per stage elsewhere (a log, a pipe)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.key = None
        self.bar = None

    def __call__(self, p) -> None:
        key = (p.archive, p.stage)
        if key != self.key:
            self.close()
            self.key = key
            label = f"[{p.index + 1}/{p.count}] {p.stage} {p.archive}"
            if self.tty and p.stage != "unpack":
                from tqdm import tqdm

                self.bar = tqdm(total=p.total or None, desc=label, unit="B", unit_scale=True, file=self.stream,
                                leave=False, dynamic_ncols=True, mininterval=0.1)
            else:
                self.stream.write(label + (f" ({_size(p.total)})" if p.total else "") + "\n")
                self.stream.flush()
        if self.bar is not None:
            if p.total and self.bar.total != p.total:
                self.bar.total = p.total
            self.bar.n = p.done
            self.bar.update(0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
