"""Zero-cost proxies (archkd.proxies) and the search pre-screen built on them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from archkd import api
from archkd.errors import ArchkdError
from archkd.models import build_from_spec, create_model
from archkd.proxies import PROXIES, ProxyScorer, proxy_batches, rank_correlation
from archkd.proxies.zero_cost import Probe, signature
from archkd.search import prescreen
from archkd.spaces import create_space
from conftest import small_config


def test_rank_correlation_known_values():
    r = rank_correlation([1, 2, 3, 4, 5], [10, 20, 30, 40, 50])
    assert r.kendall_tau == pytest.approx(1) and r.spearman_rho == pytest.approx(1) and r.n == 5
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]).kendall_tau == pytest.approx(-1)
    assert rank_correlation([1, 2, 3, 4], [1, 3, 2, 4]).kendall_tau == pytest.approx(2 / 3)  # 5 of 6 pairs agree
    with pytest.raises(ValueError):
        rank_correlation([1, 2], [1, 2])


def test_signatures_are_width_free_and_a_network_matches_itself(digits):
    batches = proxy_batches(digits, n=2, batch_size=32)
    assert len(batches) == 2 and batches[0][0].shape == (32, 1, 8, 8)
    assert torch.equal(proxy_batches(digits, n=2, batch_size=32)[1][1], batches[1][1])  # a fixed sample
    torch.manual_seed(0)
    narrow, wide = create_model("resnet8", num_classes=10, in_channels=1), create_model("resnet20", num_classes=10,
                                                                                        in_channels=1)
    for model in (narrow, wide):
        sig = signature(model, batches, 10)
        assert [tuple(g.shape) for g in sig.classes] == [(10, 10)] * 2
        assert [tuple(a.shape) for a in sig.relations] == [(32, 32)] * 2
        assert all(torch.allclose(g.diagonal(), torch.ones(10), atol=1e-5) for g in sig.classes)  # unit rows
    same = Probe(narrow, batches, (1, 8, 8), 10, lambda: signature(narrow, batches, 10))
    other = Probe(narrow, batches, (1, 8, 8), 10, lambda: signature(wide, batches, 10))
    for name in ("diswot_semantic", "diswot_relation", "diswot"):
        assert PROXIES[name](same) == pytest.approx(0, abs=1e-6)
        assert PROXIES[name](other) < -1e-4
    assert PROXIES["grad_norm"](same) > 0
    assert PROXIES["params"](same) == sum(p.numel() for p in narrow.parameters())


def test_a_frozen_trained_teacher_is_scored_and_left_frozen(digits, teacher_ckpt):
    from archkd.teacher import load_teacher

    teacher = load_teacher(teacher_ckpt)
    sig = signature(teacher.module, proxy_batches(digits), 10, train_mode=False)
    assert len(sig.classes) == 1
    assert not any(p.requires_grad for p in teacher.module.parameters()) and not teacher.module.training


def test_scores_depend_on_the_architecture_alone(digits):
    space = create_space("stages", widths=(8, 16), depths=(1, 2))
    rng = np.random.default_rng(0)
    specs = [space.spec(space.sample_rng(rng), (1, 8, 8), 10) for _ in range(3)]
    torch.manual_seed(1)
    scorer = ProxyScorer(["diswot", "grad_norm", "flops"], build_from_spec(specs[0]), digits)
    forward = [scorer(s) for s in specs]
    backward = [scorer(s) for s in reversed(specs)][::-1]
    assert forward == backward
    with pytest.raises(ArchkdError, match="unknown proxy 'bogus'"):
        ProxyScorer(["bogus"], None, digits)
    with pytest.raises(ArchkdError, match="does not expose"):
        ProxyScorer(["diswot"], None, digits)(specs[0])
    assert ProxyScorer(["params"], None, digits)(specs[0])["params"] > 0  # no teacher needed


def test_prescreen_keeps_the_best_feasible_distinct_candidates():
    space = create_space("stages", widths=(8, 16, 24), depths=(1, 2))

    def size(c: dict) -> float:
        return float(sum(p.numel() for p in space.build(c, (1, 8, 8), 10).parameters()))

    feasible = lambda c: size(c) <= 20_000  # noqa: E731
    best = prescreen(space, lambda c: -size(c), n=30, keep=5, seed=3, feasible=feasible)
    assert len(best) == 5 and len({json.dumps(s.config, sort_keys=True) for s in best}) == 5
    assert [s.score for s in best] == sorted((s.score for s in best), reverse=True)
    assert all(feasible(s.config) for s in best)
    everything = prescreen(space, lambda c: -size(c), n=30, keep=30, seed=3, feasible=feasible)
    assert [s.config for s in everything[:5]] == [s.config for s in best]
    assert prescreen(space, lambda c: -size(c), n=30, keep=5, seed=3, feasible=feasible) == best


def test_a_prescreened_search_trains_the_queued_best_first_and_resumes(tmp_path, teacher_ckpt):
    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.n_trials": 3,
                                    "search.prescreen.proxy": "diswot", "search.prescreen.factor": 4})
    out = api.search(cfg, log=None)
    queued = [q["config"] for q in out["prescreen"]["queued"]]
    assert len(queued) == 3 and [q["score"] for q in out["prescreen"]["queued"]] == \
        sorted((q["score"] for q in out["prescreen"]["queued"]), reverse=True)
    trained = [t["config"] for t in sorted(out["trials"], key=lambda t: t["number"]) if t["state"] == "COMPLETE"]
    assert trained == queued
    again = api.search(cfg, log=None)  # the finished study: nothing queued twice, nothing retrained
    rows = lambda r: [(t["number"], t["config"], t["val_acc"], t["state"]) for t in r["trials"]]  # noqa: E731
    assert rows(again) == rows(out) and again["prescreen"]["queued"] == out["prescreen"]["queued"]
    cfg.search.prescreen.factor = 5
    with pytest.raises(ArchkdError, match="prescreen"):
        api.search(cfg, log=None)  # another pre-screen is another study


def test_the_prescreen_warm_starts_a_learning_sampler_and_is_the_lowest_rung_under_hyperband(tmp_path, teacher_ckpt):
    """(c) a BO sampler starts from the queued best and proposes the rest; (b) with Hyperband the proxy is the rung
    below the pruner's epoch rungs: the queued candidates are trained and pruned like any other trial."""
    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.n_trials": 4, "search.method": "tpe",
                                    "search.epochs": 2, "search.pruner": "hyperband",
                                    "search.prescreen.proxy": "grad_norm", "search.prescreen.keep": 2,
                                    "search.prescreen.factor": 3})
    out = api.search(cfg, log=None)
    queued = [q["config"] for q in out["prescreen"]["queued"]]
    first = [t["config"] for t in sorted(out["trials"], key=lambda t: t["number"])]
    assert len(queued) == 2 and first[:2] == queued
    assert len([t for t in out["trials"] if t["state"] in ("COMPLETE", "PRUNED")]) == 4  # TPE proposed the other 2
