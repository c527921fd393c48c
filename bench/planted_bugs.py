"""Hand-planted bugs: the edits a careless change would make where Thaw keeps a promise, each with the tests that
must catch it (docs/TESTING.md lists them). Not part of `make test`: it edits the source, runs the named tests, and
restores the file, one bug at a time.

    .venv/bin/python bench/planted_bugs.py              # every bug: planted, tests run, caught or not, restored
    .venv/bin/python bench/planted_bugs.py 3 17         # bugs 3 and 17 only
    .venv/bin/python bench/planted_bugs.py --list       # the table

A bug is one textual edit (`old` → `new`, which must occur exactly once in its file). It counts as caught when the
tests fail with it planted; each bug's tests are also run without it first (`--check-clean`) to be sure they pass.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    file: str
    function: str
    what: str  # the edit in words
    old: str
    new: str
    tests: tuple[str, ...]


HEAD_FIT = "tests/engine/test_promises_head_fit.py"
STOPPING = "tests/engine/test_promises_stopping.py"
ANALYSES = "tests/engine/test_promises_analyses.py"
ESTIMATE = "tests/engine/test_promises_estimate.py"
CHECKS = "tests/engine/test_promises_input_checks.py"
DATA = "tests/engine/test_promises_data.py"
SOURCES = "tests/engine/test_data_sources.py"
DOWNLOAD = "tests/engine/test_download.py"
CLI_DATASETS = "tests/engine/test_cli_datasets.py"
DIALOG = "tests/gui/test_dataset_dialog.py"
ADVISE = "tests/engine/test_advise.py"
COMPARE = "tests/engine/test_compare_models.py"
ADVICE_GUI = "tests/gui/test_advisor_dialogs.py"
PRUNE = "tests/engine/test_prune.py"
RELABEL = "tests/engine/test_relabel.py"
RELABEL_GUI = "tests/gui/test_relabel_in_app.py"
VIDEO = "tests/engine/test_predict_video.py"
LIVE = "tests/gui/test_live_preview.py"
CAPTURE = "tests/gui/test_capture_page.py"
PRETRAIN = "tests/engine/test_pretrain.py"
PRETRAIN_GUI = "tests/gui/test_pretrain_dialog.py"
RESTORE = "tests/engine/test_restore_best.py"
PAUSED = "tests/engine/test_promises_paused_time.py::test_an_hour_of_pause_is_in_no_time_or_rate_of_any_kind_of_phase"

BUGS: list[Bug] = [
    Bug("engine/train/loop.py", "fit_head_epoch", "the pause during a fit not taken off the run's clock",
        "        clock.add_pause(waited)\n        paused[0] += waited",
        "        paused[0] += waited",
        (f"{PAUSED}[fitted head]",)),
    Bug("engine/train/loop.py", "fit_head_epoch", "the pause during a fit counted in the fit's seconds",
        "        paused[0] += waited\n", "",
        (f"{PAUSED}[fitted head]",)),
    Bug("engine/train/loop.py", "train_one_epoch", "a batch's time includes the pause before it",
        "        step_seconds = now - tick - paused", "        step_seconds = now - tick",
        (f"{PAUSED}[cached-feature epochs]", f"{PAUSED}[image epochs]")),
    Bug("engine/train/head_fit.py", "stratified_folds", "each class dealt from fold 0 (no offset): unequal folds",
        "        offset += len(members)  # the next class's first sample goes to the next fold: balanced fold sizes\n",
        "",
        (f"{HEAD_FIT}::test_every_image_is_in_one_fold_and_the_folds_are_balanced",)),
    Bug("engine/train/head_fit.py", "stratified_folds", "a class's samples dealt in file order, not shuffled",
        "        members = members[torch.randperm(len(members), generator=generator)]\n", "",
        (f"{HEAD_FIT}::test_the_folds_are_a_shuffle_drawn_from_the_generator",)),
    Bug("engine/train/head_fit.py", "_fit", "every repeat reuses the first repeat's shuffle",
        "            if fold % folds == 0:  # a new shuffle for each repeat",
        "            if fold == 0:  # a new shuffle for each repeat",
        (f"{HEAD_FIT}::test_each_repeat_draws_its_own_shuffle_and_the_scores_pool_every_repeat",)),
    Bug("engine/train/head_fit.py", "_fit", "the scores of several repeats summed, not averaged",
        "        cv_loss = [v / (repeats * len(rows)) for v in cv_loss]",
        "        cv_loss = [v / len(rows) for v in cv_loss]",
        (f"{HEAD_FIT}::test_each_repeat_draws_its_own_shuffle_and_the_scores_pool_every_repeat",)),
    Bug("engine/train/head_fit.py", "_fit", "the views of an image spread over other folds (repeat_interleave)",
        "fold_of = fold_of.to(train.device).repeat(views)",
        "fold_of = fold_of.to(train.device).repeat_interleave(views)",
        (f"{HEAD_FIT}::test_every_view_of_an_image_is_held_out_with_it",)),
    Bug("engine/train/head_fit.py", "_best", "val_loss read in the wrong direction (the highest loss wins)",
        "    score = [-loss for loss in cv_loss] if metric == \"val_loss\" else cv_acc",
        "    score = [loss for loss in cv_loss] if metric == \"val_loss\" else cv_acc",
        (f"{HEAD_FIT}::test_the_strength_chosen_is_the_best_in_the_metrics_own_direction",)),
    Bug("engine/train/stopping.py", "EarlyStopping.update", "the score's sign dropped: a higher val_loss is better",
        "        score = value if self.mode == \"max\" else -value", "        score = value",
        (f"{STOPPING}::test_val_loss_is_better_when_lower_and_val_acc_when_higher",
         f"{STOPPING}::test_best_pt_holds_the_best_epoch_by_the_monitored_metric")),
    Bug("engine/train/stopping.py", "EarlyStopping.update", "patience not reset by a new best",
        "            self.best_score, self.bad_epochs = score, 0", "            self.best_score = score",
        (f"{STOPPING}::test_patience_counts_the_epochs_since_the_last_best",)),
    Bug("engine/train/stopping.py", "EarlyStopping.update", "an equal score counts as a new best",
        "score > self.best_score + self.config.min_delta", "score >= self.best_score + self.config.min_delta",
        (f"{STOPPING}::test_val_loss_is_better_when_lower_and_val_acc_when_higher",)),
    Bug("engine/train/stopping.py", "EarlyStopping.load_state_dict", "a resumed run forgets the epochs without a best",
        "        self.bad_epochs = int(state.get(\"bad_epochs\", 0))", "        self.bad_epochs = 0",
        (f"{STOPPING}::test_patience_counts_the_epochs_since_the_last_best",)),
    Bug("engine/train/trainer.py", "Trainer._end_epoch", "a plateau schedule always reads val_acc",
        "            phase.schedule.step_epoch(stopping.monitored(val_loss, val_acc))",
        "            phase.schedule.step_epoch(val_acc)",
        (f"{STOPPING}::test_a_plateau_schedule_reads_the_monitored_metric_in_its_direction",)),
    Bug("engine/train/trainer.py", "Trainer._train", "a phase's plateau schedule always maximises",
        "            phase = ActivePhase.begin(setup, index, stopping.mode, previous, resuming)",
        "            phase = ActivePhase.begin(setup, index, \"max\", previous, resuming)",
        (f"{STOPPING}::test_a_plateau_schedule_reads_the_monitored_metric_in_its_direction",)),
    Bug("engine/infer/label_issues.py", "find_run_label_issues", "--backbone trained still uses the pretrained one",
        "    built = start_model(checkpoint) if backbone == \"start\" else trained_model(checkpoint)",
        "    built = start_model(checkpoint)",
        (f"{ANALYSES}::test_label_issues_use_the_backbone_they_are_asked_for",)),
    Bug("engine/infer/network_view.py", "NetworkViews.start", "the 'pretrained' side built from the checkpoint",
        "    def start(self) -> BuiltModel:\n        return start_model(self.checkpoint)",
        "    def start(self) -> BuiltModel:\n        return trained_model(self.checkpoint)",
        (f"{ANALYSES}::test_network_views_show_the_pretrained_and_the_fine_tuned_model",)),
    Bug("engine/infer/network_view.py", "NetworkViews.feature_maps", "the fine-tuned maps drawn from the start model",
        "                stage_feature_maps(self.trained.model, self.trained.stages, tensor, stage))",
        "                stage_feature_maps(self.start.model, self.trained.stages, tensor, stage))",
        (f"{ANALYSES}::test_network_views_show_the_pretrained_and_the_fine_tuned_model",)),
    Bug("engine/infer/drift.py", "run_weight_drift", "drift measured from the checkpoint's own weights",
        "    return weight_drift(trained.model, dict(start.model.named_parameters()), trained.stages)",
        "    return weight_drift(trained.model, dict(trained.model.named_parameters()), trained.stages)",
        (f"{ANALYSES}::test_drift_runs_from_the_pretrained_file_to_the_checkpoint",)),
    Bug("engine/infer/evaluation.py", "evaluate_checkpoint", "the OOD score calibrated on the pretrained features",
        "            predictor.ood = _calibrate(checkpoint, data, built, device, notes)",
        "            predictor.ood = _calibrate(checkpoint, data, start_model(checkpoint), device, notes)",
        (f"{ANALYSES}::test_the_ood_calibration_is_fitted_on_the_fine_tuned_features",)),
    Bug("engine/infer/evaluation.py", "evaluate_checkpoint", "the class check compares counts, not names",
        "        if list(data.classes) != checkpoint.class_names:\n            raise BadInputError(f\"the run's "
        "data folder now holds the classes {', '.join(data.classes)}, the \"",
        "        if len(data.classes) != len(checkpoint.class_names):\n            raise BadInputError(f\"the run's "
        "data folder now holds the classes {', '.join(data.classes)}, the \"",
        (f"{ANALYSES}::test_evaluation_and_label_issues_refuse_a_data_folder_whose_classes_changed",
         f"{ANALYSES}::test_the_cli_refuses_it_in_one_line_with_exit_2")),
    Bug("engine/infer/label_issues.py", "find_run_label_issues", "the class check compares counts, not names",
        "    if list(data.classes) != checkpoint.class_names:",
        "    if len(data.classes) != len(checkpoint.class_names):",
        (f"{ANALYSES}::test_evaluation_and_label_issues_refuse_a_data_folder_whose_classes_changed",
         f"{ANALYSES}::test_the_cli_refuses_it_in_one_line_with_exit_2")),
    Bug("engine/train/estimate.py", "_feature_phase", "an epoch on cached features costs one head step",
        "        train = _head_step_seconds(phase, x, y) * steps", "        train = _head_step_seconds(phase, x, y)",
        (f"{ESTIMATE}::test_a_head_trained_in_epochs_on_cached_features_costs_the_pass_once_then_every_epoch",)),
    Bug("engine/train/estimate.py", "_feature_phase", "a head trained in epochs on features counted as one epoch",
        "    cost = PhaseCost(phase.index, phase.config.name, kind, epochs, steps,",
        "    cost = PhaseCost(phase.index, phase.config.name, kind, 1, steps,",
        (f"{ESTIMATE}::test_the_estimates_epochs_and_steps_are_the_runs",
         f"{ESTIMATE}::test_a_head_trained_in_epochs_on_cached_features_costs_the_pass_once_then_every_epoch")),
    Bug("engine/train/estimate.py", "_feature_phase", "the feature pass over one view whatever feature_views says",
        "    images = views * len(train_set) + len(setup.data.val)",
        "    images = len(train_set) + len(setup.data.val)",
        (f"{ESTIMATE}::test_a_head_trained_in_epochs_on_cached_features_costs_the_pass_once_then_every_epoch",)),
    Bug("engine/train/estimate.py", "_fit_seconds", "the fit's cross-validation repeats not counted",
        "    return cv * settings.repeats * folds * len(settings.grid)",
        "    return cv * folds * len(settings.grid)",
        (f"{ESTIMATE}::test_a_fitted_head_costs_its_cross_validation_and_final_fit_once",)),
    Bug("engine/train/estimate.py", "estimate_run", "features of an earlier phase reused after the backbone trained",
        "            features_ready = False  # the backbone trains: a later head-only phase computes features again\n",
        "",
        (f"{ESTIMATE}::test_a_later_head_only_phase_after_the_backbone_trained_computes_its_features_again",)),
    Bug("engine/recipe.py", "Recipe.validate", "too few extra-channel statistics accepted",
        "            if values and len(values) != n_extra:", "            if values and len(values) > n_extra:",
        (f"{CHECKS}::test_extra_channel_statistics_have_one_value_per_extra_channel",)),
    Bug("engine/recipe.py", "OptimizerConfig.validate", "Nesterov accepted without momentum (torch refuses later)",
        "        if self.nesterov and (self.name != \"sgd\" or self.momentum == 0):",
        "        if self.nesterov and self.name != \"sgd\":",
        (f"{CHECKS}::test_nesterov_needs_momentum_too",)),
    Bug("engine/recipe.py", "HeadConfig", "a dropout of 1 (the head sees only zeros) accepted",
        "    dropout: float = number(0.0, 0, 1, high_open=True)", "    dropout: float = number(0.0, 0, 1)",
        (f"{CHECKS}::test_each_rule_refuses_its_bad_value_naming_the_field",)),
    Bug("engine/recipe.py", "check_distributed_device", "'cuda:0' shared by several processes accepted",
        "    if device.startswith(\"cuda:\"):", "    if device.startswith(\"cuda:\") and device != \"cuda:0\":",
        (f"{CHECKS}::test_several_processes_refuse_a_device_they_cannot_share",)),
    Bug("engine/recipe.py", "PhaseConfig.validate", "two groups of one name accepted",
        "            names.add(group.name)\n", "",
        (f"{CHECKS}::test_each_rule_refuses_its_bad_value_naming_the_field",)),
    Bug("engine/recipe.py", "DataConfig", "val_fraction 0 (no validation images) accepted",
        "    val_fraction: float = number(0.2, 0, 1, True, True)", "    val_fraction: float = number(0.2, 0, 1)",
        (f"{CHECKS}::test_each_rule_refuses_its_bad_value_naming_the_field",)),
    Bug("engine/data/datasets.py", "stratified_split", "the split follows the file system's listing order",
        "        items = sorted(by_class[label])", "        items = list(by_class[label])",
        (f"{DATA}::test_the_split_does_not_depend_on_the_order_files_are_listed",)),
    Bug("engine/data/datasets.py", "stratified_split", "a small class left out of validation",
        "            n_val = min(max(1, n_val), len(items) - 1)", "            n_val = min(n_val, len(items) - 1)",
        (f"{DATA}::test_every_class_of_two_images_or_more_is_in_both_splits",)),
    Bug("engine/data/datasets.py", "sample_seed", "one augmentation draw shared by every sample of an epoch",
        "    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729) % (2**63 - 1)",
        "    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)",
        (f"{DATA}::test_each_sample_draws_its_own_augmentation",)),
    Bug("engine/data/datasets.py", "prepare_data", "validation images augmented like training images",
        "                        ImageFiles(val, eval_transform, channels, seed),",
        "                        ImageFiles(val, train_transform, channels, seed),",
        (f"{DATA}::test_validation_images_are_never_augmented",)),
    Bug("engine/data/datasets.py", "check_same_classes", "a resumed run's classes compared by count only",
        "    if list(found) != list(expected):", "    if len(found) != len(expected):",
        ("tests/engine/test_hostile_cli.py::"
         "test_resume_is_refused_while_another_process_trains_the_run_and_follows_a_moved_data_folder",)),
    # issue 23: data sources and downloads
    Bug("engine/data/sources/torchvision_sets.py", "caltech101_files", "Caltech-101's file numbers off by one",
        'f"image_{i:04d}.jpg"', 'f"image_{i + 1:04d}.jpg"',
        (f"{SOURCES}::test_a_set_without_an_official_split_is_split_per_class_and_seeded[Caltech101]",)),
    Bug("engine/data/sources/torchvision_sets.py", "caltech256_classes", "Caltech-256's class names keep '001.'",
        '    return [c.split(".", 1)[1] if "." in c else c for c in base.categories]',
        "    return list(base.categories)",
        (f"{SOURCES}::test_a_set_without_an_official_split_is_split_per_class_and_seeded[Caltech256]",)),
    Bug("engine/data/sources/catalogue.py", "SOURCES", "Food-101 trains on its test split and validates on train",
        'Reader("Food101", "split", ("train", "test")', 'Reader("Food101", "split", ("test", "train")',
        (f"{SOURCES}::test_a_set_with_an_official_split_trains_on_its_first_and_validates_on_its_second[Food101]",)),
    Bug("engine/data/sources/catalogue.py", "SOURCES", "Flowers-102 validates on its held-out test split",
        'Reader("Flowers102", "split", ("train", "val")', 'Reader("Flowers102", "split", ("train", "test")',
        (f"{SOURCES}::test_a_set_with_an_official_split_trains_on_its_first_and_validates_on_its_second"
         "[Flowers102]",)),
    Bug("engine/data/datasets.py", "prepare_data", "a set without an official split validates on its training images",
        "            train, val = stratified_split(train, config.val_fraction, config.split_seed)",
        "            val = train",
        (f"{SOURCES}::test_a_set_without_an_official_split_is_split_per_class_and_seeded",)),
    Bug("engine/data/datasets.py", "prepare_data", "a source's split ignores data.split_seed",
        "            train, val = stratified_split(train, config.val_fraction, config.split_seed)",
        "            train, val = stratified_split(train, config.val_fraction, 0)",
        (f"{SOURCES}::test_a_set_without_an_official_split_is_split_per_class_and_seeded",)),
    Bug("engine/data/sources/torchvision_sets.py", "_verified", "a torchvision set's files not verified",
        "    usable = [s for s, reason in zip(samples, reasons) if reason is None]", "    usable = list(samples)",
        (f"{SOURCES}::test_a_file_set_with_an_unreadable_image_lists_it_and_trains_on_the_rest",)),
    Bug("engine/recipe.py", "DataConfig.validate", "an unknown data.dataset accepted by the recipe",
        "        if self.dataset not in BUILTIN_DATASETS:", "        if False:",
        (f"{SOURCES}::test_a_bad_name_is_refused_naming_the_field_and_the_known_names",)),
    Bug("engine/data/fetch.py", "fetch", "a resumed download asks for the whole file again",
        '        headers["Range"] = f"bytes={have}-"\n', "",
        (f"{DOWNLOAD}::test_an_interrupted_fetch_resumes_with_a_range_request",)),
    Bug("engine/data/fetch.py", "_copy", "a resumed download overwrites the bytes it had",
        '        with open(part, "ab" if have else "wb") as out:', '        with open(part, "wb") as out:',
        (f"{DOWNLOAD}::test_an_interrupted_fetch_resumes_with_a_range_request",)),
    Bug("engine/data/fetch.py", "fetch", "a server that ignores Range: its whole file appended to the part",
        "        if not resumed:\n            have = 0", "        if False:\n            have = 0",
        (f"{DOWNLOAD}::test_a_server_that_ignores_range_sends_the_whole_file_again",)),
    Bug("engine/data/fetch.py", "fetch", "THAW_OFFLINE ignored",
        "    if offline():\n        raise OfflineError(f\"offline (THAW_OFFLINE",
        "    if False:\n        raise OfflineError(f\"offline (THAW_OFFLINE",
        (f"{DOWNLOAD}::test_offline_names_the_url_and_where_to_put_the_archive", f"{CLI_DATASETS}::"
         "test_download_offline_exits_2_in_one_line_naming_the_url_and_the_place")),
    Bug("engine/data/download.py", "_one", "the checksum not verified",
        "    if archive.md5:\n        try:", "    if False:\n        try:",
        (f"{DOWNLOAD}::test_a_damaged_archive_is_refused_by_name_and_fetched_again_next_time",
         f"{DOWNLOAD}::test_a_foreign_archive_the_user_brings_is_refused_and_kept")),
    Bug("engine/data/download.py", "_one", "a damaged archive Thaw fetched is kept (and refused forever after)",
        "                path.unlink(missing_ok=True)  # ours: the next try fetches it again\n", "",
        (f"{DOWNLOAD}::test_a_damaged_archive_is_refused_by_name_and_fetched_again_next_time",)),
    Bug("engine/data/download.py", "download_source", "no free-space check",
        "    check_free_space(source, root, archives, pending)\n", "",
        (f"{DOWNLOAD}::test_a_set_that_does_not_fit_is_refused_before_a_byte_is_fetched",)),
    Bug("engine/data/unpack.py", "member_problem", "'..' in a member's name allowed",
        '    if ".." in parts:', "    if False:",
        (f"{DOWNLOAD}::test_an_archive_that_would_write_outside_the_root_is_refused_whole",
         f"{DOWNLOAD}::test_a_zip_member_with_dotdot_is_refused")),
    Bug("engine/data/unpack.py", "member_problem", "a link pointing up out of the folder allowed",
        '    if target == ".." or target.startswith("../"):', "    if False:",
        (f"{DOWNLOAD}::test_an_archive_that_would_write_outside_the_root_is_refused_whole",)),
    Bug("engine/data/unpack.py", "unpack", "extraction straight into the folder: an interrupted one leaves half a set",
        "            _extract_tar(archive, staging, should_stop)",
        "            _extract_tar(archive, dest, should_stop)",
        (f"{DOWNLOAD}::test_an_interrupted_extraction_leaves_nothing_half_written",)),
    Bug("engine/data/download.py", "_one", "a stop request not heard while unpacking",
        "    unpack(path, folder, archive.unpack, should_stop)", "    unpack(path, folder, archive.unpack)",
        (f"{DOWNLOAD}::test_a_stop_during_unpacking_keeps_the_archive_and_the_next_try_finishes",)),
    Bug("engine/data/download.py", "_one", "an archive Thaw fetched before a stop is taken for the user's own",
        "    brought = path.is_file() and not ours.exists()", "    brought = path.is_file()",
        (f"{DOWNLOAD}::test_a_stop_during_unpacking_keeps_the_archive_and_the_next_try_finishes",)),
    Bug("engine/data/download.py", "download_source", "an unwritable root raises its OSError (a traceback)",
        "    except OSError as exc:  # a root that cannot",
        "    except ZeroDivisionError as exc:  # a root that cannot",
        (f"{DOWNLOAD}::test_a_root_that_cannot_be_written_is_one_line_not_a_traceback",)),
    Bug("engine/cli/datasets.py", "cmd_download", "Ctrl-C during a download: exit 130 and no word on resuming",
        "    except (KeyboardInterrupt, DownloadStopped) as exc:", "    except DownloadStopped as exc:",
        (f"{CLI_DATASETS}::test_ctrl_c_during_a_download_exits_3_and_says_how_to_resume",)),
    Bug("gui/dataset_dialog.py", "DatasetDialog.cancel_download", "Cancel does not reach the worker",
        "            self._worker.cancel()\n", "",
        (f"{DIALOG}::test_cancel_stops_the_download_and_keeps_what_was_fetched",)),
    # issue 23 items 3-4: the strategy advisor and compare-models
    Bug("engine/advise/advisor.py", "advise", "a shift exactly at the line counts as near",
        "far = shift is not None and shift >= rules.far_shift", "far = shift is not None and shift > rules.far_shift",
        (f"{ADVISE}::test_a_far_domain_means_fine_tuning_a_near_one_with_small_data_feature_extraction",)),
    Bug("engine/advise/advisor.py", "advise", "the median class decides instead of the smallest",
        "smallest, classes = probe.smallest_class, len(probe.classes)",
        "smallest, classes = int(probe.median_per_class), len(probe.classes)",
        (f"{ADVISE}::test_the_smallest_class_decides_not_the_typical_one",)),
    Bug("engine/advise/advisor.py", "advise", "ten images in a far domain sent to pre-training",
        "elif far and smallest < rules.few_per_class:", "elif far and smallest <= rules.few_per_class:",
        (f"{ADVISE}::test_a_far_domain_with_a_handful_of_images_means_domain_pretraining",)),
    Bug("engine/advise/advisor.py", "advise", "the size rule reads the median class",
        "elif smallest >= rules.many_per_class:", "elif probe.median_per_class >= rules.many_per_class:",
        (f"{ADVISE}::test_the_smallest_class_decides_not_the_typical_one",)),
    Bug("engine/advise/advisor.py", "advise", "the reasons lose the measured CV accuracy",
        "(f\"the frozen {probe.arch} features with a fitted head: {_pct(cv)} cross-validated",
        "(f\"the frozen {probe.arch} features with a fitted head: cross-validated",
        (f"{ADVISE}::test_advise_json_holds_the_strategy_reasons_with_the_measured_numbers",)),
    Bug("engine/advise/domain_shift.py", "measure_domain_shift", "the head's BatchNorm counted as the backbone's",
        "and not covers(head_path, name)]", "]",
        (f"{ADVISE}::test_the_heads_batchnorm_is_not_the_backbones_and_a_model_without_one_has_no_shift",)),
    Bug("engine/advise/domain_shift.py", "measure_domain_shift", "measured in train mode: the statistics move",
        "    model.eval()  # running statistics are read, never updated\n", "",
        (f"{ADVISE}::test_the_domain_shift_is_zero_on_the_pretraining_statistics_and_grows_with_the_shift",)),
    Bug("engine/advise/domain_shift.py", "gaussian_kl", "the mean difference not squared",
        "(var_p + (mean_p - mean_q) ** 2) / var_q", "(var_p + (mean_p - mean_q)) / var_q",
        (f"{ADVISE}::test_the_shift_of_a_channel_is_the_kl_divergence_of_two_gaussians",)),
    Bug("engine/advise/probe.py", "run_probe", "the shift measured on as many images as the validation split has",
        "indices = evenly_spaced(len(data.train), settings.shift_images)",
        "indices = evenly_spaced(len(data.val), settings.shift_images)",
        (f"{ADVISE}::test_the_probe_measures_the_data_and_the_frozen_features",)),
    Bug("engine/advise/compare.py", "compare_models", "no local-weights check: a missing model is downloaded",
        "        if not path.is_file():\n", "        if False:\n",
        (f"{COMPARE}::test_compare_models_measures_local_models_and_lists_the_others_without_downloading",)),
    Bug("engine/advise/compare.py", "pareto_front", "an equal model beats another on the Pareto front",
        "and (o.cv_accuracy > r.cv_accuracy or o.latency_ms < r.latency_ms)", "",
        (f"{COMPARE}::test_the_pareto_front_is_the_models_nothing_beats_on_accuracy_and_latency",)),
    Bug("engine/advise/compare.py", "CompareSettings", "cached features: no feature-extraction time measured",
        "ProbeSettings(measure_shift=False, reuse_features=False)", "ProbeSettings(measure_shift=False)",
        (f"{COMPARE}::test_the_feature_pass_is_timed_even_when_its_features_are_cached",)),
    Bug("engine/cli/compare_models.py", "cmd_compare_models", "Ctrl-C: exit 0 as if every model was measured",
        "    if comparison.stopped:\n", "    if False:\n",
        (f"{COMPARE}::test_ctrl_c_exits_3_and_keeps_the_models_measured_so_far",)),
    Bug("engine/cli/advise.py", "cmd_advise", "Ctrl-C during the probe: a traceback instead of exit 3",
        "    if probe is None:\n", "    if False:\n",
        (f"{ADVISE}::test_ctrl_c_during_the_probe_exits_3_without_advice",)),
    Bug("gui/compare_models_dialog.py", "CompareModelsDialog.selected_arch", "Use in recipe takes the first row",
        "row = self.comparison.rows[rows[0].row()]", "row = self.comparison.rows[0]",
        (f"{ADVICE_GUI}::test_the_comparison_fills_the_table_and_the_plot_and_puts_the_chosen_model_into_the_recipe",)),
    Bug("gui/measure_dialog.py", "MeasureDialog.cancel", "Cancel does not reach the worker",
        "            self._worker.cancel()\n", "            pass\n",
        (f"{ADVICE_GUI}::test_cancel_stops_the_comparison_and_leaves_no_thread",
         f"{ADVICE_GUI}::test_cancelling_the_advisor_gives_no_advice_and_leaves_no_thread")),
    Bug("gui/advisor_dialog.py", "AdvisorDialog.apply", "Apply leaves the recipe as it was",
        "self.document.edit(lambda recipe: apply_strategy(recipe, preset))", "pass",
        (f"{ADVICE_GUI}::test_the_advisor_shows_its_reasons_and_applies_its_preset_in_one_click",)),
    Bug("gui/compare_models_dialog.py", "run_comparison", "the ONNX box not passed on: no ONNX figure",
        "compare_models(recipe, archs, CompareSettings(onnx=onnx),", "compare_models(recipe, archs, CompareSettings(),",
        (f"{ADVICE_GUI}::test_onnx_latency_is_measured_when_asked",)),
    # issue 25 item 3: pruning
    Bug("engine/train/checkpoints.py", "model_of_checkpoint", "a pruned checkpoint's structure not re-applied",
        '    apply_structure(built.model, state.get(PRUNING_KEY), f"checkpoint {source}")\n', "",
        (f"{PRUNE}::test_the_structure_round_trips_through_the_checkpoint_without_pickle",
         f"{PRUNE}::test_predict_and_evaluate_use_the_pruned_model")),
    Bug("engine/infer/run_checkpoint.py", "trained_model", "the analyses' model built without the pruned structure",
        '    apply_structure(built.model, checkpoint.pruning, f"checkpoint {checkpoint.path}")  # a pruned run\'s '
        'channels\n', "",
        (f"{PRUNE}::test_the_pruned_run_lost_the_channels_asked_for_and_the_head_keeps_its_classes",
         f"{PRUNE}::test_predict_and_evaluate_use_the_pruned_model")),
    Bug("engine/infer/pruning.py", "prune_channels", "the head pruned like any layer (it loses classes)",
        "ignored_layers=_head_modules(model, head_path)", "ignored_layers=[]",
        (f"{PRUNE}::test_the_pruned_run_lost_the_channels_asked_for_and_the_head_keeps_its_classes",)),
    Bug("engine/infer/pruning.py", "check_amount", "--amount 0 and 1 accepted",
        "    if not 0.0 < value < 1.0:", "    if not 0.0 <= value <= 1.0:",
        (f"{PRUNE}::test_a_bad_amount_is_refused_in_one_line",)),
    Bug("engine/infer/pruning.py", "check_amount", "--amount nan accepted (a comparison that nan passes)",
        "    if not 0.0 < value < 1.0:", "    if value <= 0.0 or value >= 1.0:",
        (f"{PRUNE}::test_a_bad_amount_is_refused_in_one_line",)),
    Bug("engine/infer/pruning.py", "require_torch_pruning", "a missing torch-pruning not checked (a traceback)",
        '    if importlib.util.find_spec("torch_pruning") is None:', "    if False:",
        (f"{PRUNE}::test_without_torch_pruning_one_line_names_the_package",)),
    Bug("engine/model/pruned_structure.py", "capture_structure", "the size attributes not stored (only the shapes)",
        "                ints[name] = value\n", "                pass\n",
        (f"{PRUNE}::test_the_structure_round_trips_through_the_checkpoint_without_pickle",)),
    Bug("engine/infer/prune_run.py", "_Prune.prune_and_keep", "a pruned model kept whatever it lost",
        "            kept=drop <= r.max_drop,", "            kept=True,",
        (f"{PRUNE}::test_a_model_that_lost_more_than_max_drop_is_refused_leaving_only_the_report",)),
    Bug("engine/infer/prune_run.py", "_Prune.write_run", "the torch module pickled into the checkpoint",
        '                 "epoch": r.epochs, PRUNING_KEY: pruning}',
        '                 "epoch": r.epochs, PRUNING_KEY: pruning, "module": model}',
        (f"{PRUNE}::test_the_pruned_run_lost_the_channels_asked_for_and_the_head_keeps_its_classes",)),
    Bug("engine/infer/recovery.py", "fine_tune", "a stop not heard between the fine-tune's batches",
        "            if should_stop():\n                raise RecoveryStopped\n            lr =",
        "            lr =",
        (f"{PRUNE}::test_a_stop_during_the_fine_tune_writes_nothing",)),
    Bug("engine/infer/recovery.py", "fine_tune", "the fine-tune trains only norms and biases",
        "        p.requires_grad_(True)", "        p.requires_grad_(p.ndim <= 1)",
        (f"{PRUNE}::test_the_recovery_fine_tune_trains_every_layer",)),
    Bug("engine/cli/prune.py", "cmd_prune", "Ctrl-C: the first one aborts (exit 130) instead of stopping",
        "        if stop:\n            raise KeyboardInterrupt", "        raise KeyboardInterrupt",
        (f"{PRUNE}::test_ctrl_c_exits_3_and_writes_nothing",)),
    Bug("engine/train/trainer.py", "Trainer.from_run_dir", "resume of a pruned run not refused by name",
        "        if is_pruned(checkpoint):", "        if False:",
        (f"{PRUNE}::test_the_new_run_is_a_run_the_runs_table_reads_and_resume_refuses",)),
    Bug("engine/model/pruned_structure.py", "apply_structure", "any attribute a checkpoint names is set",
        "            if name not in ALLOWED_INTS or not hasattr(module, name):", "            if False:",
        (f"{PRUNE}::test_a_tampered_structure_is_refused_naming_the_entry",)),
    # issue 26: fixing labels in place, the live preview, the capture page
    Bug("engine/data/relabel.py", "undoable", "undo never pops: a second undo reverts the same change again",
        "            if stack and stack[-1].number == change.undoes:\n                stack.pop()",
        "            pass", (f"{RELABEL}::test_undo_reverts_changes_last_first",)),
    Bug("engine/data/relabel.py", "undo_last", "undo moves back bytes that changed since (no digest check)",
        "    if digest != last.sha256:", "    if False:",
        (f"{RELABEL}::test_undo_refuses_when_the_old_place_is_taken_or_the_bytes_changed",)),
    Bug("engine/data/relabel.py", "undo_last", "undo does not check that the old place is free",
        "    if original.exists() or original.is_symlink():\n", "    if False:\n",
        (f"{RELABEL}::test_undo_refuses_when_the_old_place_is_taken_or_the_bytes_changed",)),
    Bug("engine/data/relabel.py", "_apply", "a name taken in the target class is not avoided",
        "    target = _free_name(folder, name)\n", "    target = folder / name\n",
        (f"{RELABEL}::test_a_name_taken_in_the_target_class_loses_nothing",)),
    Bug("engine/data/relabel.py", "_rename", "a move by os.replace: a file that appeared under the name is replaced",
        "        os.link(source, target, follow_symlinks=False)\n",
        "        os.replace(source, target)\n        return\n",
        (f"{RELABEL}::test_a_target_taken_at_the_last_moment_is_refused_and_both_files_kept",)),
    Bug("engine/data/relabel.py", "check_writable", "read-only = os.access only (root writes a chmod a-w folder)",
        "    if not (mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) or not os.access(folder, os.W_OK):",
        "    if not os.access(folder, os.W_OK):",
        (f"{RELABEL}::test_a_read_only_class_folder_is_refused_in_words",
         f"{RELABEL_GUI}::test_a_read_only_class_folder_is_refused_in_words",
         f"{CAPTURE}::test_a_read_only_class_folder_is_refused_in_words")),
    Bug("engine/data/relabel.py", "_apply", "a move is not journalled (nothing to undo, nothing to read)",
        "    try:\n        _append(root, change)\n    except OSError as exc:\n        _rename(target, image)",
        "    try:\n        pass\n    except OSError as exc:\n        _rename(target, image)",
        (f"{RELABEL}::test_a_move_relabels_the_image_and_undo_restores_every_byte",)),
    Bug("engine/data/relabel.py", "trash", "trash deletes the image instead of keeping it",
        "    return _apply(place.root, image, trash_folder(place.root), TRASH,",
        "    image.unlink()\n    return _apply(place.root, image, trash_folder(place.root), TRASH,",
        (f"{RELABEL}::test_trash_keeps_the_image_until_undo_brings_it_back",)),
    Bug("engine/data/relabel.py", "move_to_class", "train/val: a move lands in the other split's class folder",
        "        if name == label and split == place.split:", "        if name == label:",
        (f"{RELABEL}::test_the_train_val_layout_moves_within_the_split",)),
    Bug("engine/data/scan.py", "(imports)", "the layout's scan imports the decoder (a relabel waits for torch)",
        "from engine.data.image_types import IMAGE_EXTENSIONS\n", "from engine.data.images import IMAGE_EXTENSIONS\n",
        (f"{RELABEL}::test_a_relabel_does_not_wait_for_torch",)),
    Bug("gui/widgets/relabel_bar.py", "RelabelBar._do", "the bar does not announce a change (rows, Data tab stale)",
        "        self.image_relabelled.emit(str(root), change)", "        pass",
        (f"{RELABEL_GUI}::test_a_suspect_moves_to_the_suggested_class_and_undo_restores_it",
         f"{RELABEL_GUI}::test_an_image_of_the_inference_table_moves_and_its_row_follows")),
    Bug("gui/workers/live_preview.py", "FrameMailbox.put", "the oldest frame wins (the preview lags)",
        "            self._frame = _Frame(image, at, time.perf_counter())",
        "            self._frame = self._frame or _Frame(image, at, time.perf_counter())",
        (f"{LIVE}::test_a_slow_model_drops_frames_instead_of_lagging",)),
    Bug("gui/panels/live_preview.py", "LivePreviewView._on_frame", "the model runs on the GUI thread",
        "            self.classify_requested.emit()", "            self._worker.drain()",
        (f"{LIVE}::test_frames_are_labelled_while_the_gui_thread_stays_responsive",)),
    Bug("gui/panels/live_preview.py", "LivePreviewView._show_result", "no out-of-distribution warning",
        "        if result[\"unfamiliar\"]:", "        if False:",
        (f"{LIVE}::test_the_out_of_distribution_warning_shows",)),
    Bug("engine/data/video.py", "iter_frames", "--every ignored: every frame kept",
        "                if every and time + 1e-6 < next_time:\n                    continue", "                pass",
        (f"{VIDEO}::test_every_keeps_one_frame_per_interval",)),
    Bug("engine/infer/live.py", "FrameClassifier.prepare", "frames fed as BGR (live and a saved frame disagree)",
        "            array = rgb\n", "            array = rgb[:, :, ::-1]\n",
        (f"{VIDEO}::test_a_frame_gets_the_answer_its_saved_image_gets",)),
    Bug("engine/cli/predict.py", "cmd_predict", "--every silently ignored for images",
        "    if args.every and not videos:", "    if False:",
        (f"{VIDEO}::test_a_negative_interval_is_refused",)),
    Bug("gui/panels/capture_page.py", "CapturePage._on_frame", "a burst ignores its interval",
        "            self._next_due = at + self._interval - 1e-6", "            self._next_due = at",
        (f"{CAPTURE}::test_a_burst_writes_n_frames_into_the_class_folder_and_the_scan_counts_them",)),
    Bug("gui/panels/capture_page.py", "CapturePage._on_frame", "a burst writes more frames than asked",
        "            self._remaining -= 1\n", "            self._remaining -= 0 if self._written < 6 else 1\n",
        (f"{CAPTURE}::test_a_burst_writes_n_frames_into_the_class_folder_and_the_scan_counts_them",)),
    Bug("gui/panels/data_panel.py", "DataPanel._connect", "no rescan after a capture (counts stale)",
        "        self.capture_page.capture_finished.connect(self.follow_relabel)", "        pass",
        (f"{CAPTURE}::test_a_burst_writes_n_frames_into_the_class_folder_and_the_scan_counts_them",)),
    Bug("engine/data/capture.py", "capture_folder", "a class name with / or .. accepted (frames outside the data)",
        "    if not label or label in (\".\", \"..\") or label.startswith(\".\") or _BAD_NAME.search(label):",
        "    if not label:", (f"{CAPTURE}::test_a_class_name_that_cannot_be_a_folder_is_refused",)),
    # issue 24: domain pre-training (engine/pretrain/, the pretrain command, the studio's dialog)
    Bug('engine/pretrain/methods.py', 'Objective.full_state', "MoCo's queue (non-persistent buffers) not saved",
        '        state.update({f"buffer:{name}": b for name, b in self.named_buffers()})\n',
        '',
        (f"{PRETRAIN}::test_a_stopped_run_resumes_to_the_same_losses_and_weights",)),
    Bug('engine/pretrain/run.py', 'PretrainRun.from_run_dir', 'the step (the cosine rate) restarts at 0 on resume',
        'run.epoch, run.batch, run.step = state["epoch"], state["batch"], state["step"]',
        'run.epoch, run.batch, run.step = state["epoch"], state["batch"], 0',
        (f"{PRETRAIN}::test_a_stopped_run_resumes_to_the_same_losses_and_weights",)),
    Bug('engine/pretrain/run.py', 'PretrainRun.from_run_dir', "the optimizer's momentum not restored",
        '        run.optimizer.load_state_dict(state["optimizer"])\n',
        '',
        (f"{PRETRAIN}::test_a_stopped_run_resumes_to_the_same_losses_and_weights",)),
    Bug('engine/pretrain/run.py', 'PretrainRun._run', 'a resumed epoch starts again at its first batch',
        'start = self.batch if epoch == self.epoch else 0',
        'start = 0',
        (f"{PRETRAIN}::test_a_stopped_run_resumes_to_the_same_losses_and_weights",)),
    Bug('engine/pretrain/record.py', 'PretrainFolder.__init__',
        'a resumed run forgets the loss rows before its checkpoint',
        'self.batches: list[dict[str, Any]] = list(rows.get("batches", []))',
        'self.batches: list[dict[str, Any]] = []',
        (f"{PRETRAIN}::test_a_stopped_run_resumes_to_the_same_losses_and_weights",)),
    Bug('engine/pretrain/views.py', 'UnlabeledViews.__getitem__', 'every epoch draws the same views',
        'with seeded_generators(sample_seed(self.seed, self.epoch, index)):',
        'with seeded_generators(sample_seed(self.seed, 0, index)):',
        (f"{PRETRAIN}::test_an_images_views_depend_on_seed_epoch_and_index_only",)),
    Bug('engine/pretrain/views.py', 'seeded_generators', "NumPy's generator not seeded per sample (lightly's blur)",
        '        np.random.seed(seed % 2**32)\n',
        '',
        (f"{PRETRAIN}::test_an_images_views_depend_on_seed_epoch_and_index_only",)),
    Bug('engine/pretrain/knn.py', 'knn_predict', "the vote reads the first k labels, not the neighbours'",
        'bank_labels[index]',
        'bank_labels[:k].expand_as(index)',
        (f"{PRETRAIN}::test_the_knn_vote_takes_the_nearest_labels",)),
    Bug('engine/pretrain/run.py', '_prepare', 'an empty folder not refused',
        '    if len(scan.images) < 2:',
        '    if len(scan.images) < 0:',
        (f"{PRETRAIN}::test_bad_input_is_refused_in_one_line_with_exit_2",)),
    Bug('engine/pretrain/methods.py', 'MethodInfo.check_family', 'the family check skipped',
        '        reason = self.refused_families.get(family)\n',
        '        reason = None\n',
        (f"{PRETRAIN}::test_bad_input_is_refused_in_one_line_with_exit_2",)),
    Bug('engine/pretrain/run.py', 'PretrainRun.backbone_state',
        "the objective's state (heads, teachers) written as the weights file",
        'return {k: v.detach().cpu().clone() for k, v in self.objective.backbone.state_dict().items()}',
        'return {k: v.detach().cpu().clone() for k, v in self.objective.state_dict().items()}',
        (f"{PRETRAIN}::test_one_epoch_writes_the_backbone_that_train_accepts",)),
    Bug('engine/cli/train.py', 'cmd_resume', 'resume does not hand a pre-training folder over',
        '    if is_pretrain_run(args.run_dir):',
        '    if False:',
        (f"{PRETRAIN}::test_a_stopped_run_resumes_to_the_same_losses_and_weights",)),
    Bug('engine/pretrain/run.py', 'PretrainRun._run', "the start's k-NN measured again on resume",
        '        if self.epoch == 0 and self.batch == 0 and self.knn_start is None:',
        '        if True:',
        (f"{PRETRAIN}::test_a_stop_at_an_epoch_end_resumes_at_the_next_epoch",)),
    Bug('engine/pretrain/run.py', 'PretrainRun._run', 'no stop between batches',
        '                if self.control.stop_requested:\n                    return self._stop(epoch, index, clock)\n',
        '',
        (f"{PRETRAIN}::test_a_stopped_run_resumes_to_the_same_losses_and_weights", f"{PRETRAIN_GUI}",)),
    Bug('gui/pretrain_dialog.py', 'PretrainDialog.use_weights', "'Use these weights' leaves the recipe as it was",
        '        self.document.edit(set_weights)\n',
        '',
        (f"{PRETRAIN_GUI}",)),
    Bug('engine/pretrain/run.py', 'PretrainRun.from_run_dir', 'a resume with other images goes on',
        '        if before is not None and before != now:',
        '        if False:',
        (f"{PRETRAIN}::test_a_run_whose_images_changed_is_not_resumed",)),
    Bug('engine/pretrain/run.py', 'PretrainRun._finish', 'with --epochs 0 the BatchNorm statistics not re-estimated',
        '            layers = recalibrate_batchnorm(self.objective.backbone, clean, self.device, '
        'control=self.control)\n',
        '            layers = 0\n',
        (f"{PRETRAIN}::test_zero_epochs_only_reestimate_the_batchnorm_statistics_on_the_images",)),
    Bug('engine/pretrain/batchnorm.py', 'recalibrate_batchnorm',
        'the statistics a moving average (momentum 0.1) of the last batches, not of every image',
        '        m.momentum = None  # a cumulative moving average: every image counts the same\n',
        '',
        (f"{PRETRAIN}::test_zero_epochs_only_reestimate_the_batchnorm_statistics_on_the_images",)),
    Bug('engine/train/trainer.py', 'Trainer._end_epoch', 'restore_best ignored: the phase hands on its last weights',
        '        if last_of_phase and phase.config.restore_best and stopping.last_is_worse():',
        '        if False:',
        (f"{RESTORE}",)),
    Bug('engine/train/stopping.py', 'EarlyStopping.last_is_worse',
        'a tie counts as worse (an equal later epoch set aside)',
        '                and self.last_score < self.best_score)',
        '                and self.last_score <= self.best_score)',
        (f"{RESTORE}",)),
    Bug('engine/train/stopping.py', 'EarlyStopping.update',
        'the last score not signed by the direction (val_loss compared as if higher were better)',
        '        self.last_val_acc, self.last_score, self.restored_epoch = val_acc, score, None',
        '        self.last_val_acc, self.last_score, self.restored_epoch = val_acc, value, None',
        (f"{RESTORE}",)),
    Bug('engine/train/trainer.py', 'Trainer._restore_best',
        "the optimizer's moments of the weights set aside carried into the next phase",
        '        phase.optimizer.state.clear()\n',
        '',
        (f"{RESTORE}",)),
    Bug('engine/train/trainer.py', 'Trainer._end_epoch',
        'the restore after the checkpoint (last.pt holds the weights set aside; a resume there is not exact)',
        '            self._restore_best(phase, state, stopping, watch, figures)\n        state.next_epoch()\n'
        '        state.stopping = stopping.state_dict()\n        state.watch = watch.state_dict()\n'
        '        self._save(phase, state, clock, is_best)',
        '            pass\n        state.next_epoch()\n        state.stopping = stopping.state_dict()\n'
        '        state.watch = watch.state_dict()\n        self._save(phase, state, clock, is_best)\n'
        '        if last_of_phase and phase.config.restore_best and stopping.last_is_worse():\n'
        '            self._restore_best(phase, state, stopping, watch, figures)',
        (f"{RESTORE}",)),
    Bug('engine/train/run_folder.py', 'RunFolder._summarise_epochs',
        "summary.json's final accuracy the last epoch's after a restore",
        '            s["final_val_acc"], s["final_train_acc"] = ended["val_acc"], ended["train_acc"]\n',
        '',
        (f"{RESTORE}",)),
    Bug('engine/planning/presets.py', '_after_fitted_head', 'the presets without restore_best',
        '    phase.restore_best = True',
        '    phase.restore_best = False',
        (f"{RESTORE}",)),
    Bug('gui/panels/optimizer_panel.py', 'OptimizerPanel._make_bindings',
        'the box edits every phase, not the chosen one',
        'lambda p, v: setattr(p, "restore_best", v)),',
        'lambda p, v: [setattr(q, "restore_best", v) for q in self._document.recipe.phases]),',
        ("tests/gui/test_optimizer_panel.py::"
         "test_the_restore_best_box_shows_each_phase_s_choice_and_edits_only_that_phase",)),
    Bug('gui/panels/phases_panel.py', 'PhasesTimeline.segments',
        "the timeline counts a fitted head's epochs from the recipe, not the one epoch the run counts",
        '        epochs = self._document.run_epochs()\n',
        '        epochs = [p.epochs for p in self._document.recipe.phases]\n',
        ("tests/gui/test_phases_panel.py::test_the_timeline_counts_a_fitted_head_as_the_one_epoch_the_run_counts",)),
    Bug('gui/document.py', 'RecipeDocument.fits_head', 'a head counted as fitted when the features cannot be cached',
        ' and self._recipe.data.cache_features != "off"',
        '',
        ("tests/gui/test_phases_panel.py::test_the_timeline_counts_a_fitted_head_as_the_one_epoch_the_run_counts",)),
    Bug('engine/train/loop.py', 'fit_head_epoch',
        "every rank's fit counted in the epoch's sums (twice over two processes)",
        '    if dist.is_main:\n        state.running.add(fit.train_loss',
        '    if True:\n        state.running.add(fit.train_loss',
        ("tests/engine/test_distributed_runs.py::test_killing_a_rank_fails_the_run_and_resume_continues_it",)),
    Bug('gui/widgets/run_progress.py', 'RunProgress._fraction', 'every epoch counts the same whatever it costs',
        '        done = sum(costs[:epoch]) + (costs[epoch] * of_epoch if epoch < len(costs) else 0.0)\n'
        '        return min(1.0, done / sum(costs))',
        '        return min(1.0, (epoch + of_epoch) / len(costs))',
        ("tests/gui/test_run_progress.py",)),
    Bug('gui/panels/training_panel.py', 'TrainingPanel._on_run_started', "a resumed run weighed by the edited "
        "recipe's estimate", '        costs = None if e.resumed else epoch_costs(',
        '        costs = epoch_costs(',
        ("tests/gui/test_run_progress.py",)),
    Bug('gui/widgets/run_progress.py', 'epoch_costs', "a phase's feature pass not counted on its first epoch",
        '            per_epoch[0] += phase.features_seconds\n',
        '            pass\n',
        ("tests/gui/test_run_progress.py",)),
    Bug('gui/main_window.py', 'MainWindow.show_guide', 'a new guide window each time Help is asked',
        '        if self._guide is None:\n            self._guide = GuideDialog(self)',
        '        if True:\n            self._guide = GuideDialog(self)',
        ("tests/gui/test_help.py",)),
    Bug('gui/help_dialogs.py', 'GuideDialog.__init__', 'a missing guide is a blank page',
        '            self.browser.setPlainText(f"The guide is not part of this installation: {path} cannot be read "\n'
        '                                      f"({exc.strerror or exc}). It is docs/GUI.md in Thaw\'s source.")',
        '            pass',
        ("tests/gui/test_help.py",)),
]


def plant(bug: Bug) -> str:
    path = ROOT / bug.file
    source = path.read_text()
    count = source.count(bug.old)
    if count != 1:
        raise SystemExit(f"{bug.file}: the text to replace occurs {count} times (must be once):\n{bug.old}")
    path.write_text(source.replace(bug.old, bug.new))
    return source


def run_tests(tests: tuple[str, ...]) -> tuple[bool, float]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    return proc.returncode == 0, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("numbers", nargs="*", type=int, help="bug numbers (1-based); default: all")
    parser.add_argument("--list", action="store_true", help="print the table and exit")
    parser.add_argument("--check-clean", action="store_true", help="first run each bug's tests without the bug")
    args = parser.parse_args()
    chosen = args.numbers or list(range(1, len(BUGS) + 1))
    if args.list:
        for n in chosen:
            b = BUGS[n - 1]
            print(f"{n}. {b.file}:{b.function} — {b.what}\n   caught by {', '.join(b.tests)}")
        return 0
    escaped = []
    for n in chosen:
        bug = BUGS[n - 1]
        if args.check_clean:
            passed, _ = run_tests(bug.tests)
            if not passed:
                print(f"{n}. the tests fail WITHOUT the bug: {', '.join(bug.tests)}", flush=True)
                escaped.append(n)
                continue
        original = plant(bug)
        try:
            passed, seconds = run_tests(bug.tests)
        finally:
            (ROOT / bug.file).write_text(original)
        print(f"{n}. {bug.file}:{bug.function} — {bug.what}: {'ESCAPED' if passed else 'caught'} ({seconds:.0f} s)",
              flush=True)
        if passed:
            escaped.append(n)
    print(f"{len(chosen) - len(escaped)} of {len(chosen)} caught" + (f"; escaped: {escaped}" if escaped else ""))
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main())
