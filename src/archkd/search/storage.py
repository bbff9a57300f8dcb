"""Where a study lives and what it was made for: storage URLs, the study definition, pruners, opening a study.

- ``sqlite:///path/study.db`` (the default, in the run directory): one process;
- ``journal:path/study.log``: Optuna's journal file, several processes on one machine without a server;
- ``postgresql://user@host/db`` (or any SQLAlchemy URL): many machines.

A study records the definition of the search it was made for (space, objective, budget, ...); reopening it for
another search is refused (``check_definition``) rather than mixing trials of two questions in one ranking.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, get_args

import optuna

from archkd.config import Pruner
from archkd.errors import ArchkdError


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


_PRUNER_CLASSES = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
                   "hyperband": optuna.pruners.HyperbandPruner}
PRUNERS = {name: _PRUNER_CLASSES[name] for name in get_args(Pruner)}  # the config's closed choice is the one list


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
               pruner_options: dict | None = None, directions: list[str] | None = None) -> optuna.Study:
    """Create or load the study (``directions``: one per objective of a multi-objective search, else ``direction``)
    and check it was made for this search's ``definition``."""
    made = make_pruner(pruner, pruner_options)
    sense = {"directions": directions} if directions else {"direction": direction}
    for attempt in range(5):
        try:
            study = optuna.create_study(storage=open_storage(storage), study_name=study_name, sampler=sampler,
                                        pruner=made, load_if_exists=True, **sense)
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


def storage_files(storage: str) -> list[Path]:
    """The files a file-backed storage changes on every write (journal log; SQLite database and its journals)."""
    if storage.startswith("journal:"):
        return [Path(storage[len("journal:"):].removeprefix("//"))]
    if storage.startswith("sqlite:///"):
        db = Path(storage[len("sqlite:///"):])
        return [db, db.with_name(db.name + "-journal"), db.with_name(db.name + "-wal")]
    return []


def _stamp(files: list[Path]) -> tuple:
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def wait_for_change(files: list[Path], timeout: float, step: float = 0.05) -> None:
    """Sleep up to ``timeout`` seconds, returning early once another process has written to the storage files.

    Why: a worker waiting for the study's last trials to finish elsewhere noticed the end only at its next poll
    (up to a second later, on the wall-clock of every multi-worker search); a ``stat`` every 50 ms costs
    microseconds. Without files to watch (a database server) it sleeps ``timeout``, as before."""
    if not files:
        time.sleep(timeout)
        return
    start, end = _stamp(files), time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(step, left))
        if _stamp(files) != start:
            return
