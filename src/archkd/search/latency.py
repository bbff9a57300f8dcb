"""Fitting a latency predictor to a search space, and finding the one a search should use.

Why per space: the predictor's lookup table holds the exact blocks its networks use, and its correction is fitted to
how those blocks combine; networks drawn from the space the search explores are what it must predict. Held-out
networks (``holdout`` of the samples, never used in the fit) give its accuracy; the saved predictor is then refitted on
all samples.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from archkd.config import BudgetConfig
from archkd.errors import ArchkdError
from archkd.measure import measure_latency
from archkd.measure.predictor import LatencyPredictor, predictor_path
from archkd.models import build_from_spec
from archkd.spaces import SearchSpace

if TYPE_CHECKING:
    from archkd.search.budget import Budget


@dataclass(frozen=True)
class Sample:
    """One measured network of a space: its spec, the predictor's features of it and its measured latency."""

    spec: dict
    features: dict[str, float]
    latency_ms: float
    busy: bool = False  # measured while the machine's load exceeded its cores (archkd.measure's load warning)


def sample_latencies(pred: LatencyPredictor, space: SearchSpace, input_shape: tuple[int, ...], num_classes: int,
                     samples: int, seed: int = 0, log: Callable[[str], None] | None = None) -> list[Sample]:
    """Measure up to ``samples`` distinct random networks of ``space`` on ``pred``'s runtime (filling its lookup
    table with their blocks)."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    seen: set[str] = set()
    t0 = time.perf_counter()
    for _ in range(50 * samples):
        if len(out) == samples:
            break
        spec = space.spec(space.sample_rng(rng), input_shape, num_classes)
        key = json.dumps(spec, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        model = build_from_spec(spec)
        feats = pred.features(model, input_shape)
        lat = measure_latency(model, input_shape, runtime=pred.runtime, batch_size=pred.batch_size,
                              threads=pred.threads)
        out.append(Sample(spec, feats, lat.median_ms, lat.load_warning is not None))
        if log and len(out) % 20 == 0:
            log(f"  latency predictor: {len(out)}/{samples} architectures measured "
                f"({time.perf_counter() - t0:.0f} s, {len(pred.lut)} blocks timed)")
    return out


def fit_latency_predictor(space: SearchSpace, input_shape: tuple[int, ...], num_classes: int, runtime: str,
                          threads: int = 1, batch_size: int = 1, samples: int = 100, holdout: float = 0.2,
                          seed: int = 0, log: Callable[[str], None] | None = None) -> LatencyPredictor:
    """Measure ``samples`` distinct random networks of ``space`` and fit a predictor to them.

    ``validation`` is measured on the last ``holdout`` share of the draws, fitted on the rest; the returned predictor
    is then refitted on every draw (more data, same form).
    """
    if samples < 5:
        raise ArchkdError(f"a latency predictor needs at least 5 sampled architectures, got {samples}",
                          "set budget.latency_predictor_samples >= 5 (100 is the default)")
    pred = LatencyPredictor(runtime=runtime, threads=threads, batch_size=batch_size, space=space.name,
                            input_shape=[int(s) for s in input_shape])
    drawn = sample_latencies(pred, space, input_shape, num_classes, samples, seed, log)
    n_test = max(1, int(round(holdout * len(drawn))))
    if len(drawn) - n_test < 2:
        raise ArchkdError(f"space '{space.name}' has only {len(drawn)} distinct architectures to fit on",
                          "lower budget.latency_predictor_samples or use measured latency")
    feats, lats = [s.features for s in drawn], [s.latency_ms for s in drawn]
    pred.busy_share = sum(s.busy for s in drawn) / len(drawn)
    if pred.busy_share > 0 and log:
        log(f"  warning: {pred.busy_share:.0%} of the latency measurements ran on a busy machine (load above the "
            "core count); the predictor is only as good as its measurements — refit it on an idle machine")
    pred.fit(feats[:-n_test], lats[:-n_test])
    pred.validation = pred.validate(feats[-n_test:], lats[-n_test:])
    return pred.fit(feats, lats)


def search_predictor(budget: BudgetConfig, space: SearchSpace, input_shape: tuple[int, ...], num_classes: int,
                     cache_dir: str, seed: int = 0, log: Callable[[str], None] | None = None) -> LatencyPredictor:
    """The predictor a search with ``budget.latency_source=predicted`` uses: ``budget.latency_predictor`` when set,
    else this machine's cached one for the space, runtime, threads, batch size and input shape, fitted now if absent."""
    if budget.latency_predictor:
        pred = LatencyPredictor.load(budget.latency_predictor)
        if (pred.runtime, pred.threads, pred.batch_size) != (budget.latency_runtime, budget.latency_threads,
                                                             budget.latency_batch_size):
            raise ArchkdError(f"{budget.latency_predictor} predicts {pred.runtime} with {pred.threads} threads at "
                              f"batch {pred.batch_size}, but the budget measures {budget.latency_runtime} with "
                              f"{budget.latency_threads} threads at batch {budget.latency_batch_size}",
                              "fit a predictor for the budget's runtime, threads and batch size")
        return pred
    path = predictor_file(budget, space.name, input_shape, cache_dir)
    if path.is_file():
        return LatencyPredictor.load(path)
    if log:
        log(f"fitting a latency predictor for space '{space.name}' on {budget.latency_runtime} "
            f"({budget.latency_predictor_samples} architectures; saved to {path} for later searches)")
    pred = fit_latency_predictor(space, input_shape, num_classes, budget.latency_runtime, budget.latency_threads,
                                 budget.latency_batch_size, budget.latency_predictor_samples, seed=seed, log=log)
    pred.save(path)
    if log and pred.validation:
        v = pred.validation
        log(f"latency predictor: {v.within_10pct:.0%} of {v.n} held-out architectures within ±10 %, median error "
            f"{v.median_rel_error:.1%}, Kendall τ {v.kendall_tau:.2f}")
    return pred



def predictor_file(budget: BudgetConfig, space: str, input_shape: tuple[int, ...], cache_dir: str) -> Path:
    """``budget.latency_predictor``, or this machine's cached predictor for the budget's runtime, threads and batch
    size, the space and the input shape."""
    return Path(budget.latency_predictor) if budget.latency_predictor else predictor_path(
        cache_dir, budget.latency_runtime, budget.latency_threads, budget.latency_batch_size, space, input_shape)


def latency_quantile(space: SearchSpace, budget: "Budget", input_shape: tuple[int, ...], num_classes: int, q: float,
                     seed: int = 0, samples: int = 20) -> float:
    """The ``q``-quantile of the latencies of ``samples`` random networks of ``space`` within ``budget``'s other
    limits, measured on its runtime under the one latency protocol: a reward target T when the user gives none.

    Why measured rather than a fixed number: what latency is reachable depends on the space, the input and this
    machine's runtime, and a target far from every candidate makes ``(LAT/T)^w`` rank by latency alone."""
    feasible = budget.feasibility(space, input_shape, num_classes)
    rng = np.random.default_rng([seed, 7])
    lats: list[float] = []
    for _ in range(50 * samples):
        if len(lats) == samples:
            break
        config = space.sample_rng(rng)
        if feasible is not None and not feasible(config):  # (None: no cheap limit to meet)
            continue
        lats.append(measure_latency(space.build(config, input_shape, num_classes), input_shape,
                                    runtime=budget.latency_runtime, batch_size=budget.latency_batch_size,
                                    threads=budget.latency_threads).median_ms)
    if not lats:
        raise ArchkdError(f"no random network of space '{space.name}' meets the budget, so no latency target can be "
                          "derived", "give --latency-target, or raise the budget")
    return float(np.quantile(lats, q))
