"""``archkd demo``: teacher → KD-guided search under a budget → final distillation → test → export → report,
written like every other verb's run (``write_run``)."""
from __future__ import annotations

import time
from copy import deepcopy

from archkd.config import Config, to_dict
from archkd.device import seed_everything
from archkd.search import Budget
from archkd.search.finalise import trial_config
from archkd.teacher import load_teacher
from archkd.workflows.compare import checkpoint_side, compare, teacher_side
from archkd.workflows.distill import distill
from archkd.workflows.export import export
from archkd.workflows.inputs import prepare
from archkd.workflows.run import Log, mirrored, start, verb, write_run
from archkd.workflows.search import search
from archkd.workflows.teacher import train_teacher

SEARCH_KEYS = ("space", "sampler", "guide", "n_trials", "fidelity", "storage", "best_trial", "reward", "pareto")
TEACHER_KEYS = ("name", "params", "val_acc", "test_acc", "checkpoint")


@verb("archkd demo")
def demo(cfg: Config, log: Log | None = print) -> dict:
    """teacher → KD-guided search under a budget → final distillation → test → export → report, on one dataset."""
    from archkd.models import build_from_spec
    from archkd.report import REPORT_FILE, RESULTS_FILE

    log = mirrored(log)
    t0 = time.perf_counter()
    run = start(cfg)
    timings: dict[str, float] = {}
    log(f"[1/5] data and teacher — run directory {run}")
    teacher, data = prepare(cfg, log, need_teacher=False)
    if teacher is not None:
        t_info = teacher.describe()
    else:
        t_info = train_teacher(cfg, log, data=data)
        teacher = load_teacher(t_info["checkpoint"])
    timings["teacher_s"] = time.perf_counter() - t0
    budget = Budget.from_config(cfg.budget).describe()
    log(f"[2/5] KD-guided search ({cfg.search.n_trials} students, budget {budget})")
    if not cfg.search.study_name:  # the demo retrains its teacher: a re-run with another teacher is another study
        cfg = deepcopy(cfg)
        cfg.search.study_name = f"{cfg.name}-teacher-{teacher.fingerprint[:8]}"
    s = search(cfg, log, teacher=teacher, data=data, write=False)
    timings["search_s"] = s.seconds
    log(f"[3/5] final distillation of trial #{s.best_trial} with the full recipe ({cfg.train.epochs} epochs)")
    seed_everything(cfg.seed)
    final = distill(trial_config(cfg, s.best), log, teacher=teacher, data=data,
                    student=build_from_spec(s.best["student_spec"]))
    timings["final_s"] = final.seconds
    if t_info.get("test_acc") is None:  # a given teacher: its accuracy as measured on this data, both splits
        t_info = {**t_info, "val_acc": final.teacher_val_acc, "test_acc": final.teacher_test_acc}
    versus = compare(cfg, teacher_side(teacher, data, cfg, t_info.get("test_acc")),
                     checkpoint_side(final.checkpoint, final.test_acc), data.input_shape, log=log)
    log("[4/5] export")
    exp = export(cfg, checkpoint=final.checkpoint, data=data, log=log)
    timings["total_s"] = time.perf_counter() - t0
    log("[5/5] report")
    results = write_run(cfg, run, "archkd demo", data, {
        "teacher": {k: t_info.get(k) for k in TEACHER_KEYS}, "budget": to_dict(cfg.budget),
        "search": {k: s[k] for k in SEARCH_KEYS}, "trials": s.trials, "final": final.to_dict(), "export": exp,
        "comparison": versus.to_dict(), "timings": timings})
    log(f"wrote {run / RESULTS_FILE} and {run / REPORT_FILE}")
    return results
