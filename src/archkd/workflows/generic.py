"""``archkd teacher generic``: GTN, a generic teacher trained against a weight-sharing supernet of student pools."""
from __future__ import annotations

from dataclasses import asdict

from archkd.config import Config
from archkd.device import resolve_device, seed_everything
from archkd.distill import model_from_checkpoint
from archkd.errors import ArchkdError
from archkd.models import create_model, model_spec
from archkd.spaces import create_space
from archkd.workflows.inputs import accuracy_on_test, checkpoint_meta, prepare
from archkd.workflows.results import GenericTeacherRun
from archkd.workflows.run import Log, metrics_sink, mirrored, record, start, verb, write_run


@verb("archkd teacher generic")
def generic_teacher(cfg: Config, log: Log | None = print) -> GenericTeacherRun:
    """GTN: train a generic teacher against a weight-sharing supernet of ``cfg.generic.pool`` (students of
    ``cfg.generic.space``), from scratch (``teacher.arch``) or fine-tuning ``teacher.path`` (an archkd checkpoint).

    Writes ``runs/<name>/teacher/best.pt`` (an ordinary teacher checkpoint for ``distill``, ``search``, ...),
    ``supernet.pt`` and, for a finite pool, ``pool/<i>.pt`` (each student with its supernet weights); re-running an
    interrupted command continues it."""
    from archkd.teacher.generic import make_pool, train_generic_teacher

    log = mirrored(log)
    run = start(cfg)
    loaded, data = prepare(cfg, log, need_teacher=False)
    g = cfg.generic
    dev = resolve_device(cfg.device)
    if loaded is not None:
        if loaded.spec is None:
            raise ArchkdError(f"fine-tuning a generic teacher needs an archkd checkpoint, but {loaded.source} is not one",
                              "give a checkpoint of 'archkd teacher train', or train from scratch with --arch")
        model = loaded.module
        for p in model.parameters():
            p.requires_grad_(True)
        begin = f"fine-tuning {loaded.source}"
    else:
        seed_everything(cfg.seed)
        model = create_model(cfg.teacher.arch, num_classes=data.num_classes, in_channels=data.input_shape[0])
        begin = f"{cfg.teacher.arch} from scratch"
    pool = make_pool(create_space(g.space, **g.space_kwargs), list(g.pool), data.input_shape, data.num_classes,
                     cfg.seed, cfg.budget.max_params, teacher_params=sum(p.numel() for p in model.parameters()))
    n_pool = f"{len(pool.configs)} students" if pool.configs is not None else "the whole space"
    log(f"generic teacher (GTN): {begin} ({sum(p.numel() for p in model.parameters()):,} params), "
        f"{cfg.teacher.train.epochs} epochs on {dev}, conditioned on {n_pool} of space '{g.space}'")
    record(cfg)
    res = train_generic_teacher(model, data, pool, cfg.teacher.train, cfg.train, cfg.distill, g, seed=cfg.seed,
                                device=dev, out_dir=run, meta=checkpoint_meta(data), log=log,
                                on_epoch=metrics_sink(cfg, "generic teacher"))
    best, _ = model_from_checkpoint(res.fit.best_path)
    test = accuracy_on_test(best, data, dev)
    log(f"generic teacher: val acc {res.fit.best_val_acc:.4f}" + (f", test acc {test:.4f}" if test is not None else "")
        + f" -> {res.fit.best_path}")
    out = GenericTeacherRun(checkpoint=str(res.fit.best_path), name=model_spec(best)["name"],
                            params=sum(p.numel() for p in best.parameters()), val_acc=res.fit.best_val_acc,
                            test_acc=test, seconds=res.fit.seconds, history=res.fit.history,
                            init="fine-tune" if loaded else "scratch", supernet=str(res.supernet), space=g.space,
                            path_entropy=res.entropy, pool=[asdict(m) for m in res.members])
    write_run(cfg, run, "archkd teacher generic", data, {"teacher": out.to_dict()})
    return out
