"""archkd's Python API: each CLI verb is one function here taking a resolved ``Config``.

    from archkd import api, load_config
    cfg = load_config(overrides=["name=mine", "search.n_trials=8", "budget.max_params=30000"])
    results = api.demo(cfg)

Every function writes into ``cfg.run_dir`` (``runs/<name>/``): the resolved ``config.yaml``, checkpoints, the study
database and ``results.json``; each returns a JSON-serialisable dict of what it measured.
"""
from __future__ import annotations

import functools
import inspect
import logging
import time
import warnings
from copy import deepcopy
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch

from archkd.config import Config, save_config, set_key, to_dict
from archkd.data import DataBundle, Normalize, load_data
from archkd.device import (broadcast_object, default_cache_dir, is_rank0, resolve_device, seed_everything,
                           threads_in_use, use_amp, world)
from archkd.distill import (MetricsLog, StopTraining, TeacherCache, cache_precision, epoch_steps, evaluate, fit,
                            model_from_checkpoint, objective_from_config, read_metrics, teacher_accuracy)
from archkd.errors import ArchkdError, ArchkdWarning
from archkd.measure import format_budget, measure_latency, measure_model
from archkd.models import create_model, model_spec
from archkd.progress import Progress
from archkd.search import (Budget, KDTrialObjective, Reward, create_sampler, fit_latency_predictor, pareto_front,
                           predictor_file, run_search, search_predictor)
from archkd.spaces import create_space
from archkd.teacher import Teacher, check_teacher, load_teacher
from archkd import rundir
from archkd import process as _process, proxies as _proxies  # noqa: E402,F401  (their registries: config choices)

Log = Callable[[str], None]


RUN_LOG = logging.getLogger("archkd.run")  # what a verb printed, also written to runs/<name>/log.txt
RUN_LOG.propagate = False
RUN_LOG.setLevel(logging.INFO)
RUN_LOG.addHandler(logging.NullHandler())  # outside a run, its lines go nowhere (not to logging's stderr fallback)


def _log(log: Log | None) -> Log:
    """The caller's log (print, the CLI's timestamped printer, or silence), mirrored into the run's ``log.txt``.
    Under torchrun only rank 0 speaks."""
    if not is_rank0():
        return lambda _m: None
    if getattr(log, "mirrored", False):  # already wrapped by the verb that called this one
        return log
    base = log or (lambda _m: None)

    def both(msg: str) -> None:
        base(msg)
        RUN_LOG.info(msg)

    both.mirrored = True  # type: ignore[attr-defined]
    return both


def _log_file(path: Path) -> None:
    """Send ``RUN_LOG`` to ``path`` (appending: a resumed run continues its log), replacing an earlier run's file."""
    target = str(path.resolve())
    if any(getattr(h, "baseFilename", None) == target for h in RUN_LOG.handlers):
        return
    _close_log_file()
    handler = logging.FileHandler(target, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    RUN_LOG.addHandler(handler)


def _close_log_file() -> None:
    for h in list(RUN_LOG.handlers):
        if isinstance(h, logging.FileHandler):
            RUN_LOG.removeHandler(h)
            h.close()


def _metrics(cfg: Config, run: str) -> Callable[[int, dict], None]:
    """An ``on_epoch`` callback appending fit's epoch rows to the run's ``metrics.csv`` as ``run``."""
    sink = MetricsLog(cfg.run_dir / "metrics.csv", run, _tensorboard(cfg))
    return lambda _epoch, row: sink.write(row)


def _tensorboard(cfg: Config) -> Path | None:
    return cfg.run_dir / "tensorboard" if cfg.train.tensorboard and is_rank0() else None


def _cache_root(cfg: Config) -> str:
    return cfg.cache_dir or default_cache_dir()


def _data_progress(log: Log) -> Callable[[str, int], None]:
    return lambda what, n: log(f"  {what}: {n} images")


def prepare(cfg: Config, log: Log | None = print, need_teacher: bool = True) -> tuple[Teacher | None, DataBundle]:
    """Load the teacher (if any) and the data normalised the teacher's way, then check they fit together."""
    log = _log(log)
    teacher = None
    if cfg.teacher.path:
        teacher = load_teacher(cfg.teacher.path, cfg.teacher.weights, cfg.teacher.mean, cfg.teacher.std,
                               cfg.teacher.kwargs)
    elif need_teacher:
        raise ArchkdError("no teacher given", "set --teacher <file> (or teacher.path=...), or train one with "
                          "'archkd teacher train'")
    mean = teacher.mean if teacher else cfg.teacher.mean
    std = teacher.std if teacher else cfg.teacher.std
    log(f"loading data '{cfg.data.source}'")
    data = load_data(cfg.data.source, cfg.data, seed=cfg.seed, cache_dir=_cache_root(cfg), mean=mean, std=std,
                     progress=_data_progress(log), teacher=teacher is not None)
    log(f"  {data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test) if data.test else 0} test, "
        f"{data.num_classes} classes, input {'×'.join(map(str, data.input_shape))}, augment {data.augment.key()}")
    if data.normalize_note:
        log(f"  {data.normalize_note}")
    if teacher is not None:
        check_teacher(teacher, data)
    return teacher, data


def make_cache(cfg: Config, teacher: Teacher, data: DataBundle) -> TeacherCache | None:
    if not cfg.distill.cache or not teacher:
        return None
    return TeacherCache(_cache_root(cfg), teacher_hash=teacher.fingerprint, data_fingerprint=data.fingerprint,
                        augment_key=data.augment.key(), normalize_key=str(data.normalize.to_dict()), seed=cfg.seed,
                        n_train=len(data.train), n_val=len(data.val), num_classes=data.num_classes,
                        precision=cache_precision(use_amp(resolve_device(cfg.device), cfg.train.amp)))


def _meta(data: DataBundle) -> dict:
    return {"preprocessing": data.normalize.to_dict(), "classes": list(data.classes),
            "input_shape": list(data.input_shape)}


def _test_acc(model: torch.nn.Module, data: DataBundle, device: torch.device) -> float | None:
    return evaluate(model.to(device), data.test, data.normalize, device) if data.test is not None else None


def _start(cfg: Config) -> Path:
    """The run directory with its log file (rank 0 only under torchrun). The config is written later, by
    ``_record``, once the inputs are accepted: a re-run refused for bad input leaves the earlier run's config alone."""
    run = cfg.run_dir
    if not is_rank0():
        return run
    try:
        run.mkdir(parents=True, exist_ok=True)
        _log_file(run / "log.txt")
    except OSError as e:
        raise ArchkdError(f"cannot write the run directory {run} ({e.strerror or type(e).__name__})",
                          "give a writable folder with --runs-dir (or runs_dir=...)") from None
    return run


def _record(cfg: Config) -> None:
    """Write the resolved config (what actually runs) into the run directory, just before the work starts; the run
    becomes the verb's (``rundir.own``)."""
    if is_rank0():
        save_config(cfg, cfg.run_dir / "config.yaml")
        rundir.own(cfg.run_dir)


def _verb(name: str, shared: bool = False, owns: bool = True) -> Callable:
    """A verb's hold on its run directory for the length of the call (``archkd.rundir``): one process at a time
    (``shared``: search workers of one study), and the results of one verb per directory. Whether the call writes
    the run's results is its ``write`` argument (verbs without one always write, unless ``owns=False``: a verb that
    adds to another verb's run)."""

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the wrapped verb's own signature
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            run = bound.arguments["cfg"].run_dir
            if not is_rank0():  # under torchrun rank 0 holds the run for the group
                return fn(*args, **kwargs)
            rundir.claim(run, name, writes=owns and bool(bound.arguments.get("write", True)), shared=shared)
            try:
                return fn(*args, **kwargs)
            finally:
                if rundir.release(run):  # the outermost verb on this run: its log file is done too
                    _close_log_file()

        return wrapper

    return deco


@_verb("archkd teacher train")
def train_teacher(cfg: Config, log: Log | None = print, data: DataBundle | None = None, write: bool = False) -> dict:
    """Train ``cfg.teacher.arch`` on the data with CE; the checkpoint records architecture, preprocessing, classes.
    With ``write`` (the ``teacher train`` verb), ``results.json`` and ``report.html`` describe the run."""
    log = _log(log)
    run = _start(cfg)
    if data is None:
        _, data = prepare(cfg, log, need_teacher=False)
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model = create_model(cfg.teacher.arch, num_classes=data.num_classes, in_channels=data.input_shape[0])
    log(f"training teacher {cfg.teacher.arch} ({sum(p.numel() for p in model.parameters()):,} params) for "
        f"{cfg.teacher.train.epochs} epochs on {dev}")
    _record(cfg)
    res = fit(model, data, cfg.teacher.train, objective=objective_from_config(None, cfg.teacher.train.label_smoothing),
              seed=cfg.seed, device=dev, out_dir=run / "teacher", spec=model_spec(model), meta=_meta(data), log=log,
              on_epoch=_metrics(cfg, "teacher"))
    if not is_rank0():  # under torchrun the other processes only trained their shards
        return {"rank": world()[0], "val_acc": res.best_val_acc, "history": res.history}
    best, _ = model_from_checkpoint(res.best_path)
    test = _test_acc(best, data, dev)
    out = {"checkpoint": str(res.best_path), "name": cfg.teacher.arch, "params": sum(p.numel() for p in best.parameters()),
           "val_acc": res.best_val_acc, "test_acc": test, "seconds": res.seconds, "precision": res.precision,
           "history": res.history}
    log(f"teacher: val acc {res.best_val_acc:.4f}" + (f", test acc {test:.4f}" if test is not None else "")
        + f" -> {res.best_path}")
    if write:
        _write_run(cfg, run, "archkd teacher train", data, {"teacher": out})
    return out


@_verb("archkd teacher generic")
def generic_teacher(cfg: Config, log: Log | None = print) -> dict:
    """GTN: train a generic teacher against a weight-sharing supernet of ``cfg.generic.pool`` (students of
    ``cfg.generic.space``), from scratch (``teacher.arch``) or fine-tuning ``teacher.path`` (an archkd checkpoint).

    Writes ``runs/<name>/teacher/best.pt`` (an ordinary teacher checkpoint for ``distill``, ``search``, ...),
    ``supernet.pt`` and, for a finite pool, ``pool/<i>.pt`` (each student with its supernet weights); re-running an
    interrupted command continues it."""
    from dataclasses import asdict

    from archkd.teacher.generic import make_pool, train_generic_teacher

    log = _log(log)
    run = _start(cfg)
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
        start = f"fine-tuning {loaded.source}"
    else:
        seed_everything(cfg.seed)
        model = create_model(cfg.teacher.arch, num_classes=data.num_classes, in_channels=data.input_shape[0])
        start = f"{cfg.teacher.arch} from scratch"
    pool = make_pool(create_space(g.space, **g.space_kwargs), list(g.pool), data.input_shape, data.num_classes,
                     cfg.seed, cfg.budget.max_params, teacher_params=sum(p.numel() for p in model.parameters()))
    n_pool = f"{len(pool.configs)} students" if pool.configs is not None else "the whole space"
    log(f"generic teacher (GTN): {start} ({sum(p.numel() for p in model.parameters()):,} params), "
        f"{cfg.teacher.train.epochs} epochs on {dev}, conditioned on {n_pool} of space '{g.space}'")
    _record(cfg)
    res = train_generic_teacher(model, data, pool, cfg.teacher.train, cfg.train, cfg.distill, g, seed=cfg.seed,
                                device=dev, out_dir=run, meta=_meta(data), log=log,
                                on_epoch=_metrics(cfg, "generic teacher"))
    best, _ = model_from_checkpoint(res.fit.best_path)
    test = _test_acc(best, data, dev)
    log(f"generic teacher: val acc {res.fit.best_val_acc:.4f}" + (f", test acc {test:.4f}" if test is not None else "")
        + f" -> {res.fit.best_path}")
    out = {"checkpoint": str(res.fit.best_path), "name": model_spec(best)["name"],
           "params": sum(p.numel() for p in best.parameters()), "val_acc": res.fit.best_val_acc, "test_acc": test,
           "seconds": res.fit.seconds, "history": res.fit.history, "init": "fine-tune" if loaded else "scratch",
           "supernet": str(res.supernet), "space": g.space, "path_entropy": res.entropy,
           "pool": [asdict(m) for m in res.members]}
    _write_run(cfg, run, "archkd teacher generic", data, {"teacher": out})
    return out


def _write_run(cfg: Config, run: Path, command: str, data: DataBundle, parts: dict) -> None:
    """``results.json`` and ``report.html`` of a verb: the config, the data, ``parts`` and the run's metrics."""
    from archkd.report import write_report, write_results

    results = {"name": cfg.name, "created": datetime.now().isoformat(timespec="seconds"), "command": command,
               "config": to_dict(cfg), "threads": threads_in_use(), "dataset": data.describe(), **parts,
               "metrics": read_metrics(run / "metrics.csv")}
    write_results(run, results)
    write_report(run, results)


def report(run_dir: str | Path, log: Log | None = print) -> Path:
    """Regenerate ``report.html`` of any run directory (search, distill, process search, teacher) from its
    ``results.json``, with the epoch metrics of its ``metrics.csv`` as they are now."""
    import json

    from archkd.report import RESULTS_FILE, write_report

    run = Path(run_dir)
    path = run / RESULTS_FILE
    if not path.is_file():
        raise ArchkdError(f"no {RESULTS_FILE} in {run}", "give a run directory written by archkd (runs/<name>)")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArchkdError(f"{path} is not valid JSON", "re-run the command that wrote it") from None
    if not isinstance(results, dict) or "name" not in results:
        raise ArchkdError(f"{path} is not an archkd results file", "give a run directory written by archkd")
    if (run / "metrics.csv").is_file():
        results["metrics"] = read_metrics(run / "metrics.csv")
    out = write_report(run, results)
    if log:
        log(f"wrote {out}")
    return out


def _student(cfg: Config, data: DataBundle) -> torch.nn.Module:
    if cfg.student.checkpoint:
        from archkd.distill import load_checkpoint
        from archkd.models import build_from_spec

        ck = load_checkpoint(cfg.student.checkpoint)
        model = build_from_spec({**ck["spec"], "num_classes": data.num_classes, "in_channels": data.input_shape[0]})
        if cfg.student.init == "checkpoint":
            try:
                model.load_state_dict(ck["state_dict"])
            except RuntimeError:
                raise ArchkdError(f"the weights of {cfg.student.checkpoint} do not fit this data's classes or channels",
                                  "use student.init=scratch, or a checkpoint trained on this kind of data") from None
        return model
    return create_model(cfg.student.arch, num_classes=data.num_classes, in_channels=data.input_shape[0],
                        **cfg.student.kwargs)


@_verb("archkd distill")
def distill(cfg: Config, log: Log | None = print, teacher: Teacher | None = None, data: DataBundle | None = None,
            student: torch.nn.Module | None = None, subdir: str = "student", save_config: bool = True,
            resume: bool = False, write: bool = False) -> dict:
    """Distill a student (``cfg.student`` or a given module) from the teacher with the full recipe; test it.

    ``save_config=False`` leaves the run's ``config.yaml`` alone (top-k finalists of a search share its run dir);
    ``resume=True`` continues from the run's ``last.pt`` when it was written by the same run; ``write`` (the
    ``distill`` verb) writes ``results.json`` and ``report.html``."""
    log = _log(log)
    run = _start(cfg)
    if teacher is None or data is None:
        teacher, data = prepare(cfg, log)
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model = student if student is not None else _student(cfg, data)
    spec = model_spec(model)
    _, steps_per_epoch = epoch_steps(len(data.train.subset(cfg.train.data_fraction, cfg.seed)), cfg.train.batch_size)
    objective = _objective(cfg, cfg.train.epochs * steps_per_epoch)
    if objective.teacher_taps and not teacher.supports_features:
        raise ArchkdError(f"feature losses need the teacher's internals, but {teacher.source} is TorchScript",
                          "use logit KD only (distill.features=[]) or give the teacher as an archkd checkpoint")
    cache = make_cache(cfg, teacher, data)
    t_acc = teacher_accuracy(teacher.module, data, cache, dev)
    t_test = _test_acc(teacher.module, data, dev) if is_rank0() else None
    log(f"teacher {teacher.name}: val acc {t_acc:.4f} (val: held out of the training images, which the teacher may "
        "have seen)" + (f", test acc {t_test:.4f} (test split)" if t_test is not None else ""))
    rank0 = is_rank0()  # under torchrun the other processes train their shards and leave the rest to rank 0
    m = measure_model(model, data.input_shape, runtimes=(cfg.budget.latency_runtime,), latency=rank0,
                      threads=cfg.budget.latency_threads, batch_size=cfg.budget.latency_batch_size)
    log(f"distilling {spec['name']} ({format_budget(m)}) from {teacher.name} for {cfg.train.epochs} epochs on {dev}"
        + (f"; teacher cache {cache.dir}" if cache else ""))
    if save_config:
        _record(cfg)
    res = fit(model, data, cfg.train, objective=objective, teacher=teacher.module, cache=cache, seed=cfg.seed,
              device=dev, out_dir=run / subdir, spec=spec,
              meta={**_meta(data), "distill": to_dict(cfg.distill), "teacher": teacher.fingerprint,
                    "data": data.fingerprint},
              log=log, resume=resume, on_epoch=_metrics(cfg, subdir))
    if not rank0:
        return {"rank": world()[0], "val_acc": res.best_val_acc, "history": res.history}
    best, _ = model_from_checkpoint(res.best_path)
    test = _test_acc(best, data, dev)
    speed = f"{res.images_per_s:.0f} img/s" if res.images_per_s else "trained earlier: read back"
    log(f"student: val acc {res.best_val_acc:.4f}" + (f", test acc {test:.4f}" if test is not None else "")
        + f" ({speed}) -> {res.best_path}")
    saved = objective.saved_share() if hasattr(objective, "saved_share") else None
    if saved is not None and cfg.process.tau is not None:
        log(f"τ-clipping (τ={cfg.process.tau}) skipped {100 * saved:.1f}% of pathway loss computations")
    out = {"spec": spec, "checkpoint": str(res.best_path), **{k: m[k] for k in ("params", "flops", "macs")},
           "latency": m.get("latency"), "peak_activation_bytes": m.get("peak_activation_bytes"),
           "val_acc": res.best_val_acc, "test_acc": test, "teacher_val_acc": t_acc, "teacher_test_acc": t_test,
           "epochs": cfg.train.epochs,
           "history": res.history,
           "seconds": res.seconds, "images_per_s": res.images_per_s, "precision": res.precision, "cache": res.cache,
           "process": cfg.distill.process, "process_replay": cfg.process.replay if cfg.distill.process else None,
           "pathway_loss_saved": saved}
    if write:
        _write_run(cfg, run, "archkd distill", data,
                   {"teacher": {**teacher.describe(), "val_acc": t_acc, "test_acc": t_test}, "final": out})
    return out


def _objective(cfg: Config, total_steps: int):
    """Vanilla KD (+ feature losses) from ``cfg.distill``, or a searched process replayed over ``total_steps``."""
    if not cfg.distill.process:
        return objective_from_config(cfg.distill, cfg.train.label_smoothing)
    from archkd.process import load_process, replay_objective

    return replay_objective(load_process(cfg.distill.process), total_steps, mode=cfg.process.replay,
                            normalization=cfg.process.replay_normalization, tau=cfg.process.tau,
                            label_smoothing=cfg.train.label_smoothing)


@_verb("archkd process search")
def process_search(cfg: Config, log: Log | None = print, teacher: Teacher | None = None,
                   data: DataBundle | None = None, student: torch.nn.Module | None = None,
                   write: bool = True) -> dict:
    """DistPro: learn the pathway-weight process for (teacher, student) over ``process.search_epochs`` epochs and
    save it as ``runs/<name>/process.pt`` (replay it with ``archkd distill --process``). The student's epoch
    checkpoints go to ``runs/<name>/process_student/``: re-running an interrupted search continues it."""
    from dataclasses import replace

    from archkd.process import save_process, search_with_config

    log = _log(log)
    run = _start(cfg)
    if teacher is None or data is None:
        teacher, data = prepare(cfg, log)
    if not teacher.supports_features:
        raise ArchkdError(f"a process search needs the teacher's stage features, but {teacher.source} is TorchScript",
                          "give the teacher as an archkd checkpoint or module:factory with weights")
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model = student if student is not None else _student(cfg, data)
    spec = model_spec(model)
    _record(cfg)
    res, objective = search_with_config(model, teacher.module, data,
                                        replace(cfg.train, epochs=cfg.process.search_epochs), cfg.process,
                                        seed=cfg.seed, device=dev, log=log, out_dir=run / "process_student",
                                        spec=spec, resume=True, on_epoch=_metrics(cfg, "process search"),
                                        identity={"teacher": teacher.fingerprint, "data": data.fingerprint})
    names = [p.name() for p in res.pathways]
    out = {"pathways": names, "student_taps": res.student_taps, "teacher_taps": res.teacher_taps,
           "epochs": res.epochs, "steps": int(res.trajectory.shape[0]), "val_acc": res.val_acc,
           "seconds": res.seconds, "meta_seconds": res.meta_seconds, "history": res.history,
           "final_weights": res.weights[-1].tolist(), "spec": spec}
    if write:
        path = save_process(run / "process.pt", res, objective, {"student_spec": spec, "teacher": teacher.fingerprint})
        out["process"] = str(path)
        stride = max(1, res.weights.shape[0] // 200)
        curves = {"title": "Pathway weights during the process search (normalised α)", "xlabel": "step",
                  "ylabel": "weight", "x": list(range(0, res.weights.shape[0], stride)),
                  "series": {n: res.weights[::stride, i].tolist() for i, n in enumerate(names)}}
        _write_run(cfg, run, "archkd process search", data,
                   {"teacher": teacher.describe(), "process_search": out, "curves": curves})
        log(f"wrote {path} ({len(names)} pathways, {res.seconds:.1f}s, of which meta-updates {res.meta_seconds:.1f}s)")
    return out


@_verb("archkd search", shared=True)
def search(cfg: Config, log: Log | None = print, teacher: Teacher | None = None,
           data: DataBundle | None = None, write: bool = True) -> dict:
    """Student search: every candidate within budget is trained at the search fidelity and scored.

    ``search.guide=kd`` scores by KD-trained accuracy (AKD's KD-guided search); ``ce`` by CE-trained accuracy (the
    NAS-then-KD baseline). With ``search.reward_target`` the score is ``ACC × (cost/T)^w``. With ``search.top_k``,
    the top-k students are re-trained with the full KD recipe and tested. Any number of processes running this on
    the same ``search.storage`` and study name share the study. With ``write``, the study as this worker saw it at the
    end goes to ``results.json`` and ``report.html`` in the run directory.
    """
    log = _log(log)
    run = _start(cfg)
    if teacher is None or data is None:
        teacher, data = prepare(cfg, log)
    sc = cfg.search
    storage = sc.storage or f"sqlite:///{(run / 'study.db').resolve()}"
    study_name = sc.study_name or cfg.name
    size = _size_target(cfg, teacher, log)
    space = create_space(sc.space, recipe=sc.recipe, **sc.space_kwargs).scale_to(size)
    budget = Budget.from_config(cfg.budget)
    if budget.latency_source == "predicted":
        budget.predictor = search_predictor(cfg.budget, space, data.input_shape, data.num_classes, _cache_root(cfg),
                                            cfg.seed, log)
        n_blocks = len(budget.predictor.lut)
    if sc.reward_target is None and sc.reward_target_quantile is not None and sc.reward_metric == "latency_ms":
        cfg = deepcopy(cfg)  # the target in force is what the run records (config.yaml, the study's definition)
        cfg.search.reward_target = _reward_target(cfg, space, budget, data, storage, study_name, log)
        sc = cfg.search
    sampler = create_sampler(sc.method, seed=cfg.seed, space=space, n_trials=sc.n_trials,
                             feasible=budget.feasibility(space, data.input_shape, data.num_classes),
                             **sc.sampler_options)
    advice = getattr(sampler, "advise", lambda _n: None)(sc.n_trials)  # a sampler may know it cannot work here
    if advice and is_rank0():
        warnings.warn(advice, ArchkdWarning, stacklevel=2)
    reward = Reward.make(sc.reward_target, sc.reward_metric, sc.reward_mode, sc.reward_alpha, sc.reward_beta)
    fidelity = _fidelity(cfg)
    log(f"searching space '{space.name}' with {sc.method} ({sc.guide}-guided): {sc.n_trials} trials at "
        f"{fidelity.epochs} epochs × {fidelity.data_fraction:g} data; objective {reward.describe()}; "
        f"budget {budget.describe()}; study {storage}")
    if sc.process and not teacher.supports_features:
        raise ArchkdError("search.process needs the teacher's stage features", "give the teacher as an archkd checkpoint")
    screened = _prescreen(cfg, space, teacher, data, budget, log) if sc.prescreen.proxy else []
    progress = Progress(log)
    objective = KDTrialObjective(data, fidelity, teacher=teacher, distill=cfg.distill if sc.guide == "kd" else None,
                                 cache=make_cache(cfg, teacher, data), seed=cfg.seed, device=cfg.device,
                                 trials_dir=run / "trials", process=cfg.process if sc.process else None,
                                 metrics=run / "metrics.csv", tensorboard=_tensorboard(cfg), progress=progress)
    rank, n_proc = world()
    if n_proc > 1 and rank != 0:  # under torchrun: train what rank 0 asks the study for, shard by shard
        _follow(objective, cfg, teacher, data)
        return {"rank": rank}
    t0 = time.perf_counter()
    def announced(candidate, report):  # under torchrun: announce the candidate, then train it together
        broadcast_object(("trial", candidate))
        return objective(candidate, report)

    try:
        res = run_search(space, announced if n_proc > 1 else objective, storage=storage, study_name=study_name, sampler=sampler,
                         n_trials=sc.n_trials, budget=budget, input_shape=data.input_shape,
                         num_classes=data.num_classes, pruner=sc.pruner, pruner_options=sc.pruner_options,
                         reward=reward,
                         max_attempts=sc.max_attempts_factor * sc.n_trials, log=log,
                         definition=_definition(cfg, space, teacher, data), heartbeat=sc.heartbeat_seconds,
                         grace=sc.stale_after_seconds, max_retry=sc.max_retries, progress=progress,
                         on_start=lambda: _record(cfg), enqueue=[s.config for s in screened])
        if res.best is None:
            raise ArchkdError("the search finished without a successful trial", "see the trial table above")
        b = res.best
        log(f"best trial #{b['number']}: reward {b['reward']:.4f}, val acc {b['val_acc']:.4f}, {b['params']:,} params"
            + (f", {b['latency_ms']:.3f} ms" if b.get("latency_ms") is not None else ""))
        cost = sc.reward_metric if sc.reward_target is not None else ("latency_ms" if any(
            r.get("latency_ms") is not None for r in res.trials) else "params")
        front = pareto_front(res.trials, cost)
        if budget.predictor is not None:
            _remeasure(budget, front, data.input_shape, log)
            if len(budget.predictor.lut) > n_blocks:  # blocks first met in this search: keep their timings
                budget.predictor.save(predictor_file(cfg.budget, space.name, data.input_shape, _cache_root(cfg)))
        out = {"space": space.name, "scaled_to_params": size, "sampler": sc.method,
               "sampler_info": getattr(sampler, "info", dict)(),
               "guide": sc.guide, "n_trials": sc.n_trials,
               "fidelity": {"epochs": fidelity.epochs, "data_fraction": fidelity.data_fraction}, "storage": storage,
               "study_name": study_name, "reward": reward.describe(), "best_trial": b["number"], "best": b,
               "pareto": {"cost": cost, "trials": [r["number"] for r in front],
                          **({"measured_ms": {r["number"]: r["latency_measured_ms"] for r in front}}
                             if budget.predictor is not None else {})},
               "trials": res.trials, "seconds": time.perf_counter() - t0}
        if screened:
            out["prescreen"] = {**to_dict(sc.prescreen), "queued": [{"config": s.config, "score": s.score}
                                                                     for s in screened]}
        if sc.top_k and res.finalizer:
            out["top_k"] = finalize_top_k(cfg, out, teacher, data, sc.top_k, reward, log)
        elif sc.top_k:
            log(f"top-{sc.top_k} finalisation is left to the worker that finished the study's last trial")
        if write:
            _write_run(cfg, run, "archkd search", data, {
                "teacher": teacher.describe(), "budget": to_dict(cfg.budget),
                "search": {k: out[k] for k in ("space", "scaled_to_params", "sampler", "sampler_info", "guide",
                                               "n_trials", "fidelity",
                                               "storage", "study_name", "best_trial", "reward", "pareto")},
                "trials": out["trials"], "top_k": out.get("top_k"), "worker_trials": res.ran})
    finally:
        if n_proc > 1:
            broadcast_object(None)  # the followers' cue to stop
    return out


@_verb("archkd family sample", owns=False)
def family_sample(cfg: Config, n: int = 5, train: bool = False, log: Log | None = print) -> dict:
    """AutoKD's output is a family: draw ``n`` new members of the best trial's generator (new graph seeds, the
    search's width scaling) from the search run ``cfg.run_dir``; with ``train``, distill each with the run's recipe
    (and the recipe values the search picked) and test it. Adds ``family`` to the run's results and report and
    returns it; members' checkpoints go to ``runs/<name>/family/NN/``."""
    import json

    from archkd.models import build_from_spec
    from archkd.report import RESULTS_FILE, write_report, write_results

    log = _log(log)
    run = _start(cfg)
    try:
        results = json.loads((run / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        raise ArchkdError(f"no search results in {run}", "give the run directory of an 'archkd search'") from None
    if results.get("command") != "archkd search" or not results.get("trials"):
        raise ArchkdError(f"{run} holds '{results.get('command')}' results, not a search's",
                          "give the run directory of an 'archkd search --method autokd'")
    s = results["search"]
    best = next(t for t in results["trials"] if t["number"] == s["best_trial"])
    space = create_space(cfg.search.space, recipe=cfg.search.recipe, **cfg.search.space_kwargs)
    space.scale_to(s.get("scaled_to_params", cfg.budget.max_params))
    teacher, data = prepare(cfg, log, need_teacher=train)
    specs = space.new_members(best["config"], data.input_shape, data.num_classes, n)
    log(f"drawing {n} new members of trial #{best['number']}'s generator" + (", distilling each" if train else ""))
    members = []
    for j, spec in enumerate(specs):
        m = {"member": j, "spec": spec, "params": sum(p.numel() for p in build_from_spec(spec).parameters())}
        if train:
            seed_everything(cfg.seed)
            r = distill(trial_config(cfg, best), log, teacher=teacher, data=data, student=build_from_spec(spec),
                        subdir=f"family/{j:02d}", save_config=False, resume=True)
            m.update({k: r[k] for k in ("val_acc", "test_acc", "checkpoint")})
        log(f"  member {j}: {m['params']:,} params" + (f", test acc {m['test_acc']:.4f}" if train else ""))
        members.append(m)
    family = {"trial": best["number"], "generator": {k: v for k, v in best["config"].items()
                                                     if k not in best.get("recipe", {})},
              "recipe": best.get("recipe") or {}, "members": members}
    results["family"] = family
    write_results(run, results)
    write_report(run, results)
    return family


def _size_target(cfg: Config, teacher: Teacher, log: Log) -> int | None:
    """The size a width-scaled space (nago) scales every network to: the parameter budget, else
    ``search.size_target`` × the teacher's parameters (said in one line), else none."""
    if cfg.budget.max_params is not None or cfg.search.size_target is None:
        return cfg.budget.max_params
    n = int(cfg.search.size_target * teacher.describe()["params"])
    log(f"size target: {n:,} parameters ({cfg.search.size_target:g} × the teacher's; set --max-params to choose it)")
    return n


def _reward_target(cfg: Config, space, budget: Budget, data: DataBundle, storage: str, study_name: str,
                   log: Log) -> float:
    """T of the latency-aware reward when the user set none: the latency budget; else the target this study
    recorded when it started (a resumed search keeps its objective); else the ``search.reward_target_quantile`` of
    the latencies of random networks of the space within the budget, measured now on the budget's runtime."""
    import json

    from archkd.search import latency_quantile, recorded_definition

    if cfg.budget.max_latency_ms is not None:
        t, how = float(cfg.budget.max_latency_ms), "the latency budget"
    elif (old := recorded_definition(storage, study_name).get("search.reward_target")) not in (None, "null"):
        t, how = float(json.loads(old)), f"recorded by study '{study_name}'"
    else:
        q = cfg.search.reward_target_quantile
        t = latency_quantile(space, budget, data.input_shape, data.num_classes, q, cfg.seed)
        how = f"the {q:g} quantile of 20 random '{space.name}' networks measured on {budget.latency_runtime}"
    log(f"reward target T = {t:.4g} ms: {how} (set --latency-target to choose it)")
    return t


def _remeasure(budget: Budget, front: list[dict], input_shape: tuple[int, ...], log: Log) -> None:
    """Time the Pareto set on the runtime after a search on predicted latency: the students a user picks from are
    reported with measured numbers, and a winner the predictor put inside a latency budget it breaks is flagged."""
    from archkd.models import build_from_spec

    log(f"re-measuring the {len(front)} Pareto-optimal students on {budget.latency_runtime} (latency was predicted)")
    for r in front:
        r["latency_measured_ms"] = measure_latency(build_from_spec(r["spec"]), input_shape,
                                                   runtime=budget.latency_runtime, batch_size=budget.latency_batch_size,
                                                   threads=budget.latency_threads).median_ms
        err = r["latency_ms"] / r["latency_measured_ms"] - 1
        log(f"  trial #{r['number']}: predicted {r['latency_ms']:.3f} ms, measured {r['latency_measured_ms']:.3f} ms "
            f"({err:+.1%})")
        if budget.max_latency_ms is not None and r["latency_measured_ms"] > budget.max_latency_ms:
            warnings.warn(f"trial #{r['number']} was predicted within the latency budget ({r['latency_ms']:.3f} ms) "
                          f"but measures {r['latency_measured_ms']:.3f} ms > {budget.max_latency_ms} ms",
                          ArchkdWarning, stacklevel=3)


def latency_predictor(cfg: Config, log: Log | None = print) -> dict:
    """Fit (or refit) this machine's latency predictor for ``search.space`` on ``budget``'s runtime, threads and
    batch size, at the input shape of ``data``; save it where a search with ``budget.latency_source=predicted``
    looks (or to ``budget.latency_predictor``) and return its held-out accuracy."""
    log = _log(log)
    _, data = prepare(cfg, log, need_teacher=False)
    b = cfg.budget
    space = create_space(cfg.search.space, **cfg.search.space_kwargs).scale_to(b.max_params)
    t0 = time.perf_counter()
    log(f"measuring {b.latency_predictor_samples} random '{space.name}' architectures on {b.latency_runtime} "
        f"({b.latency_threads} thread(s), batch {b.latency_batch_size})")
    pred = fit_latency_predictor(space, data.input_shape, data.num_classes, b.latency_runtime, b.latency_threads,
                                 b.latency_batch_size, b.latency_predictor_samples, seed=cfg.seed, log=log)
    path = pred.save(predictor_file(b, space.name, data.input_shape, _cache_root(cfg)))
    log(f"saved {path}")
    return {"path": str(path), "space": space.name, "runtime": b.latency_runtime, "threads": b.latency_threads,
            "batch_size": b.latency_batch_size, "input_shape": list(data.input_shape), "samples": pred.n_fit,
            "blocks": len(pred.lut), "validation": asdict(pred.validation), "busy_share": pred.busy_share,
            "seconds": time.perf_counter() - t0}


def _prescreen(cfg: Config, space, teacher: Teacher, data: DataBundle, budget: Budget, log: Log) -> list:
    """Score ``factor × n_trials`` sampled candidates by the zero-cost proxy; the best ``keep`` are trained first."""
    from archkd.models import build_from_spec
    from archkd.proxies import ProxyScorer
    from archkd.search import prescreen

    p, sc = cfg.search.prescreen, cfg.search
    reference = None  # the network the DisWOT proxies compare with
    if p.teacher == "trained":
        reference = teacher.module if teacher.supports_features else None
    elif teacher.spec is not None:
        seed_everything(cfg.seed)
        reference = build_from_spec(teacher.spec)
    scorer = ProxyScorer([p.proxy], reference, data, n_batches=p.batches, seed=cfg.seed,
                         teacher_trained=p.teacher == "trained")
    t0 = time.perf_counter()
    keep = min(p.keep or sc.n_trials, sc.n_trials)
    found = prescreen(space, lambda c: scorer(space.spec(c, data.input_shape, data.num_classes))[p.proxy],
                      p.factor * sc.n_trials, keep, cfg.seed,
                      budget.feasibility(space, data.input_shape, data.num_classes))
    log(f"pre-screen: scored {p.factor * sc.n_trials} candidates by {p.proxy} in {time.perf_counter() - t0:.1f}s; "
        f"the best {len(found)} are trained first")
    return found


def _follow(objective: KDTrialObjective, cfg: Config, teacher: Teacher, data: DataBundle) -> None:
    """A torchrun process other than rank 0: train each candidate (or finalist) rank 0 announces, until ``None``."""
    from archkd.models import build_from_spec

    while (msg := broadcast_object()) is not None:
        kind, payload = msg
        try:
            if kind == "trial":
                objective(payload, lambda _step, _value: None)
            else:
                run_cfg, spec, subdir = payload
                distill(run_cfg, None, teacher=teacher, data=data, student=build_from_spec(spec), subdir=subdir,
                        save_config=False, resume=True)
        except StopTraining:
            pass


def _definition(cfg: Config, space, teacher: Teacher, data: DataBundle) -> dict:
    """What defines a search study, by config key: a study continued with any of these changed would mix results."""
    sc = cfg.search
    train = {k: v for k, v in to_dict(cfg.train).items()
             if k not in ("epochs", "data_fraction", "bn_recalibration", "tensorboard")}
    # the space by its dimensions (recipe ones included), not by how its options were spelled; the data by what it
    # is (classes, sizes, shape, augmentation, normalisation), not by where it lies on this machine
    d: dict = {"search": {k: getattr(sc, k) for k in ("space", "space_kwargs", "guide", "epochs", "data_fraction", "bn_recalibration",
                                                      "reward_target", "reward_metric", "reward_mode", "reward_alpha",
                                                      "reward_beta", "process", "pruner", "pruner_options")},
               "budget": to_dict(cfg.budget), "train": train, "seed": cfg.seed,
               "teacher": teacher.fingerprint, "data": {**data.describe(), "classes": list(data.classes)},
               "space_dims": space.describe()["dims"]}
    if sc.size_target is not None:  # only then: a study made before size targets existed keeps its definition
        d["search"]["size_target"] = sc.size_target
    if sc.guide == "kd":
        d["distill"] = {k: v for k, v in to_dict(cfg.distill).items() if k != "cache"}
    if sc.process:
        d["process"] = to_dict(cfg.process)
    if sc.prescreen.proxy:  # only then: a study made before pre-screening existed keeps its definition
        d["prescreen"] = to_dict(sc.prescreen)
    return d


def finalize_top_k(cfg: Config, found: dict, teacher: Teacher, data: DataBundle, k: int, reward: "Reward",
                   log: Log | None = print) -> list[dict]:
    """Re-train the k best trials (by search score) with the full KD recipe, test them, score them again.

    After a joint student + process search (``search.process=true``) each student is distilled with the process
    searched inside its own trial, replayed over the full schedule, unless ``distill.process`` names another one:
    the search picked the pair, so the pair is what is finalised.
    """
    from archkd.models import build_from_spec

    log = _log(log)
    done = sorted((t for t in found["trials"] if t["state"] == "COMPLETE" and t.get("duplicate_of") is None),
                  key=lambda t: -t["reward"])[:k]  # a twin of a trained trial would re-train the same student
    out = []
    for rank, t in enumerate(done, 1):
        run_cfg = trial_config(cfg, t)
        log(f"top-{k} [{rank}/{len(done)}]: trial #{t['number']} with the full recipe ({cfg.train.epochs} epochs"
            + (f", replaying {run_cfg.distill.process}" if run_cfg.distill.process else "")
            + "".join(f", {key}={v}" for key, v in (t.get("recipe") or {}).items()) + ")")
        seed_everything(cfg.seed)
        subdir = f"final/{rank:02d}_trial{t['number']:04d}"
        if world()[1] > 1:
            broadcast_object(("distill", (run_cfg, t["student_spec"], subdir)))
        r = distill(run_cfg, log, teacher=teacher, data=data, student=build_from_spec(t["student_spec"]), subdir=subdir,
                    save_config=False, resume=True)
        lat = (r.get("latency") or {}).get(cfg.budget.latency_runtime, {}).get("median_ms")
        # measured here on the budget's runtime: after a search on predicted latency, the finalist's real number
        metrics = {"latency_ms": lat if lat is not None else t.get("latency_ms"), "params": r["params"],
                   "flops": r["flops"]}
        out.append({"trial": t["number"], "recipe": t.get("recipe") or {}, "search_reward": t["reward"],
                    "val_acc": r["val_acc"],
                    "test_acc": r["test_acc"], "final_reward": reward(r["val_acc"], metrics), **metrics,
                    "checkpoint": r["checkpoint"], "process": r["process"]})
    return out


def trial_config(cfg: Config, trial: dict) -> Config:
    """The config to re-train a search trial's student with: the recipe values the search picked with it
    (``search.recipe``) and, after a joint search, the process searched in its trial (unless one is given)."""
    out = deepcopy(cfg)
    if trial.get("process") and not cfg.distill.process:
        out.distill.process = trial["process"]
    for key, value in (trial.get("recipe") or {}).items():
        set_key(out, key, value)
    return out


def _fidelity(cfg: Config):
    from dataclasses import replace

    return replace(cfg.train, epochs=cfg.search.epochs, data_fraction=cfg.search.data_fraction,
                   bn_recalibration=cfg.search.bn_recalibration)


def measure(cfg: Config, model: torch.nn.Module | None = None, input_shape: tuple[int, ...] | None = None) -> dict:
    """Budgets of a registry model name or a checkpoint (``cfg.measure.model``), or of a given module."""
    m = cfg.measure
    if model is None:
        if not m.model:
            raise ArchkdError("nothing to measure", "give a model name (resnet20) or a checkpoint path")
        if Path(m.model).is_file():
            model, ck = model_from_checkpoint(m.model)
            input_shape = input_shape or tuple(m.input_shape or ck.get("input_shape") or (3, 32, 32))
        else:
            input_shape = input_shape or tuple(m.input_shape or (3, 32, 32))
            model = create_model(m.model, num_classes=10, in_channels=input_shape[0])
    input_shape = tuple(input_shape or m.input_shape or (3, 32, 32))
    out = measure_model(model, input_shape, runtimes=tuple(m.runtimes), latency=True, threads=m.threads,
                        batch_size=m.batch_size, warmup=m.warmup, repeats=m.repeats)
    out["input_shape"] = list(input_shape)
    return out


def export(cfg: Config, checkpoint: str | None = None, out_dir: str | Path | None = None,
           data: DataBundle | None = None, log: Log | None = print, force: bool = False) -> dict:
    """Export a checkpoint to ONNX + TorchScript with a parity check on a real validation batch.

    The files go to ``out_dir``, by default the checkpoint's own run (``runs/<name>/export``), and replace an earlier
    export there as one set (``rundir.replace_dir``). An export of another checkpoint in that folder (its
    ``student.json`` names the source) is replaced only with ``force``."""
    from archkd.export import export_model

    log = _log(log)
    ck_path = Path(checkpoint or cfg.export.checkpoint or cfg.run_dir / "student" / "best.pt")
    model, ck = model_from_checkpoint(ck_path)
    out = Path(out_dir) if out_dir else rundir.run_of(ck_path) / "export"
    source = str(ck_path.resolve())
    if not force:
        _check_export_target(out, source)
    pre = ck.get("preprocessing") or {}
    if data is None:  # the data only gives a realistic parity batch; the normalisation is the checkpoint's own
        data = load_data(cfg.data.source, cfg.data, seed=cfg.seed, cache_dir=_cache_root(cfg),
                         progress=_data_progress(log))
    want = ck.get("input_shape")
    if want and list(want) != list(data.input_shape):
        raise ArchkdError(f"{ck_path} takes {'×'.join(map(str, want))} inputs but data '{cfg.data.source}' is "
                          f"{'×'.join(map(str, data.input_shape))}", "export with the data it was trained on: --data <path>")
    normalize = Normalize(pre["mean"], pre["std"]) if pre.get("mean") and pre.get("std") else data.normalize
    x8, _, _ = next(data.val.batches(16, device=torch.device("cpu")))
    example = normalize(x8)
    meta = {"spec": ck["spec"], "preprocessing": normalize.to_dict(), "classes": ck.get("classes"),
            "input_shape": ck.get("input_shape") or list(data.input_shape), "val_acc": ck.get("val_acc"),
            "source": source, "input": "float32 N,C,H,W: uint8 pixels / 255, then (x - mean) / std per channel"}
    formats = tuple(cfg.export.formats)
    if cfg.export.quantize == "int8" and "onnx" not in formats:
        formats += ("onnx",)  # the int8 model is made from the fp32 ONNX one
    made: dict = {}

    def build(tmp: Path) -> None:
        res = export_model(model, tmp, example, meta, formats=formats, atol=cfg.export.atol,
                           onnx_exporter=cfg.export.onnx_exporter)
        made["res"] = res
        if cfg.export.quantize == "int8":
            made["int8"] = _int8(cfg, res, data, normalize, log)

    rundir.replace_dir(out, build)
    res = made["res"]
    d = {**{k: str(out / Path(v).name) for k, v in res.paths.items()},
         "max_abs_diff": dict(res.max_abs_diff), "metadata": str(out / res.metadata_path.name)}
    log(f"exported {ck_path} to {out}: "
        + ", ".join(f"{k} (max |Δ| {v:.2e})" for k, v in d["max_abs_diff"].items()))
    if "int8" in made:
        d["int8"] = made["int8"]
    return d


def _check_export_target(out: Path, source: str) -> None:
    """Refuse to replace a folder that holds something other than an export of ``source``."""
    if not out.exists() or not any(out.iterdir()):
        return
    import json

    try:
        other = json.loads((out / "student.json").read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        other = None
    if other != source:
        what = f"the export of {other}" if other else "files that are not an export of this checkpoint"
        raise ArchkdError(f"{out} holds {what}", "give another --out folder, or --force to replace it")


def _int8(cfg: Config, res, data: DataBundle, normalize: Normalize, log: Log) -> dict:
    """The int8 ONNX model beside the fp32 one, calibrated on a seeded sample of training images, compared on the
    test split (validation when there is none); recorded in the export's JSON sidecar too."""
    import json

    import numpy as np

    from archkd.export.quantize import compare_int8, quantize_int8

    def images(split, indices=None) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for x8, y, _ in split.batches(256, device=torch.device("cpu"), indices=indices):
            xs.append(normalize(x8).numpy())
            ys.append(y.numpy())
        return np.concatenate(xs), np.concatenate(ys)

    pick = data.train.sample(cfg.export.calibration_images, cfg.seed)
    n = len(pick)
    calib, _ = images(data.train, pick)
    fp32 = res.paths["onnx"]
    int8 = quantize_int8(fp32, fp32.with_name(fp32.stem + ".int8.onnx"), calib)
    split, name = (data.test, "test") if data.test is not None else (data.val, "val")
    report = compare_int8(fp32, int8, *images(split), split=name, calibration_images=n,
                          threads=cfg.budget.latency_threads)
    sidecar = json.loads(res.metadata_path.read_text())
    sidecar["int8"] = {**report.to_dict(), "path": int8.name}
    res.metadata_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    log(f"int8: {int8.name} — {name} acc {100 * report.int8_acc:.2f} % (fp32 {100 * report.fp32_acc:.2f} %), "
        f"{report.int8_bytes / 1024:.0f} KiB (fp32 {report.fp32_bytes / 1024:.0f} KiB), "
        f"{report.int8_latency_ms:.3f} ms (fp32 {report.fp32_latency_ms:.3f} ms)")
    return report.to_dict()


@_verb("archkd demo")
def demo(cfg: Config, log: Log | None = print) -> dict:
    """teacher → KD-guided search under a budget → final distillation → test → export → report, on one dataset."""
    from archkd.report import write_report, write_results

    log = _log(log)
    t0 = time.perf_counter()
    run = _start(cfg)
    timings: dict[str, float] = {}
    log(f"[1/5] data and teacher — run directory {run}")
    teacher, data = prepare(cfg, log, need_teacher=False)
    if teacher is not None:
        t_info = teacher.describe()
    else:
        t_info = train_teacher(cfg, log, data=data)
        teacher = load_teacher(t_info["checkpoint"])
    timings["teacher_s"] = time.perf_counter() - t0
    log(f"[2/5] KD-guided search ({cfg.search.n_trials} students, budget {Budget.from_config(cfg.budget).describe()})")
    if not cfg.search.study_name:  # the demo retrains its teacher: a re-run with another teacher is another study
        cfg = deepcopy(cfg)
        cfg.search.study_name = f"{cfg.name}-teacher-{teacher.fingerprint[:8]}"
    s = search(cfg, log, teacher=teacher, data=data, write=False)
    timings["search_s"] = s["seconds"]
    log(f"[3/5] final distillation of trial #{s['best_trial']} with the full recipe ({cfg.train.epochs} epochs)")
    from archkd.models import build_from_spec

    seed_everything(cfg.seed)
    final = distill(trial_config(cfg, s["best"]), log, teacher=teacher, data=data,
                    student=build_from_spec(s["best"]["student_spec"]))
    timings["final_s"] = final["seconds"]
    if t_info.get("test_acc") is None:  # a given teacher: its accuracy as measured on this data, both splits
        t_info = {**t_info, "val_acc": final["teacher_val_acc"], "test_acc": final["teacher_test_acc"]}
    log("[4/5] export")
    exp = export(cfg, checkpoint=final["checkpoint"], data=data, log=log)
    timings["total_s"] = time.perf_counter() - t0
    results = {"name": cfg.name, "created": datetime.now().isoformat(timespec="seconds"), "command": "archkd demo",
               "config": to_dict(cfg), "threads": threads_in_use(), "dataset": data.describe(),
               "teacher": {k: t_info.get(k) for k in ("name", "params", "val_acc", "test_acc", "checkpoint")},
               "budget": to_dict(cfg.budget),
               "search": {k: s[k] for k in ("space", "sampler", "guide", "n_trials", "fidelity", "storage", "best_trial",
                                            "reward", "pareto")},
               "trials": s["trials"], "final": final, "export": exp, "timings": timings}
    log("[5/5] report")
    results["metrics"] = read_metrics(run / "metrics.csv")
    write_results(run, results)
    report = write_report(run, results)
    log(f"wrote {run / 'results.json'} and {report}")
    return results
