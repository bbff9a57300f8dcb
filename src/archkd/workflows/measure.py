"""``archkd measure`` and ``archkd predictor``: a model's budgets (parameters, FLOPs, latency, memory), and this
machine's latency predictor for a search space."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from archkd.config import Config
from archkd.distill import model_from_checkpoint
from archkd.errors import ArchkdError
from archkd.measure import measure_model
from archkd.models import create_model
from archkd.search import fit_latency_predictor, predictor_file
from archkd.spaces import create_space
from archkd.workflows.inputs import cache_root, prepare
from archkd.workflows.results import MeasureRun, PredictorRun
from archkd.workflows.run import Log, mirrored


def measure(cfg: Config, model: torch.nn.Module | None = None,
            input_shape: tuple[int, ...] | None = None) -> MeasureRun:
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
    return MeasureRun(**{**out, "input_shape": list(input_shape)})


def latency_predictor(cfg: Config, log: Log | None = print) -> PredictorRun:
    """Fit (or refit) this machine's latency predictor for ``search.space`` on ``budget``'s runtime, threads and
    batch size, at the input shape of ``data``; save it where a search with ``budget.latency_source=predicted``
    looks (or to ``budget.latency_predictor``) and return its held-out accuracy."""
    log = mirrored(log)
    _, data = prepare(cfg, log, need_teacher=False)
    b = cfg.budget
    space = create_space(cfg.search.space, **cfg.search.space_kwargs).scale_to(b.max_params)
    t0 = time.perf_counter()
    log(f"measuring {b.latency_predictor_samples} random '{space.name}' architectures on {b.latency_runtime} "
        f"({b.latency_threads} thread(s), batch {b.latency_batch_size})")
    pred = fit_latency_predictor(space, data.input_shape, data.num_classes, b.latency_runtime, b.latency_threads,
                                 b.latency_batch_size, b.latency_predictor_samples, seed=cfg.seed, log=log)
    path = pred.save(predictor_file(b, space.name, data.input_shape, cache_root(cfg)))
    log(f"saved {path}")
    return PredictorRun(path=str(path), space=space.name, runtime=b.latency_runtime, threads=b.latency_threads,
                        batch_size=b.latency_batch_size, input_shape=list(data.input_shape), samples=pred.n_fit,
                        blocks=len(pred.lut), validation=asdict(pred.validation), busy_share=pred.busy_share,
                        seconds=time.perf_counter() - t0)
