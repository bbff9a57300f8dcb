"""The ``wandb`` tracker: Weights & Biases, **offline by default** — each training run is a W&B run written under
``runs/<name>/wandb/offline-run-*`` (``wandb sync`` uploads it later); ``WANDB_MODE=online`` in the environment logs
live instead. Runs are grouped by the archkd run's name (W&B's grouping stands in for nesting), the project is
``$WANDB_PROJECT`` or ``archkd``; per-epoch metrics under hierarchical names, a finished trial's parameters as its config
and its result in the summary. Extra: ``wandb``."""
from __future__ import annotations

import os
from typing import Any

from archkd.tracking import Tracker, Tracking, flat, register_tracker, require, tag


class WandbTracker(Tracker):
    def __init__(self, tracking: Tracking, run: str) -> None:
        wandb = require("wandb", "wandb")
        tracking.root.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_meta=True,
                                  disable_git=True, save_code=False)
        self.run = wandb.init(mode=os.environ.get("WANDB_MODE", "offline"), dir=str(tracking.root),
                              project=os.environ.get("WANDB_PROJECT", "archkd"), name=run, group=tracking.group,
                              job_type="train", reinit="create_new", settings=settings)
        if tracking.config_yaml:  # the resolved config beside the run's own parameters
            self.run.config.update({"archkd_config": tracking.config_yaml})

    def epoch(self, row: dict) -> None:
        scalars = {t: float(v) for k, v in row.items()
                   if (t := tag(k)) and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.run.log(scalars, step=int(row["epoch"]))

    def finish(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        self.run.config.update(flat(params), allow_val_change=True)
        self.run.summary.update({f"final/{k}": float(v) for k, v in metrics.items()})

    def close(self) -> None:
        self.run.finish()


register_tracker("wandb")(WandbTracker)
