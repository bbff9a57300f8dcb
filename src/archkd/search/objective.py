"""The search objective: the one place where search meets training.

A trial's value is the validation accuracy of the candidate after KD training at the search fidelity (epochs, data
fraction), with the shared teacher-output cache — or, for the NAS-then-KD baseline, after CE-only training — or,
for the joint student + process search, after a short DistPro process search (which trains the candidate while it
learns the pathway weights; measured at 3.9× a KD trial on digits by bench/akd.py, and the trial keeps its
``process.pt``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import optuna

from archkd.config import DistillConfig, ProcessConfig, TrainConfig
from archkd.data import DataBundle
from archkd.device import seed_everything
from archkd.distill import TeacherCache, fit, objective_from_config
from archkd.models import build_from_spec
from archkd.teacher import Teacher


class KDTrialObjective:
    """Train a candidate with KD (or CE when ``distill`` is None) and return its validation accuracy."""

    def __init__(self, data: DataBundle, train: TrainConfig, *, teacher: Teacher | None, distill: DistillConfig | None,
                 cache: TeacherCache | None, seed: int, device: str, trials_dir: Path | None,
                 process: ProcessConfig | None = None) -> None:
        self.data, self.train, self.teacher, self.distill = data, train, teacher, distill
        self.cache, self.seed, self.device, self.trials_dir = cache, seed, device, trials_dir
        self.process = process

    def __call__(self, config: dict, metrics: dict, trial: optuna.Trial,
                 report: Callable[[int, float], None]) -> tuple[float, dict]:
        seed_everything(self.seed)
        model = build_from_spec(metrics["spec"])
        out = self.trials_dir / f"{trial.number:04d}" if self.trials_dir else None
        if self.process is not None:
            return self._process_trial(model, metrics["spec"], out)
        objective = objective_from_config(self.distill, self.train.label_smoothing)

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

    def _process_trial(self, model, spec: dict, out: Path | None) -> tuple[float, dict]:
        from archkd.device import resolve_device
        from archkd.process import save_process, search_with_config

        res, objective = search_with_config(model, self.teacher.module, self.data, self.train, self.process,
                                            seed=self.seed, device=resolve_device(self.device))
        extra = {"val_acc": res.val_acc, "epochs": self.train.epochs, "process_seconds": res.seconds,
                 "meta_seconds": res.meta_seconds}
        if out is not None:
            extra["process"] = str(save_process(out / "process.pt", res, objective,  # absolute: the study outlives cwd
                                                {"student_spec": spec, "teacher": self.teacher.fingerprint}).resolve())
        return res.val_acc, extra
