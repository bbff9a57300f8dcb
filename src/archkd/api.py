"""archkd's Python API: each CLI verb is one function here taking a resolved ``Config``.

    from archkd import api, load_config
    cfg = load_config(overrides=["name=mine", "search.n_trials=8", "budget.max_params=30000"])
    results = api.demo(cfg)

Every function writes into ``cfg.run_dir`` (``runs/<name>/``): the resolved ``config.yaml``, checkpoints, the study
database and ``results.json``; each returns a JSON-serialisable dict of what it measured.

This module is the facade: the verbs live in ``archkd.workflows`` (one module per verb), the decisions they make in
the packages below (``archkd.search.definition``, ``archkd.search.finalise``, ``archkd.distill.cache``,
``archkd.teacher.features``).
"""
from __future__ import annotations

from archkd import process as _process, proxies as _proxies  # noqa: F401  (their registries: config choices)
from archkd.config import Config
from archkd.data import DataBundle, Normalize  # noqa: F401  (importable from here as before)
from archkd.distill import TeacherCache  # noqa: F401
from archkd.errors import ArchkdError, ArchkdWarning  # noqa: F401
from archkd.search import Budget, KDTrialObjective, Reward  # noqa: F401
from archkd.search.definition import search_fidelity, study_definition
from archkd.search.finalise import trial_config
from archkd.teacher import Teacher
from archkd.workflows.demo import demo
from archkd.workflows.distill import Recipe, distill, distill_recipe  # noqa: F401
from archkd.workflows.export import check_export_target, export, int8_comparison
from archkd.workflows.family import family_sample
from archkd.workflows.follower import follow
from archkd.workflows.generic import generic_teacher
from archkd.workflows.inputs import (accuracy_on_test, build_student, cache_root, checkpoint_meta, data_progress,
                                     make_cache, prepare)
from archkd.workflows.measure import latency_predictor, measure
from archkd.workflows.process import process_search
from archkd.workflows.report import report
from archkd.workflows.run import (RUN_LOG, Log, close_log_file, log_file, metrics_sink, mirrored, record, start,
                                  verb, write_run)
from archkd.workflows.search import finalize_top_k, search
from archkd.workflows.search_setup import prescreen_candidates, remeasure, reward_target, size_target
from archkd.workflows.teacher import train_teacher

__all__ = ["Log", "RUN_LOG", "prepare", "make_cache", "train_teacher", "generic_teacher", "report", "distill",
           "process_search", "search", "family_sample", "finalize_top_k", "trial_config", "measure",
           "latency_predictor", "export", "demo"]

# the names these had when they lived here, for callers outside the package (tests, benchmarks)
_log, _log_file, _close_log_file, _start, _record, _verb = mirrored, log_file, close_log_file, start, record, verb
_metrics, _write_run = metrics_sink, write_run
_cache_root, _data_progress, _meta, _student = cache_root, data_progress, checkpoint_meta, build_student
_test_acc = accuracy_on_test
_fidelity, _size_target, _reward_target = search_fidelity, size_target, reward_target
_remeasure, _prescreen = remeasure, prescreen_candidates
_check_export_target, _int8 = check_export_target, int8_comparison


def _definition(cfg: Config, space, teacher: Teacher, data: DataBundle) -> dict:  # noqa: ANN001
    return study_definition(cfg, space, teacher.fingerprint, data)


def _objective(cfg: Config, total_steps: int):  # noqa: ANN202
    return distill_recipe(cfg, total_steps).objective


def _follow(objective: KDTrialObjective, cfg: Config, teacher: Teacher, data: DataBundle) -> None:
    follow(objective, teacher, data)
