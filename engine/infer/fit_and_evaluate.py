"""A run, then its evaluation: how the CLI (`train`, `resume`, each rank under torchrun) and the studio's training
worker both train, so that what follows a finished run has one rule.

* **When**: the run finished, or stopped early; a stopped or failed run is not evaluated (its best checkpoint may be
  from an unfinished phase).
* **Where**: on the device the run trained on (the trainer's own DeviceSetup: under torchrun, this rank's GPU), by
  rank 0 only — the one writer of a run over several processes.
* **Who hears it**: EvaluationWritten goes out on the run's own event bus, after RunFinished, so every subscriber
  (the console, a launcher's event stream, the studio's worker, TensorBoard, the run folder) hears it as it heard
  the run.

It lives here, not in engine/train: training never depends on evaluation (the engine's layers, pyproject.toml).
"""

from __future__ import annotations

import logging

from engine.infer.evaluation import RunEvaluator
from engine.train.trainer import RunResult, Trainer

log = logging.getLogger(__name__)

EVALUATED = ("finished", "early_stopped")  # RunResult statuses whose best checkpoint is evaluated


def fit_and_evaluate(trainer: Trainer) -> RunResult:
    """`trainer.fit()`, then — for a run that finished — its best checkpoint evaluated on the validation split
    (evaluation.json, the out-of-distribution calibration, the weight drift), announced on the run's bus. A run
    that cannot be evaluated is still the run it was: the reason is logged, the result returned unchanged."""
    result = trainer.fit()
    if result.status not in EVALUATED or not trainer.dist.is_main:
        return result
    evaluator = RunEvaluator(trainer.setup.device.device, emit=trainer.bus.emit)
    try:
        evaluator.evaluate(result.run_dir)
    except Exception:  # noqa: BLE001 - a finished run stays finished whatever its evaluation does
        log.exception("the run %s was trained but its evaluation failed", result.run_dir)
    return result
