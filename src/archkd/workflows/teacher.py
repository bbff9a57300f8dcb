"""``archkd teacher train``: a teacher trained with cross-entropy, recorded as an ordinary archkd checkpoint."""
from __future__ import annotations

from archkd.config import Config
from archkd.data import DataBundle
from archkd.device import is_rank0, resolve_device, seed_everything, world
from archkd.distill import fit, model_from_checkpoint, objective_from_config
from archkd.models import create_model, model_spec
from archkd.workflows.inputs import accuracy_on_test, checkpoint_meta, prepare
from archkd.workflows.results import TeacherRun
from archkd.workflows.run import Log, metrics_sink, mirrored, record, start, verb, write_run


@verb("archkd teacher train")
def train_teacher(cfg: Config, log: Log | None = print, data: DataBundle | None = None, write: bool = False) -> TeacherRun | dict:
    """Train ``cfg.teacher.arch`` on the data with CE; the checkpoint records architecture, preprocessing, classes.
    With ``write`` (the ``teacher train`` verb), ``results.json`` and ``report.html`` describe the run."""
    log = mirrored(log)
    run = start(cfg)
    if data is None:
        _, data = prepare(cfg, log, need_teacher=False)
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model = create_model(cfg.teacher.arch, num_classes=data.num_classes, in_channels=data.input_shape[0])
    log(f"training teacher {cfg.teacher.arch} ({sum(p.numel() for p in model.parameters()):,} params) for "
        f"{cfg.teacher.train.epochs} epochs on {dev}")
    record(cfg)
    res = fit(model, data, cfg.teacher.train, objective=objective_from_config(None, cfg.teacher.train.label_smoothing),
              seed=cfg.seed, device=dev, out_dir=run / "teacher", spec=model_spec(model), meta=checkpoint_meta(data),
              log=log, on_epoch=metrics_sink(cfg, "teacher"))
    if not is_rank0():  # under torchrun the other processes only trained their shards
        return {"rank": world()[0], "val_acc": res.best_val_acc, "history": res.history}
    best, _ = model_from_checkpoint(res.best_path)
    test = accuracy_on_test(best, data, dev)
    out = TeacherRun(checkpoint=str(res.best_path), name=cfg.teacher.arch,
                     params=sum(p.numel() for p in best.parameters()), val_acc=res.best_val_acc, test_acc=test,
                     seconds=res.seconds, precision=res.precision, history=res.history)
    log(f"teacher: val acc {res.best_val_acc:.4f}" + (f", test acc {test:.4f}" if test is not None else "")
        + f" -> {res.best_path}")
    if write:
        write_run(cfg, run, "archkd teacher train", data, {"teacher": out.to_dict()})
    return out
