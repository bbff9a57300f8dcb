"""``archkd search``: the student search — every candidate within budget trained at the search fidelity and scored,
the Pareto set re-measured when latency was predicted, the top k re-trained with the full recipe."""
from __future__ import annotations

import time
import warnings
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archkd.config import Config, TrainConfig, to_dict
from archkd.data import DataBundle
from archkd.device import is_rank0, resolve_device, world
from archkd.distill import BlockRecipe, BlockwiseScorer
from archkd.errors import ArchkdError, ArchkdWarning
from archkd.models import build_from_spec
from archkd.progress import Progress
from archkd.search import (BlockwiseTrialObjective, Budget, KDTrialObjective, Reward, SearchResult, create_sampler, pareto_front,
                           predictor_file, run_search)
from archkd.search.definition import search_fidelity, study_definition
from archkd.search.finalise import check_fidelity, finalize_trials, top_trials
from archkd.search.importance import param_importances
from archkd.search.pareto import Objectives
from archkd.search.samplers import SAMPLERS
from archkd.spaces import SearchSpace, create_space
from archkd.teacher import Teacher
from archkd.teacher.features import require_features
from archkd.workflows.compare import baseline_model, compare_finalists
from archkd.workflows.follower import follow, lead_finalist, leading, release_followers
from archkd.workflows.inputs import cache_root, make_cache, prepare
from archkd.workflows.results import SearchRun
from archkd.workflows.run import Log, mirrored, record, start, tracking, verb, write_run
from archkd.workflows.search_setup import (predicted_budget, prescreen_candidates, remeasure, reward_target,
                                           size_target)

SUMMARY_KEYS = ("space", "scaled_to_params", "sampler", "sampler_info", "guide", "n_trials", "fidelity", "storage",
                "study_name", "best_trial", "reward", "pareto", "importances")


@dataclass
class SearchPlan:
    """What one search worker runs: the config in force (with the reward target it settled on), the study, the
    space scaled to its size, the budget, the sampler, the reward and the trial fidelity."""
    cfg: Config
    storage: str
    study_name: str
    size: int | None
    space: SearchSpace
    budget: Budget
    sampler: Any
    reward: Reward
    fidelity: TrainConfig
    predictor_blocks: int = 0  # blocks the latency predictor knew before the search (predicted latency only)
    objectives: Objectives | None = None  # a multi-objective search (search.objectives)


def plan_search(cfg: Config, teacher: Teacher, data: DataBundle, log: Log) -> SearchPlan:
    """Settle what the search runs on: study, space, budget (with its latency predictor), reward target, sampler."""
    run = cfg.run_dir
    sc = cfg.search
    objectives = Objectives.parse(sc.objectives)
    if objectives is not None and not SAMPLERS.lookup(sc.method).multi_objective:
        capable = sorted(n for n, m in SAMPLERS.items() if m.multi_objective)
        raise ArchkdError(f"search.method={sc.method} optimises one objective, not search.objectives={sc.objectives}",
                          f"use --method {' or '.join(capable)} for a Pareto front, or drop search.objectives for "
                          f"{sc.method}'s scalar reward")
    storage = sc.storage or f"sqlite:///{(run / 'study.db').resolve()}"
    study_name = sc.study_name or cfg.name
    size = size_target(cfg, teacher, log)
    space = create_space(sc.space, recipe=sc.recipe, **sc.space_kwargs).scale_to(size)
    budget = Budget.from_config(cfg.budget)
    n_blocks = predicted_budget(cfg, budget, space, data, log)
    if sc.reward_target is None and sc.reward_target_quantile is not None and sc.reward_metric == "latency_ms":
        cfg = deepcopy(cfg)  # the target in force is what the run records (config.yaml, the study's definition)
        cfg.search.reward_target = reward_target(cfg, space, budget, data, storage, study_name, log)
        sc = cfg.search
    sampler = create_sampler(sc.method, seed=cfg.seed, space=space, n_trials=sc.n_trials,
                             feasible=budget.feasibility(space, data.input_shape, data.num_classes),
                             **sc.sampler_options)
    advice = getattr(sampler, "advise", lambda _n: None)(sc.n_trials)  # a sampler may know it cannot work here
    if advice and is_rank0():
        warnings.warn(advice, ArchkdWarning, stacklevel=3)
    reward = Reward.make(sc.reward_target, sc.reward_metric, sc.reward_mode, sc.reward_alpha, sc.reward_beta)
    return SearchPlan(cfg, storage, study_name, size, space, budget, sampler, reward, search_fidelity(cfg), n_blocks,
                      objectives)


def finalize_top_k(cfg: Config, found: dict, teacher: Teacher, data: DataBundle, k: int, reward: Reward,
                   log: Log | None = print) -> list[dict]:
    """Re-train the k best trials (by search score; after a multi-objective search, k members spread along the
    front) with the full KD recipe, test them, score them again (``archkd.search.finalise``); under torchrun the
    followers distil each finalist with rank 0."""
    log = mirrored(log)
    objectives = Objectives.parse(cfg.search.objectives)
    pick = top_trials if objectives is None else lambda trials, n: objectives.spread(objectives.front(trials), n)
    return finalize_trials(cfg, found["trials"], k, reward, _finalist_trainer(teacher, data, log), log, pick=pick)


def _finalist_trainer(teacher: Teacher, data: DataBundle, log: Log):  # noqa: ANN202 - a TrainFinalist
    return lambda run_cfg, spec, subdir: lead_finalist(run_cfg, spec, subdir, teacher, data, log)


@verb("archkd search", shared=True)
def search(cfg: Config, log: Log | None = print, teacher: Teacher | None = None,
           data: DataBundle | None = None, write: bool = True) -> SearchRun | dict:
    """Student search: every candidate within budget is trained at the search fidelity and scored.

    ``search.guide=kd`` scores by KD-trained accuracy (AKD's KD-guided search); ``ce`` by CE-trained accuracy (the
    NAS-then-KD baseline). With ``search.reward_target`` the score is ``ACC × (cost/T)^w``. With ``search.top_k``,
    the top-k students are re-trained with the full KD recipe and tested. Any number of processes running this on
    the same ``search.storage`` and study name share the study. With ``write``, the study as this worker saw it at the
    end goes to ``results.json`` and ``report.html`` in the run directory.
    """
    log = mirrored(log)
    run = start(cfg)
    if teacher is None or data is None:
        teacher, data = prepare(cfg, log)
    plan = plan_search(cfg, teacher, data, log)
    cfg, sc, fidelity = plan.cfg, plan.cfg.search, plan.fidelity
    baseline = baseline_model(cfg, data, plan.budget)  # refused here, before any training, when it cannot compare
    log(f"searching space '{plan.space.name}' with {sc.method} ({sc.guide}-guided): {sc.n_trials} trials at "
        f"{fidelity.epochs} epochs × {fidelity.data_fraction:g} data"
        + (" per block (blockwise KD: trial score exp(-mean block NSR))" if sc.fidelity == "blockwise" else "")
        + f"; objective {plan.reward.describe()}; "
        f"budget {plan.budget.describe()}; study {plan.storage}")
    if sc.process:
        require_features(teacher, "joint student + process searches (search.process)",
                         otherwise="search students alone (search.process=false)")
    progress = Progress(log)
    objective = trial_objective(cfg, plan.space, teacher, data, run, progress, log)
    screened = prescreen_candidates(cfg, plan.space, teacher, data, plan.budget, log) if sc.prescreen.proxy else []
    rank, n_proc = world()
    if n_proc > 1 and rank != 0:  # under torchrun: train what rank 0 asks the study for, shard by shard
        follow(objective, teacher, data)
        return {"rank": rank}
    t0 = time.perf_counter()
    try:
        res = run_search(plan.space, leading(objective), storage=plan.storage, study_name=plan.study_name,
                         sampler=plan.sampler, n_trials=sc.n_trials, budget=plan.budget, input_shape=data.input_shape,
                         num_classes=data.num_classes, pruner=sc.pruner, pruner_options=sc.pruner_options,
                         reward=plan.reward, max_attempts=sc.max_attempts_factor * sc.n_trials, log=log,
                         definition=study_definition(cfg, plan.space, teacher.fingerprint, data),
                         heartbeat=sc.heartbeat_seconds, grace=sc.stale_after_seconds, max_retry=sc.max_retries,
                         progress=progress, on_start=lambda: record(cfg), enqueue=[s.config for s in screened],
                         objectives=plan.objectives)
        out = summarise(plan, res, data, log)
        out.seconds = time.perf_counter() - t0
        if screened:
            out.prescreen = {**to_dict(sc.prescreen), "queued": [{"config": s.config, "score": s.score}
                                                                  for s in screened]}
        if sc.top_k and res.finalizer:
            out.top_k = finalize_top_k(cfg, out, teacher, data, sc.top_k, plan.reward, log)
            if sc.check_fidelity:
                checked = check_fidelity(cfg, out.trials, out.top_k, sc.check_fidelity,
                                         _finalist_trainer(teacher, data, mirrored(log)), mirrored(log))
                out.fidelity_check = checked.to_dict() if checked else None
            out.comparison = compare_finalists(cfg, teacher, data, out.top_k, baseline,
                                               _finalist_trainer(teacher, data, log), log).to_dict()
        elif sc.top_k:
            log(f"top-{sc.top_k} finalisation is left to the worker that finished the study's last trial")
        if write:
            write_run(cfg, run, "archkd search", data, {
                "teacher": {**teacher.describe(), **({"test_acc": out.comparison["teacher"]["test_acc"]}
                                                     if out.comparison else {})},
                "budget": to_dict(cfg.budget), **({"comparison": out.comparison} if out.comparison else {}),
                "search": {**{k: out[k] for k in SUMMARY_KEYS}, "fidelity_check": out.fidelity_check},
                "trials": out.trials, "top_k": out.top_k, "worker_trials": res.ran})
    finally:
        release_followers()
    return out


def trial_objective(cfg: Config, space: SearchSpace, teacher: Teacher, data: DataBundle, run: Path,
                    progress: Progress, log: Log) -> KDTrialObjective | BlockwiseTrialObjective:
    """What scores a trial (``search.fidelity``): a KD training of the whole student, or blockwise distillation
    (refused here, before any training, for a space or teacher it cannot score)."""
    sc = cfg.search
    if sc.fidelity == "trained":
        return KDTrialObjective(data, search_fidelity(cfg), teacher=teacher,
                                distill=cfg.distill if sc.guide == "kd" else None,
                                cache=make_cache(cfg, teacher, data), seed=cfg.seed, device=cfg.device,
                                trials_dir=run / "trials", process=cfg.process if sc.process else None,
                                metrics=run / "metrics.csv", tracking=tracking(cfg), progress=progress)
    clash = ("search.guide=ce (it trains without the teacher)" if sc.guide == "ce" else
             "search.process=true (it trains whole students)" if sc.process else
             "torchrun (its blocks are small: run workers as separate processes on one search.storage)"
             if world()[1] > 1 else None)
    if clash:
        raise ArchkdError(f"search.fidelity=blockwise scores students from the teacher's stages and cannot be "
                          f"combined with {clash}", "use search.fidelity=trained for that search")
    recipe = BlockRecipe(epochs=sc.epochs, data_fraction=sc.data_fraction, lr=sc.blockwise_lr,
                         batch_size=cfg.train.batch_size, seed=cfg.seed)
    scorer = BlockwiseScorer(teacher.module, teacher.fingerprint, data, cache_root(cfg), recipe,
                             resolve_device(cfg.device), log)
    scorer.check(build_from_spec(space.spec(space.smallest(), data.input_shape, data.num_classes)))
    return BlockwiseTrialObjective(scorer)


def summarise(plan: SearchPlan, res: SearchResult, data: DataBundle, log: Log) -> SearchRun:
    """The search's result: its best trial, its Pareto set (re-measured after a search on predicted latency, whose
    newly timed blocks the machine's predictor keeps) and every trial."""
    if res.best is None:
        raise ArchkdError("the search finished without a successful trial", "see the trial table above")
    cfg, sc, budget, b = plan.cfg, plan.cfg.search, plan.budget, res.best
    log(f"best trial #{b['number']}: reward {b['reward']:.4f}, val acc {b['val_acc']:.4f}, {b['params']:,} params"
        + (f", {b['latency_ms']:.3f} ms" if b.get("latency_ms") is not None else ""))
    cost = sc.reward_metric if sc.reward_target is not None else ("latency_ms" if any(
        r.get("latency_ms") is not None for r in res.trials) else "params")
    objectives = plan.objectives
    front = pareto_front(res.trials, cost) if objectives is None else objectives.front(res.trials)
    if budget.predictor is not None:
        remeasure(budget, front, data.input_shape, log)
        if len(budget.predictor.lut) > plan.predictor_blocks:  # blocks first met in this search: keep their timings
            budget.predictor.save(predictor_file(cfg.budget, plan.space.name, data.input_shape, cache_root(cfg)))
    return SearchRun(space=plan.space.name, scaled_to_params=plan.size, sampler=sc.method,
                     sampler_info=getattr(plan.sampler, "info", dict)(), guide=sc.guide, n_trials=sc.n_trials,
                     fidelity={"epochs": plan.fidelity.epochs, "data_fraction": plan.fidelity.data_fraction,
                               "scored": sc.fidelity},
                     storage=plan.storage, study_name=plan.study_name, reward=plan.reward.describe(),
                     best_trial=b["number"], best=b,
                     importances=param_importances(plan.storage, plan.study_name, cfg.seed),
                     pareto={"cost": cost, "trials": [r["number"] for r in front],
                             **({"measured_ms": {r["number"]: r["latency_measured_ms"] for r in front}}
                                if budget.predictor is not None else {}),
                             **(_front_summary(objectives, front, res.trials, cfg) if objectives else {})},
                     trials=res.trials)


def _front_summary(objectives: Objectives, front: list[dict], trials: list[dict], cfg: Config) -> dict:
    """A multi-objective search's front as the result states it: its objectives, the cost axis, the reference point
    and the hypervolume the front dominates above it (``archkd.search.pareto``)."""
    ref = objectives.reference(trials, to_dict(cfg.budget))
    return {"objectives": list(objectives.names), "keys": objectives.keys,
            "cost": next(k for k, d in zip(objectives.keys, objectives.directions) if d == "minimize"),
            "reference": ref, "hypervolume": objectives.hypervolume(front, ref)}
