"""A verb's run directory and log: the hold on ``runs/<name>/`` for the call, ``log.txt``, ``config.yaml``,
``metrics.csv`` and, at the end, ``results.json`` with ``report.html``."""
from __future__ import annotations

import functools
import inspect
import logging
from datetime import datetime
from pathlib import Path
from typing import Callable

from archkd import rundir
from archkd.config import Config, save_config, to_dict
from archkd.data import DataBundle
from archkd.device import is_rank0, threads_in_use
from archkd.distill import MetricsLog, read_metrics
from archkd.errors import ArchkdError
from archkd.tracking import Tracking

Log = Callable[[str], None]

RUN_LOG = logging.getLogger("archkd.run")  # what a verb printed, also written to runs/<name>/log.txt
RUN_LOG.propagate = False
RUN_LOG.setLevel(logging.INFO)
RUN_LOG.addHandler(logging.NullHandler())  # outside a run, its lines go nowhere (not to logging's stderr fallback)


def mirrored(log: Log | None) -> Log:
    """The caller's log (print, the CLI's timestamped printer, or silence), mirrored into the run's ``log.txt``.
    Under torchrun only rank 0 speaks."""
    if not is_rank0():
        return lambda _m: None
    if getattr(log, "mirrored", False):  # already wrapped by the verb that called this one
        return log
    base = log or (lambda _m: None)

    def both(msg: str) -> None:
        base(msg)
        RUN_LOG.info(msg)

    both.mirrored = True  # type: ignore[attr-defined]
    return both


def log_file(path: Path) -> None:
    """Send ``RUN_LOG`` to ``path`` (appending: a resumed run continues its log), replacing an earlier run's file."""
    target = str(path.resolve())
    if any(getattr(h, "baseFilename", None) == target for h in RUN_LOG.handlers):
        return
    close_log_file()
    handler = logging.FileHandler(target, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    RUN_LOG.addHandler(handler)


def close_log_file() -> None:
    for h in list(RUN_LOG.handlers):
        if isinstance(h, logging.FileHandler):
            RUN_LOG.removeHandler(h)
            h.close()


def start(cfg: Config) -> Path:
    """The run directory with its log file (rank 0 only under torchrun). The config is written later, by
    ``record``, once the inputs are accepted: a re-run refused for bad input leaves the earlier run's config alone."""
    run = cfg.run_dir
    if not is_rank0():
        return run
    try:
        run.mkdir(parents=True, exist_ok=True)
        log_file(run / "log.txt")
    except OSError as e:
        raise ArchkdError(f"cannot write the run directory {run} ({e.strerror or type(e).__name__})",
                          "give a writable folder with --runs-dir (or runs_dir=...)") from None
    return run


def record(cfg: Config) -> None:
    """Write the resolved config (what actually runs) into the run directory, just before the work starts; the run
    becomes the verb's (``rundir.own``)."""
    if is_rank0():
        save_config(cfg, cfg.run_dir / "config.yaml")
        rundir.own(cfg.run_dir)


def verb(name: str, shared: bool = False, owns: bool = True) -> Callable:
    """A verb's hold on its run directory for the length of the call (``archkd.rundir``): one process at a time
    (``shared``: search workers of one study), and the results of one verb per directory. Whether the call writes
    the run's results is its ``write`` argument (verbs without one always write, unless ``owns=False``: a verb that
    adds to another verb's run)."""

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the wrapped verb's own signature
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            run = bound.arguments["cfg"].run_dir
            if not is_rank0():  # under torchrun rank 0 holds the run for the group
                return fn(*args, **kwargs)
            rundir.claim(run, name, writes=owns and bool(bound.arguments.get("write", True)), shared=shared)
            try:
                return fn(*args, **kwargs)
            finally:
                if rundir.release(run):  # the outermost verb on this run: its log file is done too
                    close_log_file()

        return wrapper

    return deco


def metrics_sink(cfg: Config, run: str) -> Callable[[int, dict], None]:
    """An ``on_epoch`` callback appending fit's epoch rows to the run's ``metrics.csv`` as ``run`` (and to the
    experiment trackers of ``train.loggers``)."""
    sink = MetricsLog(cfg.run_dir / "metrics.csv", run, tracking(cfg))
    return lambda _epoch, row: sink.write(row)


def tracking(cfg: Config) -> Tracking | None:
    """The trackers of ``train.loggers`` (``train.tensorboard`` adds tensorboard) for this run; rank 0 only."""
    names = tuple(dict.fromkeys([*cfg.train.loggers, *(["tensorboard"] if cfg.train.tensorboard else [])]))
    if not names or not is_rank0():
        return None
    import yaml

    return Tracking(cfg.run_dir, cfg.name, names, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def write_run(cfg: Config, run: Path, command: str, data: DataBundle, parts: dict) -> dict:
    """``results.json`` and ``report.html`` of a verb: the config, the data, ``parts`` and the run's metrics.
    Returns the results as written."""
    results = {"name": cfg.name, "created": datetime.now().isoformat(timespec="seconds"), "command": command,
               "config": to_dict(cfg), "threads": threads_in_use(), "dataset": data.describe(), **parts,
               "metrics": read_metrics(run / "metrics.csv")}
    return rewrite_run(run, results)


def rewrite_run(run: Path, results: dict) -> dict:
    """Write ``results`` as the run's ``results.json`` and ``report.html``; returns them."""
    from archkd.report import write_report, write_results

    write_results(run, results)
    write_report(run, results)
    return results
