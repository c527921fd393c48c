"""What the measuring commands (advise, compare-models) share with `train` and `download`: one Ctrl-C asks the job
to stop at its next check and the command exits 3 (EXIT_STOPPED) keeping what it measured; a second Ctrl-C aborts
(130). And a progress line: a tqdm bar per stage on a terminal, one line per stage elsewhere (a log, a pipe)."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator


class StopFlag:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def stop_on_ctrl_c(what: str) -> Iterator[StopFlag]:
    flag = StopFlag()

    def on_interrupt(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        print(f"\nstopping {what} (Ctrl-C again to abort) …", file=sys.stderr)
        flag.requested = True

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread (a test calling main() from a worker): no handler, Ctrl-C aborts
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class StageBar:
    """`bar(label, done, total)`: a bar per label on a terminal, the label once per change elsewhere."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() and not quiet
        self.quiet = quiet
        self.label = None
        self.bar = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self.label:
            self.close()
            self.label = label
            if self.tty:
                from tqdm import tqdm

                self.bar = tqdm(total=total or None, desc=label, file=self.stream, leave=False, dynamic_ncols=True,
                                mininterval=0.1)
            elif not self.quiet:
                self.stream.write(label + "\n")
                self.stream.flush()
        if self.bar is not None:
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.n = done
            self.bar.update(0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
