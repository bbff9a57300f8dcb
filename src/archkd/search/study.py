"""The search loop on an Optuna study, for one worker or many: ask, build and measure, evaluate, tell.

Why Optuna storage: every finished trial is committed to the study's storage the moment it ends, so a crash loses at
most the trial in flight, and any number of workers can share one study (``archkd.search.storage``: SQLite, a journal
file, PostgreSQL). Trial counts are the study's totals, read from storage before every ``ask``, so N workers stop
together at ``n_trials``. Each RUNNING trial carries a lease renewed by a heartbeat (``archkd.search.lease``); a trial
whose worker died is re-queued with the same parameters, and its :class:`Candidate` keeps the original trial's
``slot``, so the trial objective continues from the slot's last epoch checkpoint instead of starting over.

Over-budget candidates are told COMPLETE with reward 0 and positive Optuna constraint values (``record_constraints``:
relative excess over each budget limit), which Optuna's samplers, ``study.best_trial`` and optuna-dashboard read as
*infeasible*; they cost no training and do not count towards ``n_trials``.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from archkd.errors import ArchkdError
from archkd.progress import Progress
from archkd.search.budget import Budget
from archkd.search.lease import LEASE, WORKER, TrialLost, Worker, stored_trial
from archkd.search.pareto import Objectives
from archkd.search.reward import Reward
from archkd.search.samplers import PROPOSER
from archkd.search.storage import open_study, storage_files, wait_for_change
from archkd.spaces import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)



@dataclass(frozen=True)
class Candidate:
    """One sampled student, measured and within budget, handed to the trial objective.

    ``slot`` is the number of the trial this one re-runs (its own number unless it is a retry of an interrupted trial):
    the objective keys its checkpoint directory by it, so a retry continues the interrupted training. ``members`` are
    the networks the configuration stands for (``SearchSpace.members``): ``(spec,)``, or a generator's family whose
    first member is ``spec``; budgets are measured on ``spec``.
    """

    number: int
    slot: int
    config: dict
    spec: dict
    recipe: dict
    metrics: dict
    members: tuple = ()


@dataclass(frozen=True)
class TrialOutcome:
    """What the objective measured: the validation accuracy and extra attributes stored on the trial."""

    val_acc: float
    attrs: dict = field(default_factory=dict)


Report = Callable[[int, float], None]
Evaluate = Callable[[Candidate, Report], TrialOutcome]


@dataclass
class SearchResult:
    study_name: str
    storage: str
    trials: list[dict] = field(default_factory=list)
    best: dict | None = None
    ran: int = 0  # trials this worker trained
    finalizer: bool = True  # whether this worker should run the final phase (it finished the study's last trial)

    def to_dict(self) -> dict:
        return {"study_name": self.study_name, "storage": self.storage, "best_trial": self.best and self.best["number"],
                "trials": self.trials}


def is_infeasible(t: optuna.trial.FrozenTrial) -> bool:
    return t.user_attrs.get("archkd_state") == "INFEASIBLE" or any(v > 0 for v in t.constraints.values())


def counts(t: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards ``n_trials``: a candidate within budget that was trained to the end or pruned."""
    return (t.state == TrialState.COMPLETE and not is_infeasible(t)) or t.state == TrialState.PRUNED


def trial_row(t: optuna.trial.FrozenTrial) -> dict:
    ua = t.user_attrs
    state = ua.get("archkd_state") or t.state.name
    return {"number": t.number, "state": state, "config": dict(t.params), "params": ua.get("params"),
            "flops": ua.get("flops"), "latency_ms": ua.get("latency_ms"), "memory_mb": ua.get("memory_mb"),
            "val_acc": ua.get("val_acc"), "reward": ua.get("reward"),
            "reason": ua.get("reason"), "seconds": ua.get("seconds"), "spec": ua.get("spec"),
            "checkpoint": ua.get("checkpoint"), "process": ua.get("process"), "recipe": ua.get("recipe") or {},
            "duplicate_of": ua.get("duplicate_of"), "family_accs": ua.get("family_accs"),
            "steps": None if t.last_step is None else t.last_step + 1,
            "family_std": ua.get("family_std"), "blockwise": ua.get("blockwise"), "student_spec": ua.get("family_best_spec") or ua.get("spec"),
            "worker": (ua.get(LEASE) or {}).get("worker"), "retry_of": t.system_attrs.get("failed_trial"),
            "proposer": proposer(t)}


def proposer(t: optuna.trial.FrozenTrial) -> str:
    """Who proposed a trial's configuration: ``retry`` (it re-runs an interrupted trial), ``queued`` (enqueued, e.g.
    by a pre-screen), else what the sampler recorded (``set_proposer``: init, model, fallback, random, ...)."""
    sa = t.system_attrs
    if sa.get("failed_trial") is not None:
        return "retry"
    if "fixed_params" in sa:
        return "queued"
    return sa.get(PROPOSER, "sampler")


class TrialTable:
    """A table that grows one row per finished trial (works in terminals and in CI logs alike)."""

    header = (f"{'#':>4} {'state':<10} {'params':>9} {'MFLOPs':>8} {'lat ms':>7} {'val acc':>8} {'reward':>7} "
              f"{'time s':>7} {'by':<8} config")

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
                 f"{f(r['val_acc'], '.4f'):>8} {f(r['reward'], '.4f'):>7} {f(r['seconds'], '.1f'):>7} "
                 f"{r.get('proposer') or '-':<8} {cfg[:80]}"
                 + (f"  ({r['reason']})" if r.get("reason") else ""))


def pareto_front(rows: list[dict], cost: str = "latency_ms") -> list[dict]:
    """Completed trials not dominated in (higher validation accuracy, lower cost), sorted by cost."""
    pts = [r for r in rows if r["state"] == "COMPLETE" and r.get("val_acc") is not None and r.get(cost) is not None]
    front = [r for r in pts if not any(o[cost] <= r[cost] and o["val_acc"] >= r["val_acc"]
                                       and (o[cost] < r[cost] or o["val_acc"] > r["val_acc"]) for o in pts)]
    return sorted(front, key=lambda r: r[cost])


def _set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Store several user attributes of a running trial (one ``set_user_attr`` each: Optuna has no public batch call)."""
    for k, v in attrs.items():
        trial.set_user_attr(k, v)


def check_feasible(space: SearchSpace, budget: Budget, input_shape: tuple[int, ...], num_classes: int) -> dict:
    """Reject a budget that not even the space's smallest architecture meets, before any work."""
    smallest = space.smallest()
    model = space.build(smallest, input_shape, num_classes)
    m = budget.measure(model, input_shape)
    bad = budget.violations(m)
    if bad and budget.mode == "constraint":
        raise ArchkdError(f"no architecture in space '{space.name}' can meet the budget (smallest: {'; '.join(bad)})",
                          "raise the budget or choose a smaller space (search.space_kwargs)")
    return m


def record_constraints(study: optuna.Study, trial: optuna.Trial, excess: dict[str, float]) -> None:
    """Store budget excesses as the trial's Optuna constraint values (≤ 0: feasible), names in ``constraint_names``.

    Why the list form (system attribute ``constraints``, as samplers' ``constraints_func`` writes it) rather than
    ``trial.set_constraint``'s per-name keys: Optuna 5's samplers and ``best_trial`` read both, but optuna-dashboard
    (0.21) reads only the list, and writing both would count each limit twice in the GP sampler's feasibility model.
    """
    if excess:
        study._storage.set_trial_system_attr(trial._trial_id, "constraints", [float(v) for v in excess.values()])
        trial.set_user_attr("constraint_names", list(excess))



def _surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int, frozen: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` was asked after other workers had already claimed the study's last slots (``frozen``: its
    stored state, read once after ``ask``)."""
    if frozen.system_attrs.get("failed_trial") is not None:
        return False  # a retry refills the slot of the trial it replaces
    claimed = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and
                  (counts(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)))
    return claimed >= n_trials


def run_search(space: SearchSpace, evaluate: Evaluate, *, storage: str, study_name: str,
               sampler: optuna.samplers.BaseSampler, n_trials: int, budget: Budget, input_shape: tuple[int, ...],
               num_classes: int, pruner: str = "none", pruner_options: dict | None = None,
               max_attempts: int | None = None,
               reward: Reward | None = None, log: Callable[[str], None] | None = print,
               definition: dict | None = None, heartbeat: float = 10.0, grace: float = 60.0, max_retry: int = 3,
               poll: float = 1.0, progress: Progress | None = None,
               on_start: Callable[[], None] | None = None, enqueue: Sequence[dict] = (),
               objectives: Objectives | None = None) -> SearchResult:
    """Work on the study until it holds ``n_trials`` trials within budget (its total, whoever trained them).

    ``evaluate(candidate, report) -> TrialOutcome`` trains one candidate; the trial's value is
    ``reward(accuracy, metrics)`` (plain accuracy by default). ``report(step, accuracy)`` forwards intermediate values
    to the pruner and raises ``optuna.TrialPruned`` when told to stop. Every finished trial carries a ``reward``
    attribute (0 for over-budget candidates) that learning samplers read. ``max_attempts`` bounds the over-budget
    candidates this worker may draw in a row before it gives up on the budget. ``on_start()`` runs once the budget
    and the study's definition are accepted, before any trial (the caller records its config then). ``enqueue``:
    configurations asked before any sampler proposal (a pre-screen's best), queued once per study (a re-run or another
    worker finds them queued or done already; two workers starting at the same instant may both queue one, and the
    second copy then reuses the first's result as a twin). ``objectives``: a multi-objective search
    (``archkd.search.pareto``): each trial is told its objective values, its ``reward`` attribute is its accuracy, and
    intermediate values are not reported (Optuna prunes single-objective studies only).
    """
    reward = reward or Reward()
    check_feasible(space, budget, input_shape, num_classes)
    if objectives is not None and pruner != "none":
        raise ArchkdError(f"search.pruner={pruner} cannot prune a multi-objective search",
                          "set search.pruner=none with search.objectives")
    study = open_study(storage, study_name, sampler, pruner, definition=definition, pruner_options=pruner_options,
                       directions=objectives.directions if objectives else None)
    if on_start is not None:
        on_start()
    for config in enqueue:
        study.enqueue_trial(config, skip_if_exists=True)
    lock = Path(storage[len("sqlite:///"):] + ".lock") if storage.startswith("sqlite:///") else None
    worker = Worker(study, heartbeat, grace, max_retry, log, lock=lock)
    table = TrialTable(log)
    at_start = study.get_trials(deepcopy=False)
    finished = [t for t in at_start if counts(t)]
    if log and finished:
        log(f"resuming study '{study_name}': {len(finished)} trials finished")
    for t in at_start:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            table.row(trial_row(t))  # over-budget ones too: the table numbers every trial of the study
    files = storage_files(storage)
    complete_at_start = len(finished) >= n_trials
    infeasible_in_a_row = repeated_in_a_row = 0
    max_attempts = max_attempts or 20 * n_trials
    ran = waiting_note = 0
    while True:
        trials = study.get_trials(deepcopy=False)  # one read of the study per round, shared by the checks below
        if worker.reclaim(trials):
            trials = study.get_trials(deepcopy=False)
        done = sum(1 for t in trials if counts(t))
        if done >= n_trials:
            break
        queued = sum(1 for t in trials if t.state == TrialState.WAITING)
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        if not queued and done + running >= n_trials:  # the last slots are being trained by other workers
            if log and time.time() - waiting_note > 60:
                log(f"     waiting for {running} trial(s) on other workers ({done}/{n_trials} done)")
                waiting_note = time.time()
            wait_for_change(files, poll)  # back at once when another worker writes (e.g. tells the last trial)
            continue
        if infeasible_in_a_row >= max_attempts:
            raise ArchkdError(f"{infeasible_in_a_row} sampled architectures in a row broke the budget "
                              f"({done} of {n_trials} trials done)",
                              "raise the budget, shrink the space or use a budget-aware sampler (random, akd)")
        trial = study.ask()  # 1. ask (a queued retry first)
        with worker.lease(trial) as lost:
            try:
                frozen = stored_trial(study, trial)  # its system attributes (a retry's slot, ...) are fixed from here on
                if _surplus(study, trial, n_trials, frozen):
                    trial.set_user_attr("archkd_state", "SURPLUS")
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                if progress is not None:
                    progress.search(done, n_trials, trial.number)
                row = _run_trial(study, trial, space, evaluate, budget, reward, input_shape, num_classes, lost,
                                 frozen, objectives)
            except (TrialLost, UpdateFinishedTrialError):
                if log:
                    log(f"     trial {trial.number} was taken over by another worker (its lease looked stale); "
                        "moving on")
                continue
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    worker.interrupted(trial)
                elif stored_trial(study, trial).state == TrialState.RUNNING:
                    trial.set_user_attr("reason", f"{type(e).__name__}: {str(e)[:200]}")
                    study.tell(trial, state=TrialState.FAIL)
                raise
        if row["state"] == "DUPLICATE":
            repeated_in_a_row += 1
            if log:
                log(f"     trial {row['number']} proposed trial {row['duplicate_of']}'s configuration again: not "
                    "trained, not counted; asking the sampler again")
            if repeated_in_a_row >= max_attempts:
                raise ArchkdError(f"the sampler proposed {repeated_in_a_row} already-trained configurations in a row "
                                  f"({done} of {n_trials} trials done): the space looks exhausted",
                                  "lower --n-trials or widen the space (search.space_kwargs)")
            continue
        repeated_in_a_row = 0
        if row["state"] == "INFEASIBLE":
            infeasible_in_a_row += 1
            table.row(row)  # shown, not trained: the table numbers every trial of the study
            continue
        infeasible_in_a_row = 0
        ran += 1
        if progress is not None and row.get("seconds") is not None:
            progress.trial_done(row["seconds"])
        table.row(row)
    final = study.get_trials(deepcopy=False)
    rows = [trial_row(t) for t in final if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: (r["reward"], -(r["params"] or 0))) if complete else None
    counted = [t for t in final if counts(t)]
    last = max(counted, key=lambda t: (t.datetime_complete, t.number)) if counted else None
    finalizer = complete_at_start or last is None or (last.user_attrs.get(LEASE) or {}).get("worker") == WORKER
    return SearchResult(study_name, storage, rows, best, ran=ran, finalizer=finalizer)


def _run_trial(study: optuna.Study, trial: optuna.Trial, space: SearchSpace, evaluate: Evaluate, budget: Budget,
               reward: Reward, input_shape: tuple[int, ...], num_classes: int, lost: threading.Event,
               frozen: optuna.trial.FrozenTrial | None = None, objectives: Objectives | None = None) -> dict:
    """One asked trial from suggestion to ``tell``; ``frozen`` is its stored state read after ``ask`` (read here if
    not given)."""
    t0 = time.perf_counter()
    frozen = frozen if frozen is not None else stored_trial(study, trial)
    trial.set_user_attr("archkd_state", "")  # a retry inherits its original's attributes: reset the outcome
    config = space.suggest(trial)
    twin = _twin(study, trial, config, frozen)
    if twin is not None:  # a known result: not trained, not counted; the loop asks the sampler again
        _set_user_attrs(trial, {"archkd_state": "DUPLICATE", "duplicate_of": twin.number})
        study.tell(trial, state=TrialState.FAIL)
        return {"state": "DUPLICATE", "number": trial.number, "duplicate_of": twin.number}
    # 2. build and measure: milliseconds, and every budget limit becomes an Optuna constraint
    spec = space.spec(config, input_shape, num_classes)
    model = space.build(config, input_shape, num_classes)
    needs_latency = reward.needs_latency or (objectives is not None and objectives.needs_latency)
    metrics = budget.measure(model, input_shape, latency=True if needs_latency else None,
                             also=tuple(objectives.keys) if objectives else ())
    recipe = space.recipe(config)
    _set_user_attrs(trial, {**metrics, "spec": spec, "recipe": recipe})
    if budget.mode == "constraint":  # a penalty is in the value itself: the trial is not infeasible
        record_constraints(study, trial, budget.constraints(metrics))
    bad = budget.violations(metrics)
    if bad and budget.mode == "constraint":
        _set_user_attrs(trial, {"archkd_state": "INFEASIBLE", "reason": "; ".join(bad), "reward": 0.0,
                                       "seconds": time.perf_counter() - t0})
        study.tell(trial, _told(objectives, 0.0, 0.0, metrics))
        return trial_row(stored_trial(study, trial))
    # 3. evaluate: train (or reuse an identical earlier trial)
    slot = frozen.system_attrs.get("failed_trial", trial.number)
    candidate = Candidate(trial.number, slot, config, spec, recipe, metrics,
                          tuple(space.members(config, input_shape, num_classes)))
    last = {"acc": 0.0}

    def report(step: int, value: float) -> None:
        if lost.is_set():
            raise TrialLost()
        last["acc"] = value
        if objectives is None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

    try:
        outcome = evaluate(candidate, report)
    except optuna.TrialPruned:
        _set_user_attrs(trial, {"val_acc": last["acc"], "reward": reward(last["acc"], metrics),
                                       "seconds": time.perf_counter() - t0})
        study.tell(trial, state=TrialState.PRUNED)
        return trial_row(stored_trial(study, trial))
    # 4. tell
    value = outcome.val_acc if objectives else budget.penalised(reward(outcome.val_acc, metrics), metrics)
    _set_user_attrs(trial, {**outcome.attrs, "val_acc": outcome.val_acc, "reward": value,
                            "seconds": time.perf_counter() - t0})
    study.tell(trial, _told(objectives, value, outcome.val_acc, metrics))
    return trial_row(stored_trial(study, trial))


def _told(objectives: Objectives | None, value: float, acc: float, metrics: dict) -> float | list[float]:
    """What the study is told: the scalar value, or each objective's value (a cost not measured, as for a candidate
    refused on a cheaper limit, as an unreachable 1e30: the trial is infeasible by its constraints anyway)."""
    if objectives is None:
        return value
    row = {**metrics, "val_acc": acc}
    return [float(row[k]) if row.get(k) is not None else (0.0 if d == "maximize" else 1e30)
            for k, d in zip(objectives.keys, objectives.directions)]


def _twin(study: optuna.Study, trial: optuna.Trial, config: dict,
          frozen: optuna.trial.FrozenTrial | None = None) -> optuna.trial.FrozenTrial | None:
    """An earlier trial trained (or being trained) with exactly these values, unless ``trial`` re-runs an
    interrupted one: a sampler that proposes it again learns nothing new from a second training.

    Why not reuse its result as a new trial: a twin that counted towards ``n_trials`` made a restarted TPE search
    spend its budget on copies (its generator started over), and a model-based sampler told the same point twice
    grows over-confident there."""
    if (frozen or stored_trial(study, trial)).system_attrs.get("failed_trial") is not None:
        return None
    key = json.dumps(config, sort_keys=True)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                         TrialState.WAITING)):
        if t.number != trial.number and not is_infeasible(t) and t.user_attrs.get("archkd_state") != "DUPLICATE" \
                and json.dumps(t.params, sort_keys=True) == key:
            return t
    return None
