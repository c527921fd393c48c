"""A run's events in words: the one place that turns an event into the lines a person reads, for the CLI's
console and the studio's log alike (so that a stop is described the same way in both).

`describe(event, total_epochs)` returns the lines for an event, or [] for events that are not narrated (batches
and progress reports are drawn as bars, not written as lines). What a run is doing right now, in the one line a
view redraws in place (the studio's progress line), is the `*_progress` functions' text.
"""

from __future__ import annotations

from pathlib import Path

from engine.train import events as ev


def seconds_text(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def duration_text(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def percent(fraction: float | None, digits: int = 1) -> str:
    return "–" if fraction is None else f"{100 * fraction:.{digits}f} %"


def size_text(num_bytes: float) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:,.1f} {unit}"
    return f"{int(num_bytes)} B"


def l2_text(strength: float) -> str:
    """An L2 strength as a person reads it: 0.01, 0.0032, 1e-05."""
    return f"{strength:.2g}"


def describe(event: ev.Event, total_epochs: int = 0) -> list[str]:
    handler = _NARRATORS.get(type(event))
    return handler(event, total_epochs) if handler else []


def _data_prepared(e: ev.DataPrepared, _total: int) -> list[str]:
    shown = ", ".join(e.classes[:8]) + (" …" if len(e.classes) > 8 else "")
    lines = [f"Data: {len(e.classes)} classes ({shown}), {e.train_size} training / {e.val_size} validation images"
             + (f"; {len(e.skipped)} unusable files skipped" if e.skipped else "")]
    lines += [f"  skipped {path}: {reason}" for path, reason in e.skipped[:20]]
    if len(e.skipped) > 20:
        lines.append(f"  … and {len(e.skipped) - 20} more (see skipped_files.txt in the run folder)")
    return lines


def _weights_loaded(e: ev.WeightsLoaded, _total: int) -> list[str]:
    return [f"Weights: {e.report}"]


def _temp_files_removed(e: ev.TempFilesRemoved, _total: int) -> list[str]:
    return [f"Removed {len(e.files)} temporary file(s) an interrupted write left in {e.run_dir}"]


def _run_started(e: ev.RunStarted, total: int) -> list[str]:
    verb = "Resuming" if e.resumed else "Starting"
    where = f", from epoch {e.start_epoch + 1}" + (f" batch {e.start_batch + 1}" if e.start_batch else "") \
        if e.resumed else ""
    lines = [f"{verb} '{e.name}' ({e.strategy}): {e.arch} with {e.weights} weights on {e.device}; "
             f"{e.total_epochs} epochs{where}", f"  run folder: {e.run_dir}"]
    if e.device_warning:
        lines.append(f"  warning: {e.device_warning}")
    return lines


def _distributed_started(e: ev.DistributedStarted, _total: int) -> list[str]:
    if e.world_size == 1:
        lines = [f"One process, batch {e.global_batch} per step"]
    else:
        scaled = f"; rates × {e.lr_factor:.3g} ({e.lr_scaling} scaling)" if e.lr_factor != 1 else ""
        sync = "; SyncBatchNorm" if e.sync_batchnorm else ""
        lines = [f"{e.world_size} processes ({e.backend}): batch {e.per_process_batch} per process = {e.global_batch} "
                 f"per step, {e.steps_per_epoch} steps per epoch{scaled}{sync}"]
    if e.note:
        lines.append(f"  note: {e.note}")
    return lines


def _phase_started(e: ev.PhaseStarted, _total: int) -> list[str]:
    share = 100 * e.trainable_params / max(1, e.total_params)
    trainable = f"trainable {e.trainable_params:,} of {e.total_params:,} parameters ({share:.2f} %)"
    if e.head_fit == "converge":
        return [f"Phase {e.phase_index + 1} '{e.name}' (the head fitted to convergence on cached features: "
                f"L-BFGS, L2 strength by cross-validation): {trainable}"]
    groups = ", ".join(f"{name} {lr:.1e}" for name, lr in e.groups.items())
    lines = [f"Phase {e.phase_index + 1} '{e.name}' ({e.epochs} epochs): {trainable}; lr {groups}"]
    if e.head_fit_note:
        lines.append(f"  the head is not fitted to convergence: {e.head_fit_note}; it trains for its epochs")
    return lines


def _cache_estimated(e: ev.DecodedCacheEstimated, _total: int) -> list[str]:
    return [e.message[:1].upper() + e.message[1:]]


def _cache_filled(e: ev.DecodedCacheFilled, _total: int) -> list[str]:
    line = f"Cached {e.images} decoded images in RAM ({e.bytes / 2**20:,.0f} MB, {seconds_text(e.seconds)})"
    if e.refused:
        line += f"; {e.refused} did not fit and are read from disk each epoch"
    return [line]


def _features_cached(e: ev.FeaturesCached, _total: int) -> list[str]:
    origin = "loaded from the disk cache" if e.from_disk else f"computed in {seconds_text(e.seconds)}"
    return [f"Phase {e.phase_index + 1} trains the head on cached backbone features: {e.images} images × "
            f"{e.views} view(s), {e.dim} features each ({origin})"]


def folds_text(e: ev.HeadFitted) -> str:
    """"5-fold", or "2 × 5-fold" for a cross-validation repeated with other shuffles."""
    return f"{e.repeats} × {e.folds}-fold" if e.repeats > 1 else f"{e.folds}-fold"


def _head_fitted(e: ev.HeadFitted, _total: int) -> list[str]:
    if e.folds:
        best = e.grid.index(e.l2)
        chosen = (f"won {folds_text(e)} cross-validation on the training features by {e.metric} (held-out accuracy "
                  f"{percent(e.cv_acc[best])}, loss {e.cv_loss[best]:.4f}; {len(e.grid)} strengths from "
                  f"{l2_text(e.grid[0])} to {l2_text(e.grid[-1])})")
    else:
        chosen = "is the default: a class has fewer than two training images, too few to cross-validate"
    state = "converged" if e.converged else "stopped at its iteration cap"
    calibrated = (f"; calibrated: logits ÷ {e.temperature:.2g} (held-out loss {e.cv_loss[e.grid.index(e.l2)]:.4f} → "
                  f"{e.calibrated_cv_loss:.4f})" if e.calibrated_cv_loss is not None and e.temperature != 1.0 else "")
    return [f"Fitted the head on {e.rows} training features in {seconds_text(e.seconds)}: L2 {l2_text(e.l2)} "
            f"{chosen}; L-BFGS {e.iterations} iterations ({state}), training loss {e.train_loss:.4f} accuracy "
            f"{percent(e.train_acc)}{calibrated}"]


def _epoch_finished(e: ev.EpochFinished, total: int) -> list[str]:
    if e.fit == "lbfgs":
        return [f"Epoch {e.epoch + 1}/{total} [{e.phase_name}] head fitted (L-BFGS, L2 {l2_text(e.l2)}): train "
                f"loss {e.train_loss:.4f} acc {percent(e.train_acc)} · val loss {e.val_loss:.4f} acc "
                f"{percent(e.val_acc)}{' · best so far' if e.is_best else ''} · {seconds_text(e.seconds)}"]
    lrs = " ".join(f"{k}={v:.2g}" for k, v in e.lrs.items())
    return [f"Epoch {e.epoch + 1}/{total} [{e.phase_name}] train loss {e.train_loss:.4f} acc {percent(e.train_acc)} · "
            f"val loss {e.val_loss:.4f} acc {percent(e.val_acc)}{' · best so far' if e.is_best else ''} · "
            f"{seconds_text(e.seconds)}, {e.images_per_s:.0f} images/s (data wait {100 * e.data_wait_share:.0f} %)"
            f" · lr {lrs}"]


def freeze_line(e: ev.FreezeVerified, phase_name: str = "") -> str:
    phase = f"phase {e.phase_index + 1}" + (f" '{phase_name}'" if phase_name else "")
    if e.moved:
        names = ", ".join(e.moved[:5]) + (f" (+{len(e.moved) - 5} more)" if len(e.moved) > 5 else "")
        return f"⚠ Frozen tensors changed in {phase}: {names}"
    if e.checked_tensors:
        return f"Freeze verified in {phase}: {e.checked_tensors} frozen tensors unchanged, bit for bit"
    return f"Nothing was frozen in {phase}"


def _freeze_verified(e: ev.FreezeVerified, _total: int) -> list[str]:
    return [freeze_line(e)]


def phase_results_text(results: list[dict]) -> str:
    """Each phase's final validation accuracy, in order: "head 92.5 % → head+layer4 87.5 % → all 90.0 %"; a phase
    that restored its best epoch: "all 87.5 % (kept epoch 1: 92.5 %)"."""
    def one(r: dict) -> str:
        kept = (f" (kept epoch {r['kept_epoch']}: {percent(r.get('kept_val_acc'))})"
                if r.get("kept_epoch") is not None else "")
        return f"{r.get('name')} {percent(r.get('final_val_acc'))}{kept}"

    return " → ".join(one(r) for r in results)


def restored_line(e: ev.BestRestored) -> str:
    """One line: a phase ended worse than the best epoch, and the run goes on from the best epoch's weights."""
    if e.metric == "val_loss":
        figures = f"validation loss {e.val_loss_last:.4g} against {e.val_loss_best:.4g}"
    else:
        figures = f"validation accuracy {percent(e.val_acc_last)} against {percent(e.val_acc_best)}"
    return (f"Phase {e.phase_index + 1} '{e.phase_name}' ended worse than epoch {e.best_epoch} ({figures}): "
            f"the model goes on with epoch {e.best_epoch}'s weights (restore_best)")


def _best_restored(e: ev.BestRestored, _total: int) -> list[str]:
    return [restored_line(e)]


def setback_line(e: ev.PhaseSetBack) -> str:
    """One line: which phase set the model back, by how much, against where it began."""
    phase = f"Phase {e.phase_index + 1} '{e.phase_name}'"
    if e.kind == "first_epoch":
        return (f"⚠ {phase} set the model back in its first epoch (epoch {e.epoch + 1}): training accuracy "
                f"{percent(e.train_acc_before)} → {percent(e.train_acc_after)} (loss {e.train_loss_before:.3g} → "
                f"{e.train_loss_after:.3g}), validation {percent(e.val_acc_before)} → {percent(e.val_acc_after)}, "
                f"against the end of '{e.previous_name}'")
    return (f"⚠ {phase} ended below where it began: its best validation accuracy {percent(e.val_acc_after)} is "
            f"under the {percent(e.val_acc_before)} '{e.previous_name}' reached (best.pt keeps the best epoch)")


def _phase_set_back(e: ev.PhaseSetBack, _total: int) -> list[str]:
    return [setback_line(e)] + [f"  likely: {cause}" for cause in e.causes]


def stop_line(e: ev.RunStopped) -> str:
    """Where a stopped run stands, in the words the CLI and the studio both use."""
    return f"Stopped in epoch {e.epoch + 1} after {e.batch} batch{'es' if e.batch != 1 else ''}"


def _run_stopped(e: ev.RunStopped, _total: int) -> list[str]:
    return [f"{stop_line(e)}; training time {duration_text(e.elapsed_seconds)}. Checkpoint: {e.checkpoint}"]


def finish_line(e: ev.RunFinished) -> str:
    verb = "Stopped early (no improvement)" if e.status == "early_stopped" else "Finished"
    best = f"best val accuracy {percent(e.best_val_acc)} (epoch {e.best_epoch})" if e.best_val_acc is not None else \
        "no epoch was a best"
    kept = ""
    if e.restored_epoch is not None:
        kept = f"; the model ends with epoch {e.restored_epoch}'s weights (restore_best), not epoch {e.epochs_done}'s"
    elif e.best_epoch is not None and e.final_val_acc is not None and e.best_epoch != e.epochs_done:
        best += f", final {percent(e.final_val_acc)} (epoch {e.epochs_done}; best.pt holds epoch {e.best_epoch})"
    return f"{verb}: {best} in {duration_text(e.elapsed_seconds)}{kept}"


def _run_finished(e: ev.RunFinished, _total: int) -> list[str]:
    best = Path(e.run_dir) / "checkpoints" / "best.pt"
    return [finish_line(e), f"  run folder: {e.run_dir}" + (f" (best checkpoint: {best})" if e.best_epoch else "")]


def _evaluation_written(e: ev.EvaluationWritten, _total: int) -> list[str]:
    flagged = f", {e.flagged} unlike the training data" if e.flagged else ""
    return [f"Evaluated the best checkpoint on {e.count} validation images: accuracy {percent(e.accuracy)}, "
            f"top-{e.top_k} {percent(e.top_k_accuracy)}{flagged} ({seconds_text(e.seconds)}); {e.path}"]


def _run_failed(e: ev.RunFailed, _total: int) -> list[str]:
    kept = f"; last checkpoint kept: {e.checkpoint}" if e.checkpoint else ""
    return [f"Run failed: {e.error}{kept}"]


# --- the progress line: redrawn in place while the run goes on ---------------------------------------------------
def starting_progress(start_epoch: int, total_epochs: int) -> str:
    return f"Epoch {start_epoch + 1}/{total_epochs} · starting"


def batch_progress(e: ev.BatchFinished, total_epochs: int, images_per_s: float | None,
                   eta_seconds: float | None) -> str:
    """None for a rate or an ETA not measured yet ("…")."""
    rate = "…" if images_per_s is None else f"{images_per_s:.0f}"
    return (f"Epoch {e.epoch + 1}/{total_epochs} · batch {e.batch + 1}/{e.batches} · {rate} images/s · "
            f"ETA {_eta_text(eta_seconds)}")


def head_fit_progress(e: ev.HeadFitProgressed, total_epochs: int, eta_seconds: float | None) -> str:
    """A head being fitted: the cross-validation's fits (the final fit is the last of `total`), then L-BFGS."""
    if e.fold:
        what = f"cross-validation fit {e.done}/{e.total - 1} (fold {e.fold}, L2 {l2_text(e.l2)})"
    else:
        what = f"final fit (L2 {l2_text(e.l2)}), L-BFGS iteration {e.iteration}, loss + penalty {e.objective:.4f}"
    return f"Epoch {e.epoch + 1}/{total_epochs} · fitting the head: {what} · ETA {_eta_text(eta_seconds)}"


def download_progress(e: ev.WeightsDownloadProgress) -> str:
    done, total = e.done_bytes / 1e6, e.total_bytes / 1e6
    amount = f"{done:.1f} / {total:.1f} MB" if total else f"{done:.1f} MB"
    return f"Downloading {e.weights}: {amount}"


def features_progress(e: ev.FeaturesProgressed) -> str:
    return f"Computing the frozen backbone's features (phase {e.phase_index + 1}): {e.done}/{e.total}"


def _eta_text(seconds: float | None) -> str:
    return "…" if seconds is None else duration_text(seconds)


_NARRATORS = {
    ev.DataPrepared: _data_prepared, ev.WeightsLoaded: _weights_loaded, ev.TempFilesRemoved: _temp_files_removed,
    ev.RunStarted: _run_started, ev.DistributedStarted: _distributed_started,
    ev.PhaseStarted: _phase_started, ev.DecodedCacheEstimated: _cache_estimated,
    ev.DecodedCacheFilled: _cache_filled, ev.FeaturesCached: _features_cached, ev.HeadFitted: _head_fitted,
    ev.EpochFinished: _epoch_finished, ev.PhaseSetBack: _phase_set_back, ev.BestRestored: _best_restored,
    ev.FreezeVerified: _freeze_verified, ev.RunStopped: _run_stopped, ev.RunFinished: _run_finished,
    ev.RunFailed: _run_failed, ev.EvaluationWritten: _evaluation_written,
}
