"""The search objective: the one place where search meets training.

A trial's value is the validation accuracy of the candidate after KD training at the search fidelity (epochs, data
fraction), with the shared teacher-output cache — or, for the NAS-then-KD baseline, after CE-only training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import optuna

from archkd.config import DistillConfig, TrainConfig
from archkd.data import DataBundle
from archkd.device import seed_everything
from archkd.distill import TeacherCache, fit, objective_from_config
from archkd.models import build_from_spec
from archkd.teacher import Teacher


class KDTrialObjective:
    """Train a candidate with KD (or CE when ``distill`` is None) and return its validation accuracy."""

    def __init__(self, data: DataBundle, train: TrainConfig, *, teacher: Teacher | None, distill: DistillConfig | None,
                 cache: TeacherCache | None, seed: int, device: str, trials_dir: Path | None) -> None:
        self.data, self.train, self.teacher, self.distill = data, train, teacher, distill
        self.cache, self.seed, self.device, self.trials_dir = cache, seed, device, trials_dir

    def __call__(self, config: dict, metrics: dict, trial: optuna.Trial,
                 report: Callable[[int, float], None]) -> tuple[float, dict]:
        seed_everything(self.seed)
        model = build_from_spec(metrics["spec"])
        objective = objective_from_config(self.distill, self.train.label_smoothing)
        out = self.trials_dir / f"{trial.number:04d}" if self.trials_dir else None

        def on_epoch(epoch: int, row: dict) -> None:
            if "val_acc" in row:
                report(epoch, row["val_acc"])

        res = fit(model, self.data, self.train, objective=objective,
                  teacher=self.teacher.module if (self.teacher and objective.uses_teacher) else None,
                  cache=self.cache if objective.uses_teacher else None, seed=self.seed, device=self.device,
                  out_dir=out, spec=metrics["spec"], on_epoch=on_epoch, log=None)
        return res.best_val_acc, {"val_acc": res.best_val_acc, "epochs": self.train.epochs,
                                  "checkpoint": str(res.best_path) if res.best_path else None,
                                  "images_per_s": res.images_per_s}
