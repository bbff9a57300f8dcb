"""The fidelity check's arithmetic (issue #28): which trials it re-trains and how it scores their agreement."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from archkd.search.fidelity import check, kendall_tau_b, rank_agreement, spread_trials


def _trials(values):
    return [{"number": i, "state": "COMPLETE", "reward": v} for i, v in enumerate(values)]


def test_tau_b_matches_scipy_with_and_without_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 9).astype(float), rng.normal(size=9)
        assert float(kendall_tau_b(a, b)) == pytest.approx(kendalltau(a, b).statistic)
    assert math.isnan(float(kendall_tau_b(np.ones(5), np.arange(5.0))))  # all tied: undefined


def test_spread_trials_span_the_value_range_and_skip_finalists_and_failures():
    trials = _trials([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8]) + [{"number": 7, "state": "FAIL", "reward": 0.0},
                                                           {"number": 8, "state": "COMPLETE", "reward": 0.05,
                                                            "duplicate_of": 1}]
    picked = spread_trials(trials, exclude={2}, k=3)
    assert [t["number"] for t in picked] == [1, 3, 6]  # lowest, middle, highest of the non-finalists
    assert spread_trials(trials, exclude={2}, k=50) == sorted(
        [t for t in trials[:7] if t["number"] != 2], key=lambda t: t["reward"])
    assert spread_trials(trials, exclude=set(), k=0) == []


def test_agreement_interval_excludes_zero_only_when_ranking_holds():
    values = list(np.linspace(0.2, 0.9, 8))
    good = check([(i, v, v + 0.01 * (i % 2)) for i, v in enumerate(values)])
    assert good.tau > 0.8 and good.trusted and good.warning(2, 0.2) is None
    rng = np.random.default_rng(3)
    noise = check([(i, v, float(rng.uniform())) for i, v in enumerate(values)])
    assert not noise.trusted and noise.ci[0] <= 0 <= noise.ci[1]
    msg = noise.warning(1, 0.05)
    assert "search.epochs (--trial-epochs, now 1)" in msg and "search.data_fraction (now 0.05)" in msg and "\n" not in msg
    backwards = check([(i, v, 1 - v) for i, v in enumerate(values)])
    assert backwards.ci[1] < 0 and "lies below 0" in backwards.warning(2, 0.2)
    d = noise.to_dict()
    assert set(d) >= {"tau", "ci", "n", "trusted", "trials"} and d["n"] == 8


def test_agreement_is_deterministic_and_undefined_for_one_trial():
    a = rank_agreement([0.1, 0.4, 0.3, 0.8], [0.2, 0.5, 0.1, 0.9], seed=5)
    assert a == rank_agreement([0.1, 0.4, 0.3, 0.8], [0.2, 0.5, 0.1, 0.9], seed=5)
    one = check([(0, 0.5, 0.5)])
    assert math.isnan(one.tau) and not one.trusted and "too few" in one.warning(2, 1.0)
    tied = check([(i, 0.093, 0.1 * i) for i in range(5)])  # every trial at chance: one value for all
    assert math.isnan(tied.tau) and "did not tell the students apart" in tied.warning(1, 0.02)


def test_a_search_checks_its_fidelity_and_warns_when_trials_rank_at_random(tmp_path, teacher_ckpt):
    """At one epoch on 5 % of digits the trial accuracies are noise: the check re-trains the finalist and three trials
    spanning the trial accuracies, records τ and its interval, and warns in one line naming what to raise."""
    import json

    from conftest import small_config

    from archkd import api
    from archkd.errors import ArchkdWarning

    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.n_trials": 6, "search.top_k": 1,
                                    "search.check_fidelity": 3, "search.data_fraction": 0.05, "train.epochs": 3})
    with pytest.warns(ArchkdWarning, match=r"fidelity check: .*raise search.epochs \(--trial-epochs, now 1\)"):
        r = api.search(cfg, log=None)
    fc = r["fidelity_check"]
    assert fc["n"] == 4 and not fc["trusted"] and fc["ci"][0] <= 0
    assert fc["trials"] == sorted(fc["trials"]) and r["top_k"][0]["trial"] in fc["trials"]
    assert len(fc["full_val_acc"]) == 4 and fc["seconds"] > 0
    saved = json.loads((cfg.run_dir / "results.json").read_text())["search"]["fidelity_check"]
    assert saved["n"] == 4 and saved["ci"] == fc["ci"]
    report = (cfg.run_dir / "report.html").read_text()
    assert "Fidelity check" in report and "not trusted" in report and f"{fc['tau']:.2f}" in report
    extras = {n for n in fc["trials"] if n != r["top_k"][0]["trial"]}  # trained under fidelity/NN_trialXXXX
    assert {int(p.name.split("trial")[1]) for p in (cfg.run_dir / "fidelity").iterdir()} == extras
