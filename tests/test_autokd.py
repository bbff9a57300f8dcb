"""AutoKD: the family objective, recipe dimensions reaching the trainer, the method preset, and BO beating random
search on a cheap synthetic objective (the NAGO space and network themselves: test_nago.py)."""
from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from archkd.config import load_config
from archkd.search import Candidate, HashRandomSampler, KDTrialObjective, create_sampler
from archkd.spaces import create_space


def _stagenet(width: int) -> dict:
    return {"name": "stagenet", "num_classes": 10, "in_channels": 1,
            "kwargs": {"stages": [{"depth": 1, "width": width, "kernel": 3, "stride": 1}]}}


def test_a_family_is_scored_by_the_mean_of_its_members(digits, teacher_ckpt, tmp_path, monkeypatch):
    """k networks are trained (each in its own folder, with the trial's recipe), the value is their mean, the spread
    and the best member are kept, and the pruner sees steps j·E + e with the running mean."""
    import archkd.search.objective as objective_mod
    from archkd.config import DistillConfig, TrainConfig
    from archkd.teacher import load_teacher

    used = []
    real = objective_mod.objective_from_config

    def spy(distill, label_smoothing=0.0):
        used.append((distill.temperature, distill.alpha))
        return real(distill, label_smoothing)

    monkeypatch.setattr(objective_mod, "objective_from_config", spy)
    obj = KDTrialObjective(digits, TrainConfig(epochs=2, batch_size=64), teacher=load_teacher(teacher_ckpt),
                           distill=DistillConfig(), cache=None, seed=0, device="cpu", trials_dir=tmp_path / "trials")
    members = (_stagenet(8), _stagenet(16))
    recipe = {"distill.temperature": 7.5, "distill.alpha": 0.25}
    reports = []
    out = obj(Candidate(3, 3, {}, members[0], recipe, {}, members), lambda step, v: reports.append((step, v)))
    accs = out.attrs["family_accs"]
    assert len(accs) == 2 and out.val_acc == pytest.approx(sum(accs) / 2)
    assert out.attrs["family_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2)
    best = int(np.argmax(accs))
    assert out.attrs["family_best_spec"] == members[best] and f"m{best}" in out.attrs["checkpoint"]
    assert used == [(7.5, 0.25), (7.5, 0.25)]  # both members trained with the trial's temperature and α
    assert {p.name for p in (tmp_path / "trials" / "0003").iterdir()} == {"m0", "m1"}
    assert [s for s, _ in reports] == [0, 1, 2, 3]  # epochs count from 0
    assert reports[3][1] == pytest.approx(out.val_acc)  # last report: both members at their last epoch


def test_the_autokd_preset_sits_under_what_the_user_sets():
    cfg = load_config(None, ["search.method=autokd"])
    assert cfg.search.space == "nago" and cfg.search.pruner == "hyperband"
    assert cfg.search.pruner_options == {"reduction_factor": 2}
    assert cfg.search.recipe["distill.temperature"] == {"low": 1.0, "high": 20.0, "log": True}
    mine = load_config(None, ["search.method=autokd", "search.space=stages", "search.pruner_options={reduction_factor: 3}"])
    assert mine.search.space == "stages" and mine.search.pruner_options == {"reduction_factor": 3}
    gp = load_config(None, ["search.method=autokd-gp"])
    assert gp.search.space == "nago" and gp.search.pruner == "none"
    assert load_config(None, []).search.space == "stages"  # other methods keep the built-in defaults


def _synthetic(space, optimum: dict):
    """A smooth bowl over the space's dimensions in [0, 1]-normalised coordinates, maximal (1.0) at ``optimum``."""
    dims = space.dims()

    def unit(d, v):
        dist = d.distribution()
        lo, hi = dist.low, dist.high
        if getattr(dist, "log", False):
            return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (v - lo) / (hi - lo)

    def f(config: dict) -> float:
        return 1.0 - sum((unit(d, config[d.name]) - unit(d, optimum[d.name])) ** 2 for d in dims) / len(dims)

    return f


def _best_after(sampler, space, f, n: int) -> float:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    best = -1.0
    for _ in range(n):
        t = study.ask()
        v = f(space.suggest(t))
        study.tell(t, v)
        best = max(best, v)
    return best


@pytest.mark.parametrize("method", ["autokd", "autokd-gp"])
def test_bo_samplers_beat_random_search_on_a_synthetic_objective(method):
    """Over 3 seeds and 20 trials, on the 10-dimensional AutoKD vector (8 generator + temperature + α)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = create_space("nago", recipe=load_config(None, ["search.method=autokd"]).search.recipe)
    optimum = space.sample_rng(np.random.default_rng(123))
    f = _synthetic(space, optimum)
    bo, rnd = [], []
    for seed in range(3):
        bo.append(_best_after(create_sampler(method, seed=seed, space=space), space, f, 20))
        rnd.append(_best_after(HashRandomSampler(seed, space=space), space, f, 20))
    assert np.mean(bo) > np.mean(rnd), (bo, rnd)
    assert sum(b > r for b, r in zip(bo, rnd)) >= 2, (bo, rnd)
