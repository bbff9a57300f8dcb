"""Leases: which worker holds a RUNNING trial, and taking over the trials of workers that died.

Each RUNNING trial carries a *lease* (user attribute ``archkd_lease``: worker id, host, pid, trial number, time) that
a heartbeat thread renews every ``heartbeat`` seconds. A trial is taken over only when its lease is stale: not
renewed for ``grace`` seconds, or held by a process on this host that no longer exists (so a search restarted after
SIGKILL takes its own trial back at once). A taken-over trial is marked FAIL and re-queued with the same parameters
(Optuna's ``RetryHeartbeatStaleTrialCallback``).
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from archkd.errors import ArchkdError

LEASE = "archkd_lease"
HOST = socket.gethostname()
WORKER = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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

    def reclaim(self, trials: Sequence[optuna.trial.FrozenTrial] | None = None) -> list[int]:
        """Fail every trial whose lease is stale and queue a retry with the same parameters; returns their numbers.

        ``trials``: the study as just read by the caller. When none of its RUNNING trials is stale (the usual case),
        nothing more is read; otherwise the RUNNING trials are read again under the take-over lock, as without it."""
        now = time.monotonic()
        if trials is not None and not any(self.is_stale(t, now) for t in trials if t.state == TrialState.RUNNING):
            return []  # (``any`` stops at the first stale one: the full pass below observes every lease)
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
        if stored_trial(self.study, trial).state != TrialState.RUNNING:
            return
        try:
            self.study.tell(trial, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            return
        self.retry(self.study, stored_trial(self.study, trial))

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
                    if stored_trial(self.study, trial).state != TrialState.RUNNING:
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


def stored_trial(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    """A running trial as the storage holds it now (its system attributes: a retry's slot, the lease)."""
    return study._storage.get_trial(trial._trial_id)
