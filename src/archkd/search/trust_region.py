"""TRADE's optimiser: TuRBO-1 (Eriksson et al., 2019) as an Optuna sampler over any archkd search space.

Written from the paper's description on BoTorch/GPyTorch (the reference implementation's licence forbids reuse).

**Encoding.** A configuration becomes ``x ∈ [0, 1]^D``: an integer or float dimension is its uniform coordinate (the
inverse of ``spaces.from_uniform``; decoding *is* ``from_uniform``, which is how a continuous proposal is rounded to
an allowed value), a categorical dimension is a one-hot block (decoded by argmax). Conditional knobs keep their
coordinates whether active or not (0.5 when inactive); decoding walks the space, so inactive ones are ignored. One GP
over the family one-hot plus every family's knobs, and one trust region (TuRBO-1): the region centred on the
incumbent focuses on the winning family while the one-hot coordinates still let it move to another; a region per
family would be TuRBO-m, not implemented.

**Surrogate.** ``SingleTaskGP`` (Matérn-5/2 with one lengthscale per coordinate, inputs in [0, 1]^D, outputs
standardised) fitted by maximum marginal likelihood, in float64.

**Trust region.** A box around the incumbent ``x*`` with side ``L·w_i``, ``w_i = ℓ_i / (∏_j ℓ_j)^{1/D}`` (lengthscales
normalised to geometric mean 1), clipped to [0, 1]. After each batch of ``b`` observations: a *success* if the batch's
best beats the incumbent by more than ``1e-3·|best|``, else a failure; ``τ_s = 3`` successes in a row double ``L`` (at
most ``L_max = 1.6``), ``τ_f = ⌈max(4/b, D/b)⌉`` failures in a row halve it; below ``L_min = 0.5^7`` the region
*restarts*: a fresh scrambled-Sobol design of ``n_init`` points (TuRBO suggests ``2·D``; the default here is
``min(2·D, 10)``, since a multi-family vector has ~30 coordinates and a CPU search ~20 trials), and earlier
observations leave the GP.

**Acquisition.** Thompson sampling: ``min(100·D, 5000)`` scrambled-Sobol points in the box, each coordinate taken
from the Sobol point with probability ``min(20/D, 1)`` and kept at ``x*`` otherwise (at least one always changes); one
joint posterior sample over them, and the argmax of each of ``b`` samples without repeats.

**State from the study** (restart- and many-worker-safe): on every ask the observations — trials that count,
COMPLETE (infeasible ones with value 0) and PRUNED (their last intermediate value), in trial-number order — are
replayed through the rules above; the design index and the Thompson draw are seeded by ``(seed, restart, batch)``.
A trial asked while ``k`` other trials newer than the last observation are still running takes the ``k``-th point of
the batch, so parallel workers get different points and a restarted process proposes what the uninterrupted one would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from archkd.errors import ArchkdError
from archkd.search.samplers import Feasible, register_sampler
from archkd.spaces import SearchSpace, from_uniform

L_INIT, L_MIN, L_MAX = 0.8, 0.5 ** 7, 1.6
SUCCESS_TOLERANCE = 3


@dataclass
class TrustRegion:
    """TuRBO-1's region state and its expand / shrink / restart rules (we maximise)."""

    dim: int
    batch_size: int = 1
    length: float = L_INIT
    best: float = -math.inf
    successes: int = 0
    failures: int = 0
    restart: bool = False
    failure_tolerance: int = field(init=False)

    def __post_init__(self) -> None:
        self.failure_tolerance = math.ceil(max(4.0 / self.batch_size, self.dim / self.batch_size))

    def observe(self, values: list[float]) -> None:
        """Fold in the design (no length change): the incumbent is its best value."""
        self.best = max([self.best, *values])

    def update(self, values: list[float]) -> None:
        """One batch: success if ``max(values) > best + 1e-3·|best|``; 3 successes double L, ``τ_f`` failures halve
        it; ``L < L_min`` sets ``restart``."""
        top = max(values)
        if top > self.best + 1e-3 * abs(self.best):
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        if self.successes == SUCCESS_TOLERANCE:
            self.length, self.successes = min(2.0 * self.length, L_MAX), 0
        elif self.failures == self.failure_tolerance:
            self.length, self.failures = self.length / 2.0, 0
        self.best = max(self.best, top)
        self.restart = self.length < L_MIN


def region_bounds(center: np.ndarray, lengthscales: np.ndarray, length: float) -> tuple[np.ndarray, np.ndarray]:
    """``center ± L·w/2`` with ``w = ℓ / geomean(ℓ)`` (so ``∏ w = 1``), clipped to [0, 1]."""
    w = lengthscales / np.exp(np.mean(np.log(lengthscales)))
    return np.clip(center - length * w / 2, 0.0, 1.0), np.clip(center + length * w / 2, 0.0, 1.0)


def perturbation_probability(dim: int) -> float:
    return min(20.0 / dim, 1.0)


def candidates(center: np.ndarray, lb: np.ndarray, ub: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` points: Sobol in the box, each coordinate perturbed from ``center`` with ``perturbation_probability``,
    at least one coordinate per point."""
    d = len(center)
    sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n).double().numpy()
    pert = lb + (ub - lb) * sobol
    rng = np.random.default_rng(seed)
    mask = rng.random((n, d)) < perturbation_probability(d)
    none = ~mask.any(axis=1)
    mask[none, rng.integers(0, d, none.sum())] = True
    return np.where(mask, pert, center)


def sobol_design(n: int, dim: int, seed: int) -> np.ndarray:
    return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n).double().numpy()


def thompson(X: np.ndarray, Y: np.ndarray, state: TrustRegion, batch: int, seed: int,
             n_candidates: int | None = None) -> np.ndarray:
    """Fit the GP on (X, Y) and return candidates ordered by Thompson preference (``batch`` rows first).

    Rows after the first ``batch`` are the next-best by the first posterior sample: fallbacks when a proposal
    decodes to an over-budget configuration or to one already tried."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(seed)
    d = X.shape[1]
    x = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(Y, dtype=torch.float64).unsqueeze(-1)
    if float(y.std()) < 1e-9:  # a flat history: nothing to learn; the jitter keeps Standardize finite
        y = y + 1e-6 * torch.randn_like(y)
    gp = SingleTaskGP(x, y, outcome_transform=Standardize(m=1))
    try:
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    except Exception:  # noqa: BLE001 - a failed fit keeps the prior hyper-parameters; the proposal is still valid
        pass
    ls = gp.covar_module.lengthscale.detach().reshape(-1).numpy() if hasattr(gp.covar_module, "lengthscale") \
        else gp.covar_module.base_kernel.lengthscale.detach().reshape(-1).numpy()
    center = X[int(np.argmax(Y))]
    lb, ub = region_bounds(center, ls, state.length)
    cand = candidates(center, lb, ub, n_candidates or min(100 * d, 5000), seed)
    with torch.no_grad():
        samples = gp.posterior(torch.as_tensor(cand)).rsample(torch.Size([batch])).squeeze(-1).numpy()
    chosen: list[int] = []
    for s in samples:
        order = [i for i in np.argsort(-s) if i not in chosen]
        chosen.append(int(order[0]))
    rest = [int(i) for i in np.argsort(-samples[0]) if int(i) not in chosen][:500]
    return cand[chosen + rest]


class Encoding:
    """Configurations of a ``SearchSpace`` as points of [0, 1]^D (see the module docstring)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.slots: list[tuple[str, BaseDistribution, int, int]] = []  # (name, distribution, start, width)
        at = 0
        for d in space.dims():
            dist = d.distribution()
            width = len(dist.choices) if isinstance(dist, CategoricalDistribution) else 1
            self.slots.append((d.name, dist, at, width))
            at += width
        self.dim = at

    @staticmethod
    def _unit(dist: BaseDistribution, v: Any) -> float:
        """Centre of the uniform interval ``from_uniform`` maps to ``v``."""
        if isinstance(dist, IntDistribution) and not dist.log:
            n = (dist.high - dist.low) // dist.step + 1
            return (((v - dist.low) // dist.step) + 0.5) / n
        lo, hi = float(dist.low), float(dist.high)
        if dist.log and isinstance(dist, IntDistribution):  # v covers [log v, log(v+1)) of [log lo, log(hi+1))
            mid = (math.log(v) + math.log(v + 1)) / 2
            return (mid - math.log(lo)) / (math.log(hi + 1) - math.log(lo))
        if dist.log:
            return min(1.0, max(0.0, (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))))
        return min(1.0, max(0.0, (float(v) - lo) / (hi - lo)))

    def encode(self, config: dict) -> np.ndarray:
        x = np.full(self.dim, 0.5)
        for name, dist, at, width in self.slots:
            if isinstance(dist, CategoricalDistribution):
                x[at:at + width] = 0.0
                if name in config:
                    x[at + list(dist.choices).index(config[name])] = 1.0
            elif name in config:
                x[at] = self._unit(dist, config[name])
        return x

    def decode(self, x: np.ndarray) -> dict:
        slot = {name: (dist, at, width) for name, dist, at, width in self.slots}

        def draw(name: str) -> float:
            dist, at, width = slot[name]
            if isinstance(dist, CategoricalDistribution):
                return (int(np.argmax(x[at:at + width])) + 0.5) / width
            return float(min(max(x[at], 0.0), 1.0 - 1e-9))

        return self.space.sample(draw)


def _value(t: optuna.trial.FrozenTrial) -> float:
    if t.value is not None:
        return float(t.value)
    if t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return 0.0


class TuRBOSampler(optuna.samplers.BaseSampler):
    """TuRBO-1 over an archkd search space, its state replayed from the study on every ask."""

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Feasible | None = None, batch_size: int = 1,
                 n_init: int | None = None, n_candidates: int | None = None) -> None:
        self.space, self.seed, self.feasible = space, int(seed), feasible
        self.encoding = Encoding(space)
        self.batch_size = max(1, int(batch_size))
        self.n_init = int(n_init) if n_init else max(2, min(2 * self.encoding.dim, 10))
        self.n_candidates = n_candidates

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return self.space.distributions()

    def replay(self, observed: list[tuple[np.ndarray, float]]) -> tuple[TrustRegion, int, list]:
        """(state, restart index, this restart's observations) after folding in ``observed`` in order."""
        state, restart, current = TrustRegion(self.encoding.dim, self.batch_size), 0, []
        for x, y in observed:
            current.append((x, y))
            k = len(current)
            if k == self.n_init:
                state.observe([v for _, v in current])
            elif k > self.n_init and (k - self.n_init) % self.batch_size == 0:
                state.update([v for _, v in current[-self.batch_size:]])
                if state.restart:
                    state, restart, current = TrustRegion(self.encoding.dim, self.batch_size), restart + 1, []
        return state, restart, current

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.number != trial.number and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                and t.params]
        done.sort(key=lambda t: t.number)
        observed = [(self.encoding.encode(t.params), _value(t)) for t in done]
        last = done[-1].number if done else -1
        pending = sum(1 for t in trials if t.state == TrialState.RUNNING and last < t.number < trial.number)
        state, restart, current = self.replay(observed)
        seen = {self._key(t.params) for t in trials if t.number != trial.number and t.params}
        if len(current) + pending < self.n_init:
            design = sobol_design(self.n_init, self.encoding.dim, hash((self.seed, restart)) % 2**31)
            return self._first_feasible([design[len(current) + pending]], (restart, len(current) + pending), seen)
        batch_index = (len(current) - self.n_init) // self.batch_size
        X = np.stack([x for x, _ in current])
        Y = np.array([y for _, y in current])
        seed = hash((self.seed, restart, batch_index)) % 2**31
        pts = thompson(X, Y, state, max(self.batch_size, pending + 1), seed, self.n_candidates)
        return self._first_feasible(list(pts[pending:]), (restart, batch_index, pending), seen)

    def _key(self, config: dict) -> bytes:
        """A configuration's identity as the GP sees it (inactive conditional knobs do not tell two apart)."""
        return np.round(self.encoding.encode(config), 9).tobytes()

    def _first_feasible(self, points: list[np.ndarray], key: tuple, seen: set[bytes]) -> dict:
        """The first point whose configuration is new to the study and fits the budget; else seeded random draws
        (as the random sampler).

        Why skip configurations already tried: a continuous proposal near the incumbent often rounds back to the
        incumbent itself in a discrete space, and proposing it again would spend a trial on a known result."""
        for x in points:
            config = self.encoding.decode(x)
            if self._key(config) not in seen and (self.feasible is None or self.feasible(config)):
                return config
        rng = np.random.default_rng([self.seed, *key])
        for _ in range(2000):
            config = self.space.sample_rng(rng)
            if self._key(config) not in seen and (self.feasible is None or self.feasible(config)):
                return config
        return self.encoding.decode(points[0])

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        rng = np.random.default_rng([self.seed, trial.number, sum(map(ord, param_name))])
        return from_uniform(param_distribution, float(rng.random()))


@register_sampler("trade")
def _trade(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
           **options: Any) -> optuna.samplers.BaseSampler:
    if space is None:
        raise ArchkdError("the trade sampler needs a search space", "pass space= to create_sampler")
    return TuRBOSampler(space, seed=seed, feasible=feasible, **options)


__all__ = ["TrustRegion", "region_bounds", "perturbation_probability", "candidates", "sobol_design", "thompson",
           "Encoding", "TuRBOSampler", "L_INIT", "L_MIN", "L_MAX"]
