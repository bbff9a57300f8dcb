"""archkd.tracking — experiment trackers: each training run's epochs, and each trial's parameters, where users look.

Contract:
- A tracker is a ``Tracker``: ``epoch(row)`` gets each of fit's epoch rows (keys ``train_loss``, ``val_acc``, ``lr``,
  ``images_per_s``, ``seconds``, ``loss_<term>``), logged under hierarchical tags (``train/loss``, ``val/acc``,
  ``loss/<term>``, ...) at step ``epoch``; ``finish(params, metrics)`` records a finished run's parameters (a search
  trial's configuration and KD recipe) with its final metrics, as hyper-parameters the tracker's comparison view
  shows; ``close()`` flushes.
- ``TRACKERS`` is a registry of factories ``fn(tracking, run) -> Tracker``; ``train.loggers`` (config) names them,
  checked when the config loads. Built in: ``tensorboard`` (event files under ``runs/<name>/tensorboard/<run>``, the
  HParams plugin's records) and ``mlflow`` (a local SQLite store, ``runs/<name>/mlflow.db``: one MLflow run per
  training run, nested under one parent run per archkd run) and ``wandb`` (Weights & Biases, offline by default:
  ``runs/<name>/wandb/``, runs grouped by the archkd run). Each backend is an optional extra, imported on use.
- ``Tracking(root, group, names)`` is what a verb hands down: where its run directory is, the archkd run's name and
  the trackers to open; ``open_trackers(tracking, run)`` opens one of each for one training run.

Why here, below ``distill``: fit's epoch rows go to ``distill.metrics.MetricsLog``, which forwards them to the open
trackers; the trackers know nothing of training.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archkd.config import register_choices
from archkd.errors import ArchkdError
from archkd.registry import Registry

__all__ = ["Tracker", "Tracking", "TRACKERS", "register_tracker", "open_trackers", "tag", "safe_name", "require"]


class Tracker:
    """One training run's view in one tracker (see the package docstring)."""

    def epoch(self, row: dict) -> None:
        raise NotImplementedError

    def finish(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Tracking:
    """The trackers a verb opens for its training runs: run directory, archkd run name, tracker names, and the run's
    resolved config (YAML text), which each tracker keeps as an artifact beside the runs."""
    root: Path
    group: str
    names: tuple[str, ...]
    config_yaml: str = ""


TRACKERS: Registry[Callable[[Tracking, str], Tracker]] = Registry("tracker")
register_choices("train.loggers", TRACKERS.names)
register_choices("teacher.train.loggers", TRACKERS.names)


def register_tracker(name: str) -> Callable:
    """Register ``fn(tracking, run) -> Tracker`` as tracker ``name`` (one file plus this decorator)."""
    return TRACKERS.register(name)


def open_trackers(tracking: Tracking | None, run: str) -> list[Tracker]:
    return [TRACKERS.lookup(n)(tracking, run) for n in tracking.names] if tracking else []


# fit's epoch-row keys -> hierarchical tags (loss terms go to loss/<term>)
TAGS = {"train_loss": "train/loss", "val_acc": "val/acc", "lr": "train/lr", "images_per_s": "speed/images_per_s",
        "seconds": "speed/epoch_seconds"}


def require(module: str, logger: str, install: str | None = None) -> Any:
    """``module`` imported for the ``logger`` tracker, or the one-line error that says how to get it: trackers are
    optional extras, and a missing one must name its package, not raise an ImportError from inside a training."""
    try:
        found = __import__(module)  # the import statement's hook, so an environment that hides a package is obeyed
        for part in module.split(".")[1:]:
            found = getattr(found, part)
        return found
    except ImportError:
        raise ArchkdError(f"train.loggers=[{logger}] needs the {logger} package",
                          f"pip install {install or repr(f'archkd[{logger}]')}, or drop {logger} from train.loggers"
                          ) from None


def tag(key: str) -> str | None:
    """The hierarchical tag of an epoch-row key (None for keys that are not scalars to plot, e.g. ``epoch``)."""
    if key in TAGS:
        return TAGS[key]
    return f"loss/{key[len('loss_'):]}" if key.startswith("loss_") else None


def safe_name(run: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run)


def flat(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as scalars a tracker takes: numbers, strings and booleans kept, anything else as its text."""
    return {str(k): v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}


from archkd.tracking import mlflow_tracker as _mlflow  # noqa: E402,F401  (registers "mlflow")
from archkd.tracking import tensorboard as _tensorboard  # noqa: E402,F401  (registers "tensorboard")
from archkd.tracking import wandb_tracker as _wandb  # noqa: E402,F401  (registers "wandb")
