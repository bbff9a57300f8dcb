"""The search loop on an Optuna study: ask, check the budget, evaluate, tell — and resume for free.

Why Optuna storage: every finished trial is committed to the study's database (SQLite in the run directory by
default, any Optuna URL such as PostgreSQL for many workers) the moment it ends, so a crash loses at most the trial in
flight and re-running the same command continues where it stopped.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from archkd.errors import ArchkdError
from archkd.search.budget import Budget
from archkd.search.reward import Reward
from archkd.spaces import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

# evaluate(config, metrics, trial, report) -> (validation accuracy, extra user attributes)
Evaluate = Callable[[dict, dict, "optuna.Trial", Callable[[int, float], None]], tuple[float, dict]]


@dataclass
class SearchResult:
    study_name: str
    storage: str
    trials: list[dict] = field(default_factory=list)
    best: dict | None = None

    def to_dict(self) -> dict:
        return {"study_name": self.study_name, "storage": self.storage, "best_trial": self.best and self.best["number"],
                "trials": self.trials}


def open_study(storage: str, study_name: str, sampler: optuna.samplers.BaseSampler, pruner: str = "none",
               direction: str = "maximize") -> optuna.Study:
    pruners = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
               "hyperband": optuna.pruners.HyperbandPruner}
    if pruner not in pruners:
        raise ArchkdError(f"unknown pruner '{pruner}'", f"use one of {sorted(pruners)}")
    try:
        return optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruners[pruner](),
                                   direction=direction, load_if_exists=True)
    except Exception as e:  # noqa: BLE001 - storage errors are configuration problems
        raise ArchkdError(f"cannot open study storage '{storage}' ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                          "check search.storage (e.g. sqlite:///runs/x/study.db or postgresql://...)") from None


def trial_row(t: optuna.trial.FrozenTrial) -> dict:
    ua = t.user_attrs
    state = ua.get("archkd_state") or t.state.name
    return {"number": t.number, "state": state, "config": dict(t.params), "params": ua.get("params"),
            "flops": ua.get("flops"), "latency_ms": ua.get("latency_ms"),
            "val_acc": ua.get("val_acc"), "reward": ua.get("reward"),
            "reason": ua.get("reason"), "seconds": ua.get("seconds"), "spec": ua.get("spec"),
            "checkpoint": ua.get("checkpoint"), "process": ua.get("process")}


def _release_stale(study: optuna.Study) -> int:
    """Trials left RUNNING by a crashed process are marked FAILED so their slots are re-run.

    This assumes one worker per study; many workers on one storage will rely on Optuna's heartbeat instead.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)


def _done(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               and t.user_attrs.get("archkd_state") != "INFEASIBLE")


class TrialTable:
    """A table that grows one row per finished trial (works in terminals and in CI logs alike)."""

    header = (f"{'#':>4} {'state':<10} {'params':>9} {'MFLOPs':>8} {'lat ms':>7} {'val acc':>8} {'reward':>7} "
              f"{'time s':>7}  config")

    def __init__(self, log: Callable[[str], None] | None) -> None:
        self.log = log
        self.started = False

    def row(self, r: dict) -> None:
        if not self.log:
            return
        if not self.started:
            self.log(self.header)
            self.started = True

        def f(v: Any, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        cfg = " ".join(f"{k}={v}" for k, v in r["config"].items())
        self.log(f"{r['number']:>4} {r['state']:<10} {f(r['params'], ',d'):>9} "
                 f"{f(None if r['flops'] is None else r['flops'] / 1e6, '.2f'):>8} {f(r['latency_ms'], '.3f'):>7} "
                 f"{f(r['val_acc'], '.4f'):>8} {f(r['reward'], '.4f'):>7} {f(r['seconds'], '.1f'):>7}  {cfg[:80]}"
                 + (f"  ({r['reason']})" if r.get("reason") else ""))


def pareto_front(rows: list[dict], cost: str = "latency_ms") -> list[dict]:
    """Completed trials not dominated in (higher validation accuracy, lower cost), sorted by cost."""
    pts = [r for r in rows if r["state"] == "COMPLETE" and r.get("val_acc") is not None and r.get(cost) is not None]
    front = [r for r in pts if not any(o[cost] <= r[cost] and o["val_acc"] >= r["val_acc"]
                                       and (o[cost] < r[cost] or o["val_acc"] > r["val_acc"]) for o in pts)]
    return sorted(front, key=lambda r: r[cost])


def check_feasible(space: SearchSpace, budget: Budget, input_shape: tuple[int, ...], num_classes: int) -> dict:
    """Reject a budget that not even the space's smallest architecture meets, before any work."""
    smallest = space.smallest()
    model = space.build(smallest, input_shape, num_classes)
    m = budget.measure(model, input_shape)
    bad = budget.violations(m)
    if bad:
        raise ArchkdError(f"no architecture in space '{space.name}' can meet the budget (smallest: {'; '.join(bad)})",
                          "raise the budget or choose a smaller space (search.space_kwargs)")
    return m


def run_search(space: SearchSpace, evaluate: Evaluate, *, storage: str, study_name: str,
               sampler: optuna.samplers.BaseSampler, n_trials: int, budget: Budget, input_shape: tuple[int, ...],
               num_classes: int, pruner: str = "none", max_attempts: int | None = None,
               reward: Reward | None = None, log: Callable[[str], None] | None = print) -> SearchResult:
    """Run until ``n_trials`` budget-feasible trials have finished (counting those already in the study).

    ``evaluate(config, metrics, trial, report)`` trains and returns ``(accuracy, extra_user_attrs)``; the trial's
    value is ``reward(accuracy, metrics)`` (plain accuracy by default). ``report(step, accuracy)`` forwards
    intermediate values to the pruner and raises ``optuna.TrialPruned`` when told to stop. Every finished trial
    carries a ``reward`` attribute (0 for over-budget candidates) that learning samplers read.
    """
    reward = reward or Reward()
    check_feasible(space, budget, input_shape, num_classes)
    study = open_study(storage, study_name, sampler, pruner)
    stale = _release_stale(study)
    done = _done(study)
    table = TrialTable(log)
    if log and (done or stale):
        log(f"resuming study '{study_name}': {done} trials finished" + (f", {stale} interrupted re-queued" if stale else ""))
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.user_attrs.get("archkd_state") != "INFEASIBLE":
            table.row(trial_row(t))
    attempts = skipped = 0
    max_attempts = max_attempts or 20 * n_trials
    seen = {json.dumps(t.params, sort_keys=True): t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    while done < n_trials:
        if attempts >= max_attempts:
            raise ArchkdError(f"only {done} of {n_trials} sampled architectures met the budget after {attempts} tries",
                              "raise the budget, shrink the space or lower search.n_trials")
        attempts += 1
        trial = study.ask()
        t0 = time.perf_counter()
        config = space.suggest(trial)
        spec = space.spec(config, input_shape, num_classes)
        model = space.build(config, input_shape, num_classes)
        metrics = budget.measure(model, input_shape, latency=True if reward.needs_latency else None)
        for k, v in metrics.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("spec", spec)
        bad = budget.violations(metrics)
        if bad:
            trial.set_user_attr("archkd_state", "INFEASIBLE")
            trial.set_user_attr("reason", "; ".join(bad))
            trial.set_user_attr("reward", 0.0)
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            study.tell(trial, state=TrialState.PRUNED)
            skipped += 1
            continue
        if skipped and log:
            log(f"     ({skipped} over-budget candidates skipped without training)")
            skipped = 0
        key = json.dumps(config, sort_keys=True)

        last = {"acc": 0.0}

        def report(step: int, value: float, _trial: optuna.Trial = trial) -> None:
            last["acc"] = value
            _trial.report(value, step)
            if _trial.should_prune():
                raise optuna.TrialPruned()

        try:
            if key in seen:
                acc, extra = seen[key].user_attrs["val_acc"], {"duplicate_of": seen[key].number}
            else:
                acc, extra = evaluate(config, {"spec": spec, **metrics}, trial, report)
        except optuna.TrialPruned:
            trial.set_user_attr("val_acc", last["acc"])
            trial.set_user_attr("reward", reward(last["acc"], metrics))
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            study.tell(trial, state=TrialState.PRUNED)
            done += 1
            table.row(trial_row(study.get_trials(deepcopy=False)[trial.number]))
            continue
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        value = reward(acc, metrics)
        for k, v in {**extra, "val_acc": acc, "reward": value, "seconds": time.perf_counter() - t0}.items():
            trial.set_user_attr(k, v)
        study.tell(trial, value)
        done += 1
        frozen = study.get_trials(deepcopy=False)[trial.number]
        seen.setdefault(key, frozen)
        table.row(trial_row(frozen))
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: (r["reward"], -(r["params"] or 0))) if complete else None
    return SearchResult(study_name, storage, rows, best)
