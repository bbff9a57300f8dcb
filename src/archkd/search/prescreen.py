"""Pre-screening: rank many sampled candidates by a cheap score and queue the best as the study's first trials.

Why queue rather than filter inside the sampler: samplers never train, and they never see data either; the score (a
zero-cost proxy from ``archkd.proxies``) needs the teacher and a batch. Queued trials (Optuna's ``enqueue_trial``)
are asked before any sampler proposal, whatever the method, so the same mechanism is a pre-screen for random search
and a warm start for the learning samplers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from archkd.errors import ArchkdError
from archkd.search.samplers import MAX_DRAWS, Feasible
from archkd.spaces import SearchSpace


@dataclass(frozen=True)
class Screened:
    config: dict
    score: float


def prescreen(space: SearchSpace, score: Callable[[dict], float], n: int, keep: int, seed: int = 0,
              feasible: Feasible | None = None) -> list[Screened]:
    """Draw ``n`` distinct configurations within budget (seeded), score each, return the ``keep`` best, best first
    (ties: in drawing order)."""
    rng = np.random.default_rng([seed, 0x5C4EE7])
    seen: dict[str, dict] = {}
    for _ in range(MAX_DRAWS * max(1, n)):
        if len(seen) >= n:
            break
        c = space.sample_rng(rng)
        key = json.dumps(c, sort_keys=True)
        if key not in seen and (feasible is None or feasible(c)):
            seen[key] = c
    if not seen:
        raise ArchkdError("the pre-screen found no candidate within the budget", "raise the budget or shrink the space")
    scored = [Screened(c, float(score(c))) for c in seen.values()]
    order = sorted(range(len(scored)), key=lambda i: (-scored[i].score, i))
    return [scored[i] for i in order[:keep]]
