"""The search loop on an Optuna study, for one worker or many: ask, build and measure, evaluate, tell.

Why Optuna storage: every finished trial is committed to the study's storage the moment it ends, so a crash loses at
most the trial in flight, and any number of workers can share one study:

- ``sqlite:///path/study.db`` (the default, in the run directory): one process;
- ``journal:path/study.log``: Optuna's journal file, several processes on one machine without a server;
- ``postgresql://user@host/db`` (or any SQLAlchemy URL): many machines.

Trial counts are the study's totals, read from storage before every ``ask``, so N workers stop together at
``n_trials``. Each RUNNING trial carries a *lease* (user attribute ``archkd_lease``: worker id, host, pid, trial number,
time) that a heartbeat thread renews every ``heartbeat`` seconds. A trial is taken over only when its lease is stale:
not renewed for ``grace`` seconds, or held by a process on this host that no longer exists (so a search restarted
after SIGKILL takes its own trial back at once). A taken-over trial is marked FAIL and re-queued with the same
parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``); its :class:`Candidate` keeps the original trial's
``slot``, so the trial objective continues from the slot's last epoch checkpoint instead of starting over.

Over-budget candidates are told COMPLETE with reward 0 and positive Optuna constraint values (``record_constraints``:
relative excess over each budget limit), which Optuna's samplers, ``study.best_trial`` and optuna-dashboard read as
*infeasible*; they cost no training and do not count towards ``n_trials``.
"""
from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from archkd.errors import ArchkdError
from archkd.progress import Progress
from archkd.search.budget import Budget
from archkd.search.reward import Reward
from archkd.search.samplers import PROPOSER
from archkd.spaces import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

LEASE = "archkd_lease"
HOST = socket.gethostname()
WORKER = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: ``journal:<file>`` for the journal file, anything else an RDB (SQLAlchemy) URL."""
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):].removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    engine: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        _check_sqlite_is_optunas(Path(url[len("sqlite:///"):]))
    if url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}  # wait for another process's write instead of failing at once
    elif url.startswith("postgresql") or url.startswith("mysql"):
        engine = {"pool_pre_ping": True}  # a connection dropped by the server during a long trial is replaced
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


OPTUNA_TABLES = {"studies", "study_directions", "study_user_attributes", "study_system_attributes", "trials",
                 "trial_user_attributes", "trial_system_attributes", "trial_params", "trial_values",
                 "trial_intermediate_values", "trial_heartbeats", "version_info", "alembic_version"}


def _check_sqlite_is_optunas(path: Path) -> None:
    """Refuse a SQLite file that is not an Optuna study database, before Optuna adds its tables to it.

    Why: opening another program's database as study storage silently added 13 tables to it."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise ArchkdError(f"{path} is not a study database ({e})",
                          "give the search its own --storage file or another --name") from None
    foreign = sorted(tables - OPTUNA_TABLES)
    if foreign:
        raise ArchkdError(f"{path} is another program's database (tables {', '.join(foreign[:5])})",
                          "give the search its own --storage file or another --name")


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str)
    return out


def check_definition(study: optuna.Study, definition: dict[str, Any]) -> None:
    """Record what defines the study on first use; refuse to continue it with a different definition.

    Why: re-running a finished study under the same name with a changed budget, space or objective would otherwise
    return the old winner, which may break the new budget.
    """
    new = _flatten(definition)
    old = study.user_attrs.get("archkd_definition")
    if old is None:
        study.set_user_attr("archkd_definition", new)
        return
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if not diff:
        return

    def show(v: str | None) -> str:
        return "unset" if v is None else v

    def cut(v: str) -> str:
        return v if len(v) <= 60 else v[:57] + "..."

    changes = "; ".join(f"{k} {cut(show(old.get(k)))} → {cut(show(new.get(k)))}" for k in diff[:3])
    more = f" (+{len(diff) - 3} more)" if len(diff) > 3 else ""
    keep = " ".join(f"{k}={old[k]}" for k in diff[:3] if k in old and "." in k and len(old[k]) <= 60)
    raise ArchkdError(f"study '{study.study_name}' was made for another search: {changes}{more}",
                      "start a new study with another --name (or search.study_name), or continue this one with its "
                      f"own settings{': ' + keep if keep else ''}")


def recorded_definition(storage: str, study_name: str) -> dict[str, str]:
    """What an existing study recorded as its definition (``check_definition``; JSON strings by dotted key), or {}
    when there is no such study yet (a storage file that does not exist yet is not created)."""
    for prefix in ("sqlite:///", "journal:"):
        if storage.startswith(prefix) and not Path(storage[len(prefix):].removeprefix("//")).is_file():
            return {}
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        return {}
    return dict(study.user_attrs.get("archkd_definition") or {})


PRUNERS = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
           "hyperband": optuna.pruners.HyperbandPruner}


def make_pruner(name: str, options: dict | None = None) -> optuna.pruners.BasePruner:
    """Optuna's pruner ``name`` with ``search.pruner_options`` (Hyperband: ``reduction_factor`` is η,
    ``min_resource`` the fewest epochs a trial gets). Steps are trained epochs (of all family members so far)."""
    if name not in PRUNERS:
        raise ArchkdError(f"unknown pruner '{name}'", f"use one of {sorted(PRUNERS)}")
    try:
        return PRUNERS[name](**(options or {}))
    except TypeError as e:
        raise ArchkdError(f"search.pruner_options do not fit the {name} pruner ({e})",
                          "see optuna.pruners for its arguments, e.g. {reduction_factor: 3} for hyperband") from None


def open_study(storage: str, study_name: str, sampler: optuna.samplers.BaseSampler, pruner: str = "none",
               direction: str = "maximize", definition: dict | None = None,
               pruner_options: dict | None = None) -> optuna.Study:
    made = make_pruner(pruner, pruner_options)
    for attempt in range(5):
        try:
            study = optuna.create_study(storage=open_storage(storage), study_name=study_name, sampler=sampler,
                                        pruner=made, direction=direction, load_if_exists=True)
            break
        except ArchkdError:
            raise
        except ImportError as e:
            raise ArchkdError(f"cannot open study storage '{storage}': no database driver ({e})",
                              "pip install 'archkd[postgres]' for postgresql://") from None
        except Exception as e:  # noqa: BLE001 - storage errors are configuration problems
            # workers starting together on a fresh database race to create Optuna's tables: the loser retries
            if attempt == 4:
                raise ArchkdError(f"cannot open study storage '{storage}' "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                                  "check search.storage (sqlite:///runs/x/study.db, journal:runs/x/study.log or "
                                  "postgresql://user@host/db)") from None
            time.sleep(0.5 * (attempt + 1) + random.random() * 0.5)
    if definition is not None:
        check_definition(study, definition)
    return study


def is_infeasible(t: optuna.trial.FrozenTrial) -> bool:
    return t.user_attrs.get("archkd_state") == "INFEASIBLE" or any(v > 0 for v in t.constraints.values())


def counts(t: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards ``n_trials``: a candidate within budget that was trained to the end or pruned."""
    return (t.state == TrialState.COMPLETE and not is_infeasible(t)) or t.state == TrialState.PRUNED


def trial_row(t: optuna.trial.FrozenTrial) -> dict:
    ua = t.user_attrs
    state = ua.get("archkd_state") or t.state.name
    return {"number": t.number, "state": state, "config": dict(t.params), "params": ua.get("params"),
            "flops": ua.get("flops"), "latency_ms": ua.get("latency_ms"),
            "val_acc": ua.get("val_acc"), "reward": ua.get("reward"),
            "reason": ua.get("reason"), "seconds": ua.get("seconds"), "spec": ua.get("spec"),
            "checkpoint": ua.get("checkpoint"), "process": ua.get("process"), "recipe": ua.get("recipe") or {},
            "duplicate_of": ua.get("duplicate_of"), "family_accs": ua.get("family_accs"),
            "steps": None if t.last_step is None else t.last_step + 1,
            "family_std": ua.get("family_std"), "student_spec": ua.get("family_best_spec") or ua.get("spec"),
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


def _pid_alive(pid: int) -> bool:
    """Whether a process of this host's PID namespace exists (a lease names its worker's pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TrialLost(Exception):
    """This worker's trial was taken over by another worker (its lease looked stale to them): drop it, move on."""


def _same_host_dead(lease: dict) -> bool:
    return lease.get("host") == HOST and lease.get("worker") != WORKER and not _pid_alive(int(lease.get("pid", -1)))


class Worker:
    """This process's part in a shared study: leases on its own trials, take-over of stale ones.

    Staleness is judged on this worker's own clock, never by comparing another host's timestamps with ours: a lease
    is stale when its heartbeat counter has not moved for ``grace`` seconds *as observed here* (so clock skew or time
    zones between machines cannot make a live lease look old), or at once when it names a process on this host that
    no longer exists. A RUNNING trial without a lease yet (asked, not yet leased) is observed the same way.
    """

    def __init__(self, study: optuna.Study, heartbeat: float = 10.0, grace: float = 60.0, max_retry: int = 3,
                 log: Callable[[str], None] | None = None, lock: Path | None = None) -> None:
        if heartbeat <= 0 or grace <= heartbeat:
            raise ArchkdError(f"search.heartbeat_seconds={heartbeat} must be positive and below "
                              f"search.stale_after_seconds={grace}", "e.g. 10 and 60")
        self.study, self.heartbeat, self.grace, self.log, self.lock = study, heartbeat, grace, log, lock
        self._seen: dict[int, tuple[Any, float]] = {}  # trial number -> (last beat seen, when we first saw it)
        self.active: set[int] = set()  # trials this worker holds a lease on right now
        with warnings.catch_warnings():  # experimental since Optuna 2.8 and unchanged since; we pin its behaviour in tests
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry, inherit_intermediate_values=True)

    def is_stale(self, t: optuna.trial.FrozenTrial, now: float) -> bool:
        lease = t.user_attrs.get(LEASE)
        lease = lease if isinstance(lease, dict) and lease.get("trial") == t.number else None  # retries copy leases
        if lease is not None and lease.get("worker") == WORKER:  # ours: stale only if no call here trains it now
            return t.number not in self.active     # (an earlier search in this process ended without closing it)
        if lease is not None and _same_host_dead(lease):
            return True
        beat = (lease or {}).get("beat")
        seen = self._seen.get(t.number)
        if seen is None or seen[0] != beat:
            self._seen[t.number] = (beat, now)
            return False
        return now - seen[1] > self.grace

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """SQLite does not lock the row it checks before failing it, so two processes could both take one trial
        over: on SQLite, take-overs are serialised by a file lock beside the database (one machine, by design)."""
        if self.lock is None:
            yield
            return
        import fcntl

        with open(self.lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def reclaim(self) -> list[int]:
        """Fail every trial whose lease is stale and queue a retry with the same parameters; returns their numbers."""
        now = time.monotonic()
        taken = []
        with self._locked():
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if not self.is_stale(t, now):
                    continue
                try:  # check-and-set in the storage: of two workers reclaiming one trial, only one succeeds
                    if not self.study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                        continue
                except UpdateFinishedTrialError:
                    continue
                self.retry(self.study, self.study._storage.get_trial(t._trial_id))
                taken.append(t.number)
        if taken and self.log:
            self.log(f"     re-queued interrupted trial(s) {taken} of a worker that stopped")
        return taken

    def interrupted(self, trial: optuna.Trial) -> None:
        """This worker is stopping mid-trial (Ctrl-C): fail the trial and queue its retry now (unless it had already
        finished, or another worker took it over)."""
        if _frozen(self.study, trial).state != TrialState.RUNNING:
            return
        try:
            self.study.tell(trial, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            return
        self.retry(self.study, _frozen(self.study, trial))

    @contextmanager
    def lease(self, trial: optuna.Trial) -> Iterator[threading.Event]:
        """Hold a lease on ``trial`` while the block runs: written now, its beat counter renewed every ``heartbeat``
        seconds. The yielded event is set when the trial turns out to be no longer ours (taken over)."""
        stop, lost = threading.Event(), threading.Event()
        beat_no = [0]

        def write() -> None:
            beat_no[0] += 1
            trial.set_user_attr(LEASE, {"worker": WORKER, "host": HOST, "pid": os.getpid(), "trial": trial.number,
                                        "beat": beat_no[0], "time": time.time()})

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                try:
                    if _frozen(self.study, trial).state != TrialState.RUNNING:
                        lost.set()
                        return
                    write()
                except Exception:  # noqa: BLE001 - a missed beat is retried; the trial itself reports real errors
                    pass

        write()
        self.active.add(trial.number)
        thread = threading.Thread(target=beat, name=f"archkd-lease-{trial.number}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()
            self.active.discard(trial.number)


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


def _frozen(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    """The stored state of a live trial (system attributes included, which ``optuna.Trial`` does not expose)."""
    return study._storage.get_trial(trial._trial_id)


def _surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Whether ``trial`` was asked after other workers had already claimed the study's last slots."""
    if _frozen(study, trial).system_attrs.get("failed_trial") is not None:
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
               on_start: Callable[[], None] | None = None, enqueue: Sequence[dict] = ()) -> SearchResult:
    """Work on the study until it holds ``n_trials`` trials within budget (its total, whoever trained them).

    ``evaluate(candidate, report) -> TrialOutcome`` trains one candidate; the trial's value is
    ``reward(accuracy, metrics)`` (plain accuracy by default). ``report(step, accuracy)`` forwards intermediate values
    to the pruner and raises ``optuna.TrialPruned`` when told to stop. Every finished trial carries a ``reward``
    attribute (0 for over-budget candidates) that learning samplers read. ``max_attempts`` bounds the over-budget
    candidates this worker may draw in a row before it gives up on the budget. ``on_start()`` runs once the budget
    and the study's definition are accepted, before any trial (the caller records its config then). ``enqueue``:
    configurations asked before any sampler proposal (a pre-screen's best), queued once per study (a re-run or another
    worker finds them queued or done already; two workers starting at the same instant may both queue one, and the
    second copy then reuses the first's result as a twin).
    """
    reward = reward or Reward()
    check_feasible(space, budget, input_shape, num_classes)
    study = open_study(storage, study_name, sampler, pruner, definition=definition, pruner_options=pruner_options)
    if on_start is not None:
        on_start()
    for config in enqueue:
        study.enqueue_trial(config, skip_if_exists=True)
    lock = Path(storage[len("sqlite:///"):] + ".lock") if storage.startswith("sqlite:///") else None
    worker = Worker(study, heartbeat, grace, max_retry, log, lock=lock)
    table = TrialTable(log)
    finished = [t for t in study.get_trials(deepcopy=False) if counts(t)]
    if log and finished:
        log(f"resuming study '{study_name}': {len(finished)} trials finished")
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        table.row(trial_row(t))  # over-budget ones too: the table numbers every trial of the study
    complete_at_start = len(finished) >= n_trials
    infeasible_in_a_row = repeated_in_a_row = 0
    max_attempts = max_attempts or 20 * n_trials
    ran = waiting_note = 0
    while True:
        worker.reclaim()
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
            time.sleep(poll)
            continue
        if infeasible_in_a_row >= max_attempts:
            raise ArchkdError(f"{infeasible_in_a_row} sampled architectures in a row broke the budget "
                              f"({done} of {n_trials} trials done)",
                              "raise the budget, shrink the space or use a budget-aware sampler (random, akd)")
        trial = study.ask()  # 1. ask (a queued retry first)
        with worker.lease(trial) as lost:
            try:
                if _surplus(study, trial, n_trials):
                    trial.set_user_attr("archkd_state", "SURPLUS")
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                if progress is not None:
                    progress.search(done, n_trials, trial.number)
                row = _run_trial(study, trial, space, evaluate, budget, reward, input_shape, num_classes, lost)
            except (TrialLost, UpdateFinishedTrialError):
                if log:
                    log(f"     trial {trial.number} was taken over by another worker (its lease looked stale); "
                        "moving on")
                continue
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    worker.interrupted(trial)
                elif _frozen(study, trial).state == TrialState.RUNNING:
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
               reward: Reward, input_shape: tuple[int, ...], num_classes: int, lost: threading.Event) -> dict:
    t0 = time.perf_counter()
    trial.set_user_attr("archkd_state", "")  # a retry inherits its original's attributes: reset the outcome
    config = space.suggest(trial)
    twin = _twin(study, trial, config)
    if twin is not None:  # a known result: not trained, not counted; the loop asks the sampler again
        trial.set_user_attr("archkd_state", "DUPLICATE")
        trial.set_user_attr("duplicate_of", twin.number)
        study.tell(trial, state=TrialState.FAIL)
        return {"state": "DUPLICATE", "number": trial.number, "duplicate_of": twin.number}
    # 2. build and measure: milliseconds, and every budget limit becomes an Optuna constraint
    spec = space.spec(config, input_shape, num_classes)
    model = space.build(config, input_shape, num_classes)
    metrics = budget.measure(model, input_shape, latency=True if reward.needs_latency else None)
    recipe = space.recipe(config)
    for k, v in {**metrics, "spec": spec, "recipe": recipe}.items():
        trial.set_user_attr(k, v)
    if budget.mode == "constraint":  # a penalty is in the value itself: the trial is not infeasible
        record_constraints(study, trial, budget.constraints(metrics))
    bad = budget.violations(metrics)
    if bad and budget.mode == "constraint":
        for k, v in {"archkd_state": "INFEASIBLE", "reason": "; ".join(bad), "reward": 0.0,
                     "seconds": time.perf_counter() - t0}.items():
            trial.set_user_attr(k, v)
        study.tell(trial, 0.0)
        return trial_row(_frozen(study, trial))
    # 3. evaluate: train (or reuse an identical earlier trial)
    slot = _frozen(study, trial).system_attrs.get("failed_trial", trial.number)
    candidate = Candidate(trial.number, slot, config, spec, recipe, metrics,
                          tuple(space.members(config, input_shape, num_classes)))
    last = {"acc": 0.0}

    def report(step: int, value: float) -> None:
        if lost.is_set():
            raise TrialLost()
        last["acc"] = value
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()

    try:
        outcome = evaluate(candidate, report)
    except optuna.TrialPruned:
        trial.set_user_attr("val_acc", last["acc"])
        trial.set_user_attr("reward", reward(last["acc"], metrics))
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        study.tell(trial, state=TrialState.PRUNED)
        return trial_row(_frozen(study, trial))
    # 4. tell
    value = budget.penalised(reward(outcome.val_acc, metrics), metrics)
    for k, v in {**outcome.attrs, "val_acc": outcome.val_acc, "reward": value,
                 "seconds": time.perf_counter() - t0}.items():
        trial.set_user_attr(k, v)
    study.tell(trial, value)
    return trial_row(_frozen(study, trial))


def _twin(study: optuna.Study, trial: optuna.Trial, config: dict) -> optuna.trial.FrozenTrial | None:
    """An earlier trial trained (or being trained) with exactly these values, unless ``trial`` re-runs an
    interrupted one: a sampler that proposes it again learns nothing new from a second training.

    Why not reuse its result as a new trial: a twin that counted towards ``n_trials`` made a restarted TPE search
    spend its budget on copies (its generator started over), and a model-based sampler told the same point twice
    grows over-confident there."""
    if _frozen(study, trial).system_attrs.get("failed_trial") is not None:
        return None
    key = json.dumps(config, sort_keys=True)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                         TrialState.WAITING)):
        if t.number != trial.number and not is_infeasible(t) and t.user_attrs.get("archkd_state") != "DUPLICATE" \
                and json.dumps(t.params, sort_keys=True) == key:
            return t
    return None
