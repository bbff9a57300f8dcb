"""``archkd distill``: a student distilled from the teacher with the full recipe (vanilla KD, feature losses, or a
searched DistPro process replayed), then tested and measured."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from archkd.config import Config, to_dict
from archkd.data import DataBundle
from archkd.device import is_rank0, resolve_device, seed_everything, world
from archkd.distill import epoch_steps, fit, model_from_checkpoint, objective_from_config, teacher_accuracy
from archkd.distill.objective import DistillObjective
from archkd.measure import format_budget, measure_model
from archkd.models import model_spec
from archkd.process import ProcessObjective
from archkd.teacher import Teacher
from archkd.teacher.features import require_features
from archkd.workflows.compare import Side, compare, teacher_side
from archkd.workflows.inputs import accuracy_on_test, build_student, checkpoint_meta, make_cache, prepare
from archkd.workflows.results import DistillRun
from archkd.workflows.run import Log, metrics_sink, mirrored, record, start, verb, write_run


@dataclass
class Recipe:
    """The loss a student is distilled with: ``objective`` (what ``fit`` trains with) and, when it replays a
    searched DistPro process, that process (``replay``: the same module), which counts the pathway losses
    τ-clipping skipped."""
    objective: DistillObjective
    replay: ProcessObjective | None = None

    def pathway_loss_saved(self) -> float | None:
        """Share of pathway loss computations skipped by τ-clipping (none without a replayed process)."""
        return self.replay.saved_share() if self.replay is not None else None


def distill_recipe(cfg: Config, total_steps: int) -> Recipe:
    """Vanilla KD (+ feature losses) from ``cfg.distill``, or a searched process replayed over ``total_steps``."""
    if not cfg.distill.process:
        return Recipe(objective_from_config(cfg.distill, cfg.train.label_smoothing))
    from archkd.process import load_process, replay_objective

    replay = replay_objective(load_process(cfg.distill.process), total_steps, mode=cfg.process.replay,
                              normalization=cfg.process.replay_normalization, tau=cfg.process.tau,
                              label_smoothing=cfg.train.label_smoothing)
    return Recipe(replay, replay)


@verb("archkd distill")
def distill(cfg: Config, log: Log | None = print, teacher: Teacher | None = None, data: DataBundle | None = None,
            student: torch.nn.Module | None = None, subdir: str = "student", save_config: bool = True,
            resume: bool = False, write: bool = False) -> DistillRun | dict:
    """Distill a student (``cfg.student`` or a given module) from the teacher with the full recipe; test it.

    ``save_config=False`` leaves the run's ``config.yaml`` alone (top-k finalists of a search share its run dir);
    ``resume=True`` continues from the run's ``last.pt`` when it was written by the same run; ``write`` (the
    ``distill`` verb) writes ``results.json`` and ``report.html``."""
    log = mirrored(log)
    run = start(cfg)
    if teacher is None or data is None:
        teacher, data = prepare(cfg, log)
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model = student if student is not None else build_student(cfg, data)
    spec = model_spec(model)
    _, steps_per_epoch = epoch_steps(len(data.train.subset(cfg.train.data_fraction, cfg.seed)), cfg.train.batch_size)
    recipe = distill_recipe(cfg, cfg.train.epochs * steps_per_epoch)
    if recipe.replay is not None:
        require_features(teacher, "replayed processes")
    elif recipe.objective.teacher_taps:
        require_features(teacher, "feature losses", otherwise="use logit KD only (distill.features=[])")
    cache = make_cache(cfg, teacher, data)
    t_acc = teacher_accuracy(teacher.module, data, cache, dev)
    t_test = accuracy_on_test(teacher.module, data, dev) if is_rank0() else None
    log(f"teacher {teacher.name}: val acc {t_acc:.4f} (val: held out of the training images, which the teacher may "
        "have seen)" + (f", test acc {t_test:.4f} (test split)" if t_test is not None else ""))
    rank0 = is_rank0()  # under torchrun the other processes train their shards and leave the rest to rank 0
    m = measure_model(model, data.input_shape, runtimes=(cfg.budget.latency_runtime,), latency=rank0,
                      threads=cfg.budget.latency_threads, batch_size=cfg.budget.latency_batch_size)
    log(f"distilling {spec['name']} ({format_budget(m)}) from {teacher.name} for {cfg.train.epochs} epochs on {dev}"
        + (f"; teacher cache {cache.dir}" if cache else ""))
    if save_config:
        record(cfg)
    res = fit(model, data, cfg.train, objective=recipe.objective, teacher=teacher.module, cache=cache, seed=cfg.seed,
              device=dev, out_dir=run / subdir, spec=spec,
              meta={**checkpoint_meta(data), "distill": to_dict(cfg.distill), "teacher": teacher.fingerprint,
                    "data": data.fingerprint},
              log=log, resume=resume, on_epoch=metrics_sink(cfg, subdir))
    if not rank0:
        return {"rank": world()[0], "val_acc": res.best_val_acc, "history": res.history}
    best, _ = model_from_checkpoint(res.best_path)
    test = accuracy_on_test(best, data, dev)
    speed = f"{res.images_per_s:.0f} img/s" if res.images_per_s else "trained earlier: read back"
    log(f"student: val acc {res.best_val_acc:.4f}" + (f", test acc {test:.4f}" if test is not None else "")
        + f" ({speed}) -> {res.best_path}")
    saved = recipe.pathway_loss_saved()
    if saved is not None and cfg.process.tau is not None:
        log(f"τ-clipping (τ={cfg.process.tau}) skipped {100 * saved:.1f}% of pathway loss computations")
    out = DistillRun(spec=spec, checkpoint=str(res.best_path), params=m["params"], flops=m["flops"], macs=m["macs"],
                     latency=m.get("latency"), peak_activation_bytes=m.get("peak_activation_bytes"),
                     val_acc=res.best_val_acc, test_acc=test, teacher_val_acc=t_acc, teacher_test_acc=t_test,
                     epochs=cfg.train.epochs, history=res.history, seconds=res.seconds,
                     images_per_s=res.images_per_s, precision=res.precision, cache=res.cache,
                     process=cfg.distill.process,
                     process_replay=cfg.process.replay if cfg.distill.process else None, pathway_loss_saved=saved)
    if write:
        versus = compare(cfg, teacher_side(teacher, data, cfg, t_test), Side(spec["name"], m["params"], test, best),
                         data.input_shape, log=log)
        write_run(cfg, run, "archkd distill", data,
                  {"teacher": {**teacher.describe(), "val_acc": t_acc, "test_acc": t_test}, "final": out.to_dict(),
                   "comparison": versus.to_dict()})
    return out
