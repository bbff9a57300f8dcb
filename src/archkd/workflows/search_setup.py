"""What a search settles before and after its trials: the size a width-scaled space scales to, the latency
predictor and the reward target, the zero-cost pre-screen, and the Pareto set re-measured after predicted latency."""
from __future__ import annotations

import time
import warnings

from archkd.config import Config
from archkd.data import DataBundle
from archkd.device import seed_everything
from archkd.errors import ArchkdWarning
from archkd.measure import measure_latency
from archkd.search import Budget, search_predictor
from archkd.search.definition import recorded_reward_target
from archkd.spaces import SearchSpace
from archkd.teacher import Teacher
from archkd.workflows.inputs import cache_root
from archkd.workflows.run import Log


def size_target(cfg: Config, teacher: Teacher, log: Log) -> int | None:
    """The size a width-scaled space (nago) scales every network to: the parameter budget, else
    ``search.size_target`` × the teacher's parameters (said in one line), else none."""
    if cfg.budget.max_params is not None or cfg.search.size_target is None:
        return cfg.budget.max_params
    n = int(cfg.search.size_target * teacher.describe()["params"])
    log(f"size target: {n:,} parameters ({cfg.search.size_target:g} × the teacher's; set --max-params to choose it)")
    return n


def predicted_budget(cfg: Config, budget: Budget, space: SearchSpace, data: DataBundle, log: Log) -> int:
    """Give ``budget`` this machine's latency predictor when it predicts latency (``budget.latency_source``);
    returns how many blocks the predictor knew (0 without one)."""
    if budget.latency_source != "predicted":
        return 0
    budget.predictor = search_predictor(cfg.budget, space, data.input_shape, data.num_classes, cache_root(cfg),
                                        cfg.seed, log)
    return len(budget.predictor.lut)


def reward_target(cfg: Config, space: SearchSpace, budget: Budget, data: DataBundle, storage: str, study_name: str,
                  log: Log) -> float:
    """T of the latency-aware reward when the user set none: the latency budget; else the target this study
    recorded when it started (a resumed search keeps its objective); else the ``search.reward_target_quantile`` of
    the latencies of random networks of the space within the budget, measured now on the budget's runtime."""
    from archkd.search import latency_quantile

    if cfg.budget.max_latency_ms is not None:
        t, how = float(cfg.budget.max_latency_ms), "the latency budget"
    elif (recorded := recorded_reward_target(storage, study_name)) is not None:
        t, how = recorded, f"recorded by study '{study_name}'"
    else:
        q = cfg.search.reward_target_quantile
        t = latency_quantile(space, budget, data.input_shape, data.num_classes, q, cfg.seed)
        how = f"the {q:g} quantile of 20 random '{space.name}' networks measured on {budget.latency_runtime}"
    log(f"reward target T = {t:.4g} ms: {how} (set --latency-target to choose it)")
    return t


def remeasure(budget: Budget, front: list[dict], input_shape: tuple[int, ...], log: Log) -> None:
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


def prescreen_candidates(cfg: Config, space: SearchSpace, teacher: Teacher, data: DataBundle, budget: Budget,
                         log: Log) -> list:
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
