"""Whether a search's trial values meant anything: rank agreement between the cheap trial score and the full recipe.

A search scores each student after a short training (few epochs, a fraction of the data). At the fidelities a CPU
affords, that score can rank seeds as much as architectures (``bench/proxy.py``: seed-to-seed Kendall τ 0.05 at one
epoch on 10 % of CIFAR-10), and the winner would be reported with the same confidence either way. So besides the
top-k finalists, ``search.check_fidelity = K`` re-trains K further trials that span the range of trial values with
the full recipe, and measures how well trial value ranks full-recipe accuracy over every re-trained trial:

    τ = Kendall's tau-b of (trial value, full-recipe validation accuracy) over the n re-trained trials,

with a percentile bootstrap interval: B resamples of the n pairs drawn with replacement (seeded, so a report is
reproducible), τ of each (resamples whose values are all tied have no τ and are dropped), and the 2.5 and 97.5
percentiles. When that interval includes 0 the search cannot tell its good students from its bad ones at this
fidelity, and the user is told what to raise.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

BOOTSTRAP = 1000  # resamples of the interval; 1000 puts its ends within about ±0.02 of their limit


def spread_trials(trials: list[dict], exclude: set[int], k: int, key: str = "reward") -> list[dict]:
    """``k`` completed trials (not in ``exclude``, typically the top-k finalists) whose ``key`` values span the range:
    the ones nearest to k evenly spaced quantiles of the candidates' values, lowest and highest included.

    Why a span and not a random draw: rank agreement measured on trials of nearly equal value says little (their
    order is noise at any fidelity); the question is whether a clearly worse trial value means a worse student."""
    pool = sorted((t for t in trials if t["state"] == "COMPLETE" and t.get("duplicate_of") is None
                   and t["number"] not in exclude and t.get(key) is not None), key=lambda t: (t[key], t["number"]))
    if k <= 0 or not pool:
        return []
    if k >= len(pool):
        return pool
    picks = sorted({round(i * (len(pool) - 1) / (k - 1)) for i in range(k)} if k > 1 else {len(pool) // 2})
    return [pool[i] for i in picks]


@dataclass
class FidelityCheck:
    """The rank agreement between trial values and full-recipe accuracy over the re-trained trials."""

    tau: float  # Kendall's tau-b; nan when fewer than two distinct pairs
    ci: tuple[float, float]  # percentile bootstrap interval (2.5 %, 97.5 %); nan, nan when undefined
    n: int  # re-trained trials in the check
    trials: list[int] = field(default_factory=list)  # their numbers
    trial_values: list[float] = field(default_factory=list)
    full_val_acc: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training time spent on the K extra trials (the finalists are trained anyway)

    @property
    def trusted(self) -> bool:
        """Whether the interval lies above 0: a higher trial value does mean a better student, beyond chance."""
        return not math.isnan(self.ci[0]) and self.ci[0] > 0

    def to_dict(self) -> dict:
        return {**asdict(self), "ci": list(self.ci), "trusted": self.trusted}

    def warning(self, trial_epochs: int, data_fraction: float) -> str | None:
        """One line for the log when the check cannot vouch for the search's ranking, else None."""
        if self.trusted:
            return None
        if len(set(self.trial_values)) == 1 and self.n > 1:
            what = "every re-trained trial had the same trial value: the trials did not tell the students apart"
        elif math.isnan(self.tau) or math.isnan(self.ci[0]):
            what = "too few re-trained trials to tell"
        else:
            where = "includes 0" if self.ci[1] >= 0 else "lies below 0: higher trial values meant worse students"
            what = f"Kendall τ {self.tau:.2f}, 95 % interval [{self.ci[0]:.2f}, {self.ci[1]:.2f}] {where}"
        return (f"fidelity check: trial values do not reliably rank full-recipe accuracy ({what}, {self.n} trials); "
                f"raise search.epochs (--trial-epochs, now {trial_epochs}) or search.data_fraction (now {data_fraction:g}), "
                "or search.check_fidelity for a tighter interval")


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of the pairs (a[..., i], b[..., i]), vectorised over leading axes (the bootstrap's resamples):

        τ_b = Σ_{i<j} sgn(a_i − a_j) sgn(b_i − b_j) / √(Σ_{i<j} sgn(a_i − a_j)² · Σ_{i<j} sgn(b_i − b_j)²),

    nan where either side is all tied. Written out because SciPy's call costs milliseconds, a thousand times over."""
    sa = np.sign(a[..., :, None] - a[..., None, :])
    sb = np.sign(b[..., :, None] - b[..., None, :])
    den = np.sqrt((sa * sa).sum((-1, -2)) * (sb * sb).sum((-1, -2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (sa * sb).sum((-1, -2)) / np.where(den > 0, den, 1), np.nan)


def rank_agreement(trial_values: list[float], full_acc: list[float], *, seed: int = 0,
                   bootstrap: int = BOOTSTRAP) -> tuple[float, tuple[float, float]]:
    """Kendall's τ of the pairs and its percentile bootstrap interval (see the module docstring)."""
    a, b = np.asarray(trial_values, dtype=float), np.asarray(full_acc, dtype=float)
    nan = float("nan")
    tau = float(kendall_tau_b(a, b)) if len(a) >= 2 else nan
    if math.isnan(tau):
        return nan, (nan, nan)
    idx = np.random.default_rng(seed).integers(0, len(a), (bootstrap, len(a)))
    taus = kendall_tau_b(a[idx], b[idx])
    taus = taus[~np.isnan(taus)]
    if not len(taus):
        return tau, (nan, nan)
    lo, hi = np.percentile(taus, [2.5, 97.5])
    return tau, (float(lo), float(hi))


def check(rows: list[tuple[int, float, float]], *, seed: int = 0, seconds: float = 0.0) -> FidelityCheck:
    """The check over ``rows`` of (trial number, trial value, full-recipe validation accuracy)."""
    rows = sorted(rows)
    values, accs = [r[1] for r in rows], [r[2] for r in rows]
    tau, ci = rank_agreement(values, accs, seed=seed)
    return FidelityCheck(tau, ci, len(rows), [r[0] for r in rows], values, accs, seconds)
