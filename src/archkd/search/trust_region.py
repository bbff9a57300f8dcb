r"""TRADE's optimiser: TuRBO-1 (Eriksson et al., 2019) as an Optuna sampler over any archkd search space.

Written from the paper's description on BoTorch/GPyTorch (the reference implementation's licence forbids reuse).

**Encoding.** A configuration becomes ``x ∈ [0, 1]^D``: an integer or float dimension is its uniform coordinate (the
inverse of ``spaces.from_uniform``; decoding *is* ``from_uniform``, which is how a continuous proposal is rounded to
an allowed value), a categorical dimension is a one-hot block (decoded by argmax). Conditional knobs keep their
coordinates whether active or not (0.5 when inactive); decoding walks the space, so inactive ones are ignored. One GP
over the family one-hot plus every family's knobs, and one trust region (TuRBO-1): the region centred on the
incumbent focuses on the winning family while the one-hot coordinates still let it move to another; a region per
family would be TuRBO-m, not implemented.

**Surrogate** (:func:`fit_gp`). ``SingleTaskGP`` with ``ScaleKernel(MaternKernel(ν = 5/2, ard_num_dims = D))``, one
lengthscale per coordinate, and a ``GaussianLikelihood``, under TuRBO's bounds on the hyper-parameters:

.. math::

    ℓ_i ∈ [0.005, 4], \quad σ_f^2 ∈ [0.05, 20], \quad σ_n^2 ∈ [5·10^{-4}, 0.2],

inputs in [0, 1]^D, outputs standardised (``Standardize``), fitted by maximum marginal likelihood in float64 from
``ℓ_i = 0.5, σ_f^2 = 1, σ_n^2 = 0.005`` (a failed fit keeps these). Why not BoTorch's default kernel: it is an RBF
with a ``√D``-scaled lengthscale prior and no output scale — not the Matérn-5/2 ARD model the method is defined with.

**Trust region.** A box around the incumbent ``x*`` with side ``L·w_i``, ``w_i = ℓ_i / (∏_j ℓ_j)^{1/D}`` (lengthscales
normalised to geometric mean 1), clipped to [0, 1]. After each batch of ``b`` observations: a *success* if the batch's
best beats the incumbent by more than ``1e-3·|best|``, else a failure; ``τ_s = 3`` successes in a row double ``L`` (at
most ``L_max = 1.6``), ``τ_f`` failures in a row halve it; below ``L_min = 0.5^7`` the region *restarts*: a fresh
scrambled-Sobol design of ``n_init`` points, and earlier observations leave the GP.

**Sizes, from the search's trial count** ``N`` (``n_trials``; user ``sampler_options`` win). The paper's choices,

.. math::

    n_{init} = 2D, \qquad τ_f = \lceil \max(4/b,\ D/b) \rceil,

assume thousands of evaluations. A multi-family vector has ``D = 40`` coordinates and a CPU search ``N = 8`` trials:
``2D = 80`` design points would leave the GP no trial at all, and ``τ_f = 40`` failures would never shrink the region.
So, with ``N`` known,

.. math::

    n_{init} = \max\bigl(2,\ \min(2D,\ \lfloor N/4 \rfloor)\bigr), \qquad
    τ_f = \max\Bigl(2,\ \min\bigl(\lceil \max(4/b,\ D/b) \rceil,\
          \lceil (N - n_{init}) / (4b) \rceil\bigr)\Bigr).

``n_init``: a quarter of the trials, as the TPE and GP samplers' start-up (``samplers.startup_trials``) — three
quarters are left to the model; at least 2 points, the fewest from which a GP has a spread of outputs to standardise
and an incumbent to centre on; never more than the paper's ``2D``. ``τ_f``: ``(N − n_init)/b`` batches follow the
design; a quarter of them in a row halve ``L``, so a search whose batches all fail halves it up to four times
(``L = 0.8 → 0.05``) — the region does focus within the search — but does not collapse to a restart, which takes 7
halvings from ``L_init = 0.8``; at least 2, so that one unlucky batch never shrinks it; never more than the paper's
value. For ``D = 40, b = 1``: ``N = 8 → (n_init, τ_f) = (2, 2)``, ``N = 16 → (4, 3)``, ``N = 32 → (8, 6)``.
Without ``N``: ``n_init = max(2, min(2D, 10))`` and the paper's ``τ_f``. :meth:`TuRBOSampler.advise` warns when ``N``
leaves the GP no trial (``N ≤ n_init``) or the region no chance to shrink (``N − n_init < b·τ_f``).

**Acquisition.** Thompson sampling: ``min(100·D, 5000)`` scrambled-Sobol points in the box, each coordinate taken
from the Sobol point with probability ``min(20/D, 1)`` and kept at ``x*`` otherwise (at least one always changes); one
joint posterior sample over them, and the argmax of each of ``b`` samples without repeats. A proposal that decodes to
an over-budget configuration, or to one already tried, gives way to the next-best candidate. If no candidate in the
region decodes to a new feasible configuration — in a discrete space a small region, or one whose lengthscale
weights ``w_i`` are far below a grid step on the active knobs, rounds every candidate back to the incumbent, and the
one-hot family coordinates move only where ``L·w_i`` is large — the same Thompson step is taken once more with the
candidates perturbing ``x*`` within all of [0, 1]^D (the region's rules are unchanged); only if that also offers
nothing, a seeded random draw. Each trial records who proposed it (``samplers.set_proposer``): ``sobol`` (a design
point), ``model`` (a Thompson proposal, from the region or the whole cube) or ``fallback`` (the random draw, in the
design — its Sobol point over budget or already tried — or after it).

**State from the study** (restart- and many-worker-safe): on every ask the observations — trials that count,
COMPLETE (infeasible ones with value 0) and PRUNED (their last intermediate value), in trial-number order — are
replayed through the rules above; the design index and the Thompson draw are seeded by ``(seed, restart, batch)``.
A trial asked while ``k`` other trials newer than the last observation are still running takes the ``k``-th point of
the batch, so parallel workers get different points and a restarted process proposes what the uninterrupted one would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from archkd.errors import ArchkdError
from archkd.search.samplers import Feasible, register_sampler, set_proposer
from archkd.spaces import SearchSpace, from_uniform

if TYPE_CHECKING:
    from botorch.models import SingleTaskGP

L_INIT, L_MIN, L_MAX = 0.8, 0.5 ** 7, 1.6
SUCCESS_TOLERANCE = 3
LENGTHSCALE_BOUNDS, OUTPUTSCALE_BOUNDS, NOISE_BOUNDS = (0.005, 4.0), (0.05, 20.0), (5e-4, 0.2)
INITIAL_HYPERS = {"lengthscale": 0.5, "outputscale": 1.0, "noise": 0.005}


def paper_failure_tolerance(dim: int, batch_size: int = 1) -> int:
    """TuRBO's ``τ_f = ⌈max(4/b, D/b)⌉``."""
    return math.ceil(max(4.0 / batch_size, dim / batch_size))


def initial_design_size(dim: int, n_trials: int | None = None) -> int:
    """``n_init``: ``max(2, min(2D, ⌊N/4⌋))`` for a search of ``N`` trials, ``max(2, min(2D, 10))`` without ``N``
    (see the module docstring)."""
    if n_trials is None:
        return max(2, min(2 * dim, 10))
    return max(2, min(2 * dim, int(n_trials) // 4))


def failure_tolerance_for(dim: int, batch_size: int = 1, n_trials: int | None = None, n_init: int | None = None) -> int:
    """``τ_f``: ``max(2, min(⌈max(4/b, D/b)⌉, ⌈(N − n_init)/(4b)⌉))`` for a search of ``N`` trials, TuRBO's
    ``⌈max(4/b, D/b)⌉`` without ``N`` (see the module docstring)."""
    paper = paper_failure_tolerance(dim, batch_size)
    if n_trials is None:
        return paper
    n_init = initial_design_size(dim, n_trials) if n_init is None else int(n_init)
    return max(2, min(paper, math.ceil(max(0, int(n_trials) - n_init) / (4 * batch_size))))


@dataclass
class TrustRegion:
    """TuRBO-1's region state and its expand / shrink / restart rules (we maximise). ``failure_tolerance``: ``τ_f``,
    TuRBO's ``⌈max(4/b, D/b)⌉`` when not given (the sampler passes one sized to the search)."""

    dim: int
    batch_size: int = 1
    length: float = L_INIT
    best: float = -math.inf
    successes: int = 0
    failures: int = 0
    restart: bool = False
    failure_tolerance: int | None = None

    def __post_init__(self) -> None:
        if self.failure_tolerance is None:
            self.failure_tolerance = paper_failure_tolerance(self.dim, self.batch_size)
        self.failure_tolerance = max(1, int(self.failure_tolerance))

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


def fit_gp(X: np.ndarray, Y: np.ndarray) -> "SingleTaskGP":
    """The surrogate of the module docstring, fitted on ``X ∈ [0, 1]^{n×D}``, ``Y ∈ R^n`` (float64): a
    ``SingleTaskGP`` with a Matérn-5/2 ARD kernel under an output scale, a Gaussian likelihood, TuRBO's bounds on
    lengthscales, output scale and noise, and standardised outputs.

    A flat history (all ``Y`` equal) gets a ``10^-6`` jitter from torch's current generator so ``Standardize`` stays
    finite; a fit that fails keeps the initial hyper-parameters (the proposal is still valid)."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.constraints import Interval
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.mlls import ExactMarginalLogLikelihood

    x = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(Y), dtype=torch.float64).reshape(-1, 1)
    if y.shape[0] < 2 or float(y.std()) < 1e-9:  # a flat history: nothing to learn
        y = y + 1e-6 * torch.randn_like(y)
    d = x.shape[-1]
    covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d, lengthscale_constraint=Interval(*LENGTHSCALE_BOUNDS)),
                        outputscale_constraint=Interval(*OUTPUTSCALE_BOUNDS))
    likelihood = GaussianLikelihood(noise_constraint=Interval(*NOISE_BOUNDS))
    covar.base_kernel.lengthscale = INITIAL_HYPERS["lengthscale"]
    covar.outputscale = INITIAL_HYPERS["outputscale"]
    likelihood.noise = INITIAL_HYPERS["noise"]
    gp = SingleTaskGP(x, y, likelihood=likelihood, covar_module=covar, outcome_transform=Standardize(m=1))
    gp = gp.to(dtype=torch.float64)
    try:
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    except Exception:  # noqa: BLE001 - a failed fit keeps the initial hyper-parameters
        pass
    gp.eval()
    return gp


def thompson(X: np.ndarray, Y: np.ndarray, state: TrustRegion, batch: int, seed: int,
             n_candidates: int | None = None, whole: bool = False) -> np.ndarray:
    """Fit the GP on (X, Y) and return candidates ordered by Thompson preference (``batch`` rows first).
    ``whole``: candidates perturb ``x*`` within all of [0, 1]^D instead of the trust region.

    Rows after the first ``batch`` are all the other candidates, best first by the first posterior sample: fallbacks
    when a proposal decodes to an over-budget configuration or to one already tried (in a discrete space many
    candidates near the incumbent decode to the same few configurations, so the whole list is kept)."""
    torch.manual_seed(seed)
    d = X.shape[1]
    gp = fit_gp(X, Y)
    ls = gp.covar_module.base_kernel.lengthscale.detach().reshape(-1).numpy()
    center = X[int(np.argmax(Y))]
    lb, ub = (np.zeros(d), np.ones(d)) if whole else region_bounds(center, ls, state.length)
    cand = candidates(center, lb, ub, n_candidates or min(100 * d, 5000), seed)
    with torch.no_grad():
        samples = gp.posterior(torch.as_tensor(cand)).rsample(torch.Size([batch])).squeeze(-1).numpy()
    chosen: list[int] = []
    for s in samples:
        order = [i for i in np.argsort(-s) if i not in chosen]
        chosen.append(int(order[0]))
    rest = [int(i) for i in np.argsort(-samples[0]) if int(i) not in chosen]
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
    """TuRBO-1 over an archkd search space, its state replayed from the study on every ask.

    ``n_trials``: the search's trial count ``N``, which sizes the design and the failure tolerance (module docstring):
    ``n_init = max(2, min(2D, ⌊N/4⌋))`` — a quarter of the search, as the other model-based samplers' start-up, so the
    GP proposes the other three quarters; at least 2 points, the fewest that give the GP a spread of outputs and an
    incumbent — and ``τ_f = max(2, min(⌈max(4/b, D/b)⌉, ⌈(N − n_init)/(4b)⌉))``, so the region can halve within the
    search. Without ``N``: ``max(2, min(2D, 10))`` and TuRBO's ``τ_f``. ``n_init``, ``failure_tolerance`` and
    ``batch_size`` given explicitly (``search.sampler_options``) win."""

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Feasible | None = None, batch_size: int = 1,
                 n_init: int | None = None, n_candidates: int | None = None, n_trials: int | None = None,
                 failure_tolerance: int | None = None) -> None:
        self.space, self.seed, self.feasible = space, int(seed), feasible
        self.encoding = Encoding(space)
        self.batch_size = max(1, int(batch_size))
        self.n_trials = None if n_trials is None else int(n_trials)
        self._n_init_given = bool(n_init)
        self.n_init = int(n_init) if n_init else initial_design_size(self.encoding.dim, self.n_trials)
        self.failure_tolerance = int(failure_tolerance) if failure_tolerance else failure_tolerance_for(
            self.encoding.dim, self.batch_size, self.n_trials, self.n_init)
        self.n_candidates = n_candidates

    def _region(self) -> TrustRegion:
        return TrustRegion(self.encoding.dim, self.batch_size, failure_tolerance=self.failure_tolerance)

    def advise(self, n_trials: int) -> str | None:
        """A one-line warning when a search of ``n_trials`` trials leaves the GP no proposal (``n_trials ≤ n_init``:
        the Sobol design takes every trial) or the trust region no chance to shrink (fewer than ``b·τ_f`` trials
        after the design); ``None`` when TuRBO can work."""
        n, b = int(n_trials), self.batch_size
        if n <= self.n_init:
            fix = ("(the design is a quarter of the trials, at least 2)" if self.n_trials is not None
                   and not self._n_init_given else "or a smaller search.sampler_options.n_init")
            return (f"trade's first {self.n_init} trials are its Sobol design, so {n} trials never use its GP — give "
                    f"--n-trials {max(2 * self.n_init, 4)} or more {fix}")
        if n - self.n_init < b * self.failure_tolerance:
            return (f"trade's trust region shrinks after {self.failure_tolerance} failed batches of {b}, but {n} "
                    f"trials leave {n - self.n_init} after the {self.n_init}-point design, so it never shrinks — give "
                    f"--n-trials {self.n_init + b * self.failure_tolerance} or more, or a smaller "
                    "search.sampler_options.failure_tolerance")
        return None

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return self.space.distributions()

    def replay(self, observed: list[tuple[np.ndarray, float]]) -> tuple[TrustRegion, int, list]:
        """(state, restart index, this restart's observations) after folding in ``observed`` in order."""
        state, restart, current = self._region(), 0, []
        for x, y in observed:
            current.append((x, y))
            k = len(current)
            if k == self.n_init:
                state.observe([v for _, v in current])
            elif k > self.n_init and (k - self.n_init) % self.batch_size == 0:
                state.update([v for _, v in current[-self.batch_size:]])
                if state.restart:
                    state, restart, current = self._region(), restart + 1, []
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
            config, own = self._first_feasible([design[len(current) + pending]], (restart, len(current) + pending),
                                               seen)
            set_proposer(study, trial, "sobol" if own else "fallback")
            return config
        batch_index = (len(current) - self.n_init) // self.batch_size
        X = np.stack([x for x, _ in current])
        Y = np.array([y for _, y in current])
        seed = hash((self.seed, restart, batch_index)) % 2**31
        for whole in (False, True):  # the region, then (if it holds nothing new and feasible) the whole cube
            pts = thompson(X, Y, state, max(self.batch_size, pending + 1), seed, self.n_candidates, whole=whole)
            config, own = self._first_feasible(list(pts[pending:]), (restart, batch_index, pending), seen,
                                               draw=whole)
            if own:
                set_proposer(study, trial, "model")
                return config
        set_proposer(study, trial, "fallback")
        return config

    def _key(self, config: dict) -> bytes:
        """A configuration's identity as the GP sees it (inactive conditional knobs do not tell two apart)."""
        return np.round(self.encoding.encode(config), 9).tobytes()

    def _first_feasible(self, points: list[np.ndarray], key: tuple, seen: set[bytes],
                        draw: bool = True) -> tuple[dict, bool]:
        """(configuration, whether it is one of ``points``): the first point whose configuration is new to the study
        and fits the budget; else (``draw``) seeded random draws (as the random sampler) — the ``fallback`` proposer.

        Why skip configurations already tried: a continuous proposal near the incumbent often rounds back to the
        incumbent itself in a discrete space, and proposing it again would spend a trial on a known result. Each
        distinct configuration is checked against the budget once (many points decode to the same one)."""
        checked = set(seen)

        def new_and_feasible(config: dict) -> bool:
            k = self._key(config)
            if k in checked:
                return False
            checked.add(k)
            return self.feasible is None or self.feasible(config)

        for x in points:
            config = self.encoding.decode(x)
            if new_and_feasible(config):
                return config, True
        if not draw:
            return {}, False
        rng = np.random.default_rng([self.seed, *key])
        for _ in range(2000):
            config = self.space.sample_rng(rng)
            if self._key(config) not in seen and (self.feasible is None or self.feasible(config)):
                return config, False
        return (self.encoding.decode(points[0]) if points else config), False

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        rng = np.random.default_rng([self.seed, trial.number, sum(map(ord, param_name))])
        return from_uniform(param_distribution, float(rng.random()))


@register_sampler("trade", preset={"search.space": "multifamily"})  # TRADE: students of several families
def _trade(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
           n_trials: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    if space is None:
        raise ArchkdError("the trade sampler needs a search space", "pass space= to create_sampler")
    return TuRBOSampler(space, seed=seed, feasible=feasible, n_trials=n_trials, **options)


__all__ = ["TrustRegion", "region_bounds", "perturbation_probability", "candidates", "sobol_design", "fit_gp",
           "thompson", "Encoding", "TuRBOSampler", "initial_design_size", "failure_tolerance_for",
           "paper_failure_tolerance", "L_INIT", "L_MIN", "L_MAX"]
