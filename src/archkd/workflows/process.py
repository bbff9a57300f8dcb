"""``archkd process search``: DistPro, the pathway-weight process of one (teacher, student) pair, learnt and saved
for ``archkd distill --process`` to replay."""
from __future__ import annotations

from dataclasses import replace

import torch

from archkd.config import Config
from archkd.data import DataBundle
from archkd.device import resolve_device, seed_everything
from archkd.models import model_spec
from archkd.teacher import Teacher
from archkd.teacher.features import require_features
from archkd.workflows.inputs import build_student, prepare
from archkd.workflows.results import ProcessSearchRun
from archkd.workflows.run import Log, metrics_sink, mirrored, record, start, verb, write_run


@verb("archkd process search")
def process_search(cfg: Config, log: Log | None = print, teacher: Teacher | None = None,
                   data: DataBundle | None = None, student: torch.nn.Module | None = None,
                   write: bool = True) -> ProcessSearchRun:
    """DistPro: learn the pathway-weight process for (teacher, student) over ``process.search_epochs`` epochs and
    save it as ``runs/<name>/process.pt`` (replay it with ``archkd distill --process``). The student's epoch
    checkpoints go to ``runs/<name>/process_student/``: re-running an interrupted search continues it."""
    from archkd.process import save_process, search_with_config

    log = mirrored(log)
    run = start(cfg)
    if teacher is None or data is None:
        teacher, data = prepare(cfg, log)
    require_features(teacher, "process searches")
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model = student if student is not None else build_student(cfg, data)
    spec = model_spec(model)
    record(cfg)
    res, objective = search_with_config(model, teacher.module, data,
                                        replace(cfg.train, epochs=cfg.process.search_epochs), cfg.process,
                                        seed=cfg.seed, device=dev, log=log, out_dir=run / "process_student",
                                        spec=spec, resume=True, on_epoch=metrics_sink(cfg, "process search"),
                                        identity={"teacher": teacher.fingerprint, "data": data.fingerprint})
    names = [p.name() for p in res.pathways]
    out = ProcessSearchRun(pathways=names, student_taps=res.student_taps, teacher_taps=res.teacher_taps,
                           epochs=res.epochs, steps=int(res.trajectory.shape[0]), val_acc=res.val_acc,
                           seconds=res.seconds, meta_seconds=res.meta_seconds, history=res.history,
                           final_weights=res.weights[-1].tolist(), spec=spec)
    if write:
        path = save_process(run / "process.pt", res, objective, {"student_spec": spec, "teacher": teacher.fingerprint})
        out.process = str(path)
        stride = max(1, res.weights.shape[0] // 200)
        curves = {"title": "Pathway weights during the process search (normalised α)", "xlabel": "step",
                  "ylabel": "weight", "x": list(range(0, res.weights.shape[0], stride)),
                  "series": {n: res.weights[::stride, i].tolist() for i, n in enumerate(names)}}
        write_run(cfg, run, "archkd process search", data,
                  {"teacher": teacher.describe(), "process_search": out.to_dict(), "curves": curves})
        log(f"wrote {path} ({len(names)} pathways, {res.seconds:.1f}s, of which meta-updates {res.meta_seconds:.1f}s)")
    return out
