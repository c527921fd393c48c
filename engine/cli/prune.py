"""`prune`: structured channel pruning of a run's model (torch-pruning), a short recovery fine-tune, and what it
cost and saved — parameters, file size, batch-1 latency, validation accuracy — before and after; the pruned model
becomes a new run, or is refused (exit 1) when it lost more than --max-drop points of validation accuracy.
One Ctrl-C stops after the batch, writes nothing and exits 3."""

from __future__ import annotations

import json
import signal
import sys

from engine.cli.exit_codes import EXIT_OK, EXIT_STOPPED


def register(sub) -> None:
    help_ = "prune a run's model (channels, torch-pruning), fine-tune it briefly and keep it as a new run"
    p = sub.add_parser("prune", help=help_, description=help_ + ". Needs the torch-pruning package "
                       "(pip install 'thaw[prune]'). The table compares the original, the pruned and the fine-tuned "
                       "model; RUN_FOLDER/prune.json keeps it.")
    p.add_argument("run_dir", metavar="RUN", help="a run folder (or one of its checkpoint files)")
    p.add_argument("--amount", type=float, default=0.3,
                   help="share of each layer's channels to remove, between 0 and 1 (0.3); the head keeps its classes")
    p.add_argument("--epochs", type=int, default=10, help="recovery fine-tune epochs on the run's training images (10; "
                                                         "0: none)")
    p.add_argument("--max-drop", type=float, default=2.0, metavar="POINTS",
                   help="refuse the pruned model when its validation accuracy is more than this many points below "
                        "the original's (2)")
    p.add_argument("--checkpoint", default="best", help="best (default) or last")
    p.add_argument("--out", default="", metavar="RUNS_FOLDER", help="where the new run goes (default: beside RUN)")
    p.add_argument("--lr", type=float, default=1e-4, help="the fine-tune's AdamW learning rate (1e-4)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps: fine-tune and "
                                                    "latency run there")
    p.add_argument("--latency-runs", type=int, default=30, help="batch-1 latency runs per model; 0: none")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_prune)


class _Lines:
    """Progress as lines on stderr: each stage once, the fine-tune's batches every tenth of an epoch."""

    def __init__(self):
        self.last = ""

    def __call__(self, event) -> None:
        if event.stage == "fine-tune" and event.total:
            step = max(1, event.total // 10)
            if event.done % step and event.done != event.total:
                return
            line = f"fine-tune: {event.message} [{event.done}/{event.total}]"
        else:
            line = f"{event.stage}: {event.message}"
        if line != self.last:
            print(line, file=sys.stderr, flush=True)
            self.last = line


def cmd_prune(args) -> int:
    from engine.infer.prune_run import PruneCancelled, PruneRefusedError, PruneRequest, prune_run

    request = PruneRequest(run=args.run_dir, amount=args.amount, epochs=args.epochs, max_drop=args.max_drop,
                           checkpoint=args.checkpoint, out=args.out, lr=args.lr, device=args.device,
                           latency_runs=args.latency_runs)
    stop = []

    def on_interrupt(signum, frame):  # first Ctrl-C: stop after this batch; second: abort (exit 130)
        if stop:
            raise KeyboardInterrupt
        print("\nstopping after this batch (Ctrl-C again to abort) …", file=sys.stderr)
        stop.append(signum)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = prune_run(request, [_Lines()], lambda: bool(stop))
    except PruneCancelled as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    except PruneRefusedError as exc:
        print("\n".join(exc.result.summary_lines()), file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
        return EXIT_OK
    print("\n".join(result.summary_lines()))
    print(f"saved the pruned model as a new run: {result.run_dir} (report {result.report_path})")
    return EXIT_OK
