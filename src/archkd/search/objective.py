"""The search objective: the one place where search meets training.

A trial's value is the validation accuracy of the candidate after KD training at the search fidelity (epochs, data
fraction), with the shared teacher-output cache — or, for the NAS-then-KD baseline, after CE-only training — or,
for the joint student + process search, after a short DistPro process search (which trains the candidate while it
learns the pathway weights; measured at 3.9× a KD trial on digits by bench/akd.py, and the trial keeps its
``process.pt``). The candidate's recipe values (``distill.temperature``, ``train.lr``, ...) replace the base recipe
for this trial only.

Checkpoints live in ``trials/<slot>``: a retry of an interrupted trial has the same slot, and ``fit(resume=True)``
continues from the slot's last epoch (model, optimiser, schedule, RNG; the data order is a function of seed and
epoch), so an interruption costs at most one epoch of that trial. A generator space's candidate stands for a family
of k networks (``Candidate.members``): each is trained in ``trials/<slot>/m<j>`` and the trial's value is their mean
(``family_outcome``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from archkd.config import DistillConfig, ProcessConfig, TrainConfig
from archkd.data import DataBundle
from archkd.device import seed_everything
from archkd.distill import BlockwiseScorer, MetricsLog, TeacherCache, fit, objective_from_config
from archkd.models import build_from_spec
from archkd.progress import Progress
from archkd.search.study import Candidate, Report, TrialOutcome
from archkd.teacher import Teacher
from archkd.tracking import Tracking


def apply_recipe(train: TrainConfig, distill: DistillConfig | None, recipe: dict[str, Any]
                 ) -> tuple[TrainConfig, DistillConfig | None]:
    """The trial's recipe: ``train.*`` and ``distill.*`` values of ``recipe`` over the base configs."""
    t = {k.split(".", 1)[1]: v for k, v in recipe.items() if k.startswith("train.")}
    d = {k.split(".", 1)[1]: v for k, v in recipe.items() if k.startswith("distill.")}
    return replace(train, **t), (replace(distill, **d) if distill is not None else None)


class KDTrialObjective:
    """Train a candidate with KD (or CE when ``distill`` is None) and return its validation accuracy."""

    def __init__(self, data: DataBundle, train: TrainConfig, *, teacher: Teacher | None, distill: DistillConfig | None,
                 cache: TeacherCache | None, seed: int, device: str, trials_dir: Path | None,
                 process: ProcessConfig | None = None, metrics: Path | None = None,
                 tracking: Tracking | None = None, progress: Progress | None = None) -> None:
        self.data, self.train, self.teacher, self.distill = data, train, teacher, distill
        self.cache, self.seed, self.device, self.trials_dir = cache, seed, device, trials_dir
        self.process, self.metrics, self.tracking, self.progress = process, metrics, tracking, progress

    def __call__(self, candidate: Candidate, report: Report) -> TrialOutcome:
        """Train every member of the candidate; its value is their mean validation accuracy.

        For a family of k networks, ``report`` sees step ``j·E + e`` (epoch e of member j, E epochs each) with the mean
        over the members trained so far and member j's current accuracy, so a pruner compares trials at equal numbers
        of trained epochs."""
        members = candidate.members or (candidate.spec,)
        train, distill = apply_recipe(self.train, self.distill, candidate.recipe)
        base = self.trials_dir / f"{candidate.slot:04d}" if self.trials_dir else None
        outcomes: list[TrialOutcome] = []
        for j, spec in enumerate(members):
            name = f"trial {candidate.number}" + (f" member {j}" if len(members) > 1 else "")
            sink = MetricsLog(self.metrics, name, self.tracking) if self.metrics else None
            done = [o.val_acc for o in outcomes]

            def on_epoch(epoch: int, row: dict, sink=sink, done=done, j=j) -> None:
                if sink:
                    sink.write(row)
                if "val_acc" in row:
                    report(j * train.epochs + epoch, (sum(done) + row["val_acc"]) / (len(done) + 1))

            out = base / f"m{j}" if base is not None and len(members) > 1 else base
            outcomes.append(self._member(spec, train, distill, out, on_epoch, candidate))
            if sink:  # the trial's configuration and KD recipe as hyper-parameters, beside its result
                sink.finish({**candidate.config, **(candidate.recipe or {}), "trial": candidate.number, "member": j},
                            {"val_acc": outcomes[-1].val_acc})
        return outcomes[0] if len(outcomes) == 1 else family_outcome(members, outcomes)

    def _member(self, spec: dict, train: TrainConfig, distill: DistillConfig | None, out: Path | None,
                on_epoch: Callable[[int, dict], None], candidate: Candidate) -> TrialOutcome:
        seed_everything(self.seed)
        model = build_from_spec(spec)
        if self.process is not None:
            return self._process_trial(model, train, spec, out, on_epoch, self._identity(candidate, None))
        objective = objective_from_config(distill, train.label_smoothing)
        res = fit(model, self.data, train, objective=objective,
                  teacher=self.teacher.module if (self.teacher and objective.uses_teacher) else None,
                  cache=self.cache if objective.uses_teacher else None, seed=self.seed, device=self.device,
                  out_dir=out, spec=spec, meta=self._identity(candidate, distill), on_epoch=on_epoch, log=None,
                  resume=True, progress=self.progress)
        return TrialOutcome(res.best_val_acc, {"epochs": train.epochs, "resumed_at_epoch": res.resumed_at_epoch,
                                               "checkpoint": str(res.best_path) if res.best_path else None,
                                               "images_per_s": res.images_per_s})

    def _identity(self, candidate: Candidate, distill: DistillConfig | None) -> dict:
        """What else makes a trial's training this training (a checkpoint of another teacher, data or loss under the
        same slot must never be resumed)."""
        return {"recipe": candidate.recipe, "teacher": self.teacher.fingerprint if self.teacher else None,
                "data": self.data.fingerprint, "distill": dataclasses.asdict(distill) if distill else None}

    def _process_trial(self, model, train: TrainConfig, spec: dict, out: Path | None,
                       on_epoch: Callable[[int, dict], None], identity: dict) -> TrialOutcome:
        from archkd.device import resolve_device
        from archkd.process import save_process, search_with_config

        res, objective = search_with_config(model, self.teacher.module, self.data, train, self.process,
                                            seed=self.seed, device=resolve_device(self.device), out_dir=out,
                                            spec=spec, resume=True, on_epoch=on_epoch, identity=identity)
        extra = {"epochs": train.epochs, "process_seconds": res.seconds, "meta_seconds": res.meta_seconds}
        if out is not None:
            extra["process"] = str(save_process(out / "process.pt", res, objective,  # absolute: the study outlives cwd
                                                {"student_spec": spec, "teacher": self.teacher.fingerprint}).resolve())
        return TrialOutcome(res.val_acc, extra)


class BlockwiseTrialObjective:
    """Score a candidate blockwise (``search.fidelity=blockwise``, ``archkd.distill.blockwise``): each stage trained
    alone to reproduce the teacher's stage, memoised across candidates; the trial value is ``exp(−mean block NSR)``
    instead of a validation accuracy, and no trial trains the whole student (the top-k finalists still do)."""

    def __init__(self, scorer: BlockwiseScorer) -> None:
        self.scorer = scorer

    def __call__(self, candidate: Candidate, report: Report) -> TrialOutcome:
        members = candidate.members or (candidate.spec,)
        outcomes = []
        for spec in members:
            s = self.scorer.score(build_from_spec(spec))
            outcomes.append(TrialOutcome(s.score, {"blockwise": s.to_dict()}))
        return outcomes[0] if len(outcomes) == 1 else family_outcome(members, outcomes)


def family_outcome(members: tuple, outcomes: list[TrialOutcome]) -> TrialOutcome:
    """A family's value: the mean validation accuracy of its k members (AutoKD scores the generator, not one draw).

    The trial keeps the spread (``family_accs``, ``family_std``, the population standard deviation) and the best
    member's spec (``family_best_spec``) and checkpoint, which the final re-training takes; the trial's own ``spec``
    and budget metrics stay those of member 0, where they were measured."""
    accs = [o.val_acc for o in outcomes]
    best = max(range(len(accs)), key=lambda i: accs[i])
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / len(accs)) ** 0.5
    return TrialOutcome(mean, {**outcomes[best].attrs, "family_best_spec": members[best], "family_accs": accs,
                               "family_std": std, "family_best_member": best})
