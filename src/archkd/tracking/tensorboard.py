"""The ``tensorboard`` tracker: event files under ``runs/<name>/tensorboard/<run>``, scalars under hierarchical tags
and, for a finished trial, its parameters and final accuracy as an HParams record (TensorBoard's HParams view then
compares trials side by side). Extra: ``tensorboard``."""
from __future__ import annotations

from typing import Any

from archkd.tracking import Tracker, Tracking, flat, register_tracker, require, safe_name, tag


class TensorBoardTracker(Tracker):
    def __init__(self, tracking: Tracking, run: str) -> None:
        summary_writer = require("torch.utils.tensorboard", "tensorboard").SummaryWriter
        self.writer = summary_writer(str(tracking.root / "tensorboard" / safe_name(run)))
        if tracking.config_yaml:  # the resolved config, in TensorBoard's text tab (markdown: a code block)
            self.writer.add_text("config", "```yaml\n" + tracking.config_yaml + "\n```", 0)

    def epoch(self, row: dict) -> None:
        for k, v in row.items():
            t = tag(k)
            if t and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(t, v, int(row["epoch"]))
        self.writer.flush()

    def finish(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        # run_name="." writes the HParams record into this run's own folder, beside its scalars
        self.writer.add_hparams(flat(params), {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


register_tracker("tensorboard")(TensorBoardTracker)
