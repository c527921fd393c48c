"""The CLI's exit codes, documented in the README: a script can tell every outcome apart."""

EXIT_OK = 0  # done (a run finished, or early stopping ended it)
EXIT_FAILED = 1  # a run (or an export, an evaluation …) started and failed; what was saved is kept
EXIT_BAD_INPUT = 2  # the input cannot be used (a recipe field, a path, a data folder, a checkpoint, a run in use)
EXIT_STOPPED = 3  # a run stopped on request (one Ctrl-C) with a checkpoint; `resume` continues it
EXIT_INTERRUPTED = 130  # a second Ctrl-C aborted
