"""Zero-cost proxies (archkd.proxies) and the search pre-screen built on them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archkd import api
from archkd.errors import ArchkdError
from archkd.models import build_from_spec, create_model
from archkd.proxies import PROXIES, ProxyScorer, gaussian_reinit, proxy_batches, rank_correlation
from archkd.proxies.zero_cost import (Probe, Signature, _seed, channel_correlation_distance, class_correlation_distance,
                                      relation_distance, relation_matrix, semantic_distance, signature)
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


def test_channel_correlation_golden_values_and_closed_form():
    """DisWOT's semantic distance on 2 classes × 2 channels, worked by hand, and its closed form against the
    explicit per-class matrices ``normalize(g_k g_kᵀ)``."""
    g_t = torch.tensor([[1.0, 2.0], [-1.0, 1.0]])
    g_s = torch.tensor([[2.0, 1.0], [1.0, -1.0]])
    # class 0: rows (1,2)/√5 twice against (2,1)/√5 twice: 2 · (2 − 2 · 0.8) = 0.8; class 1: g_s1 = −g_t1 and
    # g gᵀ ignores the sign, so 0; M_s = (0.8 + 0) / (K·C = 4)
    assert float(channel_correlation_distance(g_t, g_s)) == pytest.approx(0.2)
    # a zero gradient entry leaves a zero row: ‖(1,0) − (1,1)/√2‖² + ‖0 − (1,1)/√2‖² = (3 − √2), over K·C = 2
    assert float(channel_correlation_distance(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))) == \
        pytest.approx((3 - math.sqrt(2)) / 2)
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(5, 7, generator=gen, dtype=torch.float64) for _ in range(2))
    a[1, 3] = 0.0
    explicit = lambda g: F.normalize(g[:, :, None] * g[:, None, :], dim=2)  # noqa: E731  (K, C, C)
    want = ((explicit(a) - explicit(b)) ** 2).sum() / (5 * 7)
    assert float(channel_correlation_distance(a, b)) == pytest.approx(float(want), rel=1e-9)
    assert float(channel_correlation_distance(a, a)) == pytest.approx(0, abs=1e-12)
    assert float(channel_correlation_distance(a, -3 * a)) == pytest.approx(0, abs=1e-12)  # g gᵀ: sign and scale free
    with pytest.raises(ValueError, match="equal shapes"):
        channel_correlation_distance(a, b[:, :4])


def test_class_correlation_golden_values_and_the_width_rule():
    g_t = torch.tensor([[1.0, 2.0], [-1.0, 1.0]])  # g gᵀ = [[5, 1], [1, 2]]
    g_s = torch.tensor([[2.0, 1.0], [1.0, 1.0]])   # g gᵀ = [[5, 3], [3, 2]]
    # rows (5,1)/√26 vs (5,3)/√34 and (1,2)/√5 vs (3,2)/√13: (2 − 2·28/√884 + 2 − 2·7/√65) / K
    want = 2 - 28 / math.sqrt(884) - 7 / math.sqrt(65)
    assert float(class_correlation_distance(g_t, g_s)) == pytest.approx(want)
    wider = torch.cat([g_s, torch.zeros(2, 1)], dim=1)  # 3 channels, the same class Gram
    assert float(class_correlation_distance(g_t, wider)) == pytest.approx(want)
    # equal widths: DisWOT's channel form; unequal: the class form
    assert float(semantic_distance(g_t, g_s)) == pytest.approx(float(channel_correlation_distance(g_t, g_s)))
    assert float(semantic_distance(g_t, wider)) == pytest.approx(want)


def test_relation_golden_values():
    f_t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    f_s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    a_t, a_s = relation_matrix(f_t), relation_matrix(f_s)
    assert torch.allclose(a_t[2], torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64) / math.sqrt(6))
    # rows 0 and 1 differ by (0,−1,1)/√2 and (−1,0,1)/√2 (1 each); row 2 by (1,1,2)/√6 − (0,0,1): 2 − 4/√6; / B²
    assert float(relation_distance(a_t, a_s)) == pytest.approx((4 - 4 / math.sqrt(6)) / 9)
    maps = torch.randn(4, 3, 2, 2)  # feature maps flatten per sample; the Gram is scale-free
    assert torch.allclose(relation_matrix(maps), relation_matrix(5 * maps.flatten(1)))


def test_signatures_and_a_network_matches_itself(digits):
    batches = proxy_batches(digits, n=2, batch_size=32)
    assert len(batches) == 2 and batches[0][0].shape == (32, 1, 8, 8)
    assert torch.equal(proxy_batches(digits, n=2, batch_size=32)[1][1], batches[1][1])  # a fixed sample
    torch.manual_seed(0)
    narrow, wide = create_model("resnet8", num_classes=10, in_channels=1), create_model("resnet20", num_classes=10,
                                                                                        in_channels=1)
    for model in (narrow, wide):
        sig = signature(model, batches, 10)
        assert [tuple(g.shape) for g in sig.grads] == [(10, 64)] * 2  # K × C of the classifier
        assert [tuple(a.shape) for a in sig.relations] == [(32, 32)] * 2
        assert all(torch.allclose(a.norm(dim=1), torch.ones(32, dtype=a.dtype)) for a in sig.relations)
    same = Probe(narrow, batches, (1, 8, 8), 10, lambda: signature(narrow, batches, 10))
    other = Probe(narrow, batches, (1, 8, 8), 10, lambda: signature(wide, batches, 10))
    for name in ("diswot_semantic", "diswot_relation", "diswot", "diswot_classgrad"):
        assert PROXIES[name](same) == pytest.approx(0, abs=1e-6)
        assert PROXIES[name](other) < -1e-4
    # equal classifier widths (64): diswot takes DisWOT's channel form, diswot_classgrad the class form
    assert PROXIES["diswot"](other) != pytest.approx(PROXIES["diswot_classgrad"](other), rel=1e-3)
    assert PROXIES["grad_norm"](same) > 0
    assert PROXIES["params"](same) == sum(p.numel() for p in narrow.parameters())


def test_gaussian_reinit_copies_and_redraws():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=1)
    model(torch.randn(4, 1, 8, 8))  # non-trivial BatchNorm running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = gaussian_reinit(model, seed=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    pairs = [(a, b) for a, b in zip(model.modules(), copy.modules()) if isinstance(a, (nn.Conv2d, nn.Linear))]
    assert len(pairs) > 5 and all(not torch.equal(a.weight, b.weight) for a, b in pairs)  # every weight redrawn
    # drawn from N(0, 1) (archkd's own: Kaiming convolutions, an N(0, 0.01) classifier)
    w = torch.cat([b.weight.detach().flatten() for _, b in pairs])
    assert float(w.mean()) == pytest.approx(0, abs=0.05) and float(w.std()) == pytest.approx(1, abs=0.05)
    bns = [m for m in copy.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) and torch.all(m.running_mean == 0)
                       and torch.all(m.running_var == 1) for m in bns)
    again, other = gaussian_reinit(model, seed=3), gaussian_reinit(model, seed=4)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in copy.state_dict().items())  # seeded
    assert not torch.equal(copy.state_dict()["stem.0.weight"], other.state_dict()["stem.0.weight"])


def test_the_scorer_scores_reinitialised_copies_and_leaves_the_callers_models_alone(digits):
    space = create_space("stages", widths=(8, 16), depths=(1, 2))
    spec = space.spec(space.sample_rng(np.random.default_rng(0)), (1, 8, 8), 10)
    torch.manual_seed(1)
    teacher = create_model("resnet8", num_classes=10, in_channels=1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    names = ["diswot", "diswot_semantic", "diswot_relation"]
    scorer = ProxyScorer(names, teacher, digits, seed=0)
    got = scorer(spec)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # weights and BN statistics
    assert teacher.training
    # the same numbers by hand: both networks re-initialised (teacher and student from their own seeds)
    seed = _seed(0, spec)
    torch.manual_seed(seed)
    student = build_from_spec(spec)
    t_sig = signature(gaussian_reinit(teacher, _seed(0, "teacher")), scorer.batches, 10)
    by_hand = Probe(student, scorer.batches, (1, 8, 8), 10, lambda: t_sig, reinit_seed=seed)
    assert {n: PROXIES[n](by_hand) for n in names} == pytest.approx(got, rel=1e-9)
    # ... and not the numbers of the networks as archkd initialises them
    as_built = Probe(student, scorer.batches, (1, 8, 8), 10, lambda: signature(teacher, scorer.batches, 10))
    assert PROXIES["diswot"](as_built) != pytest.approx(got["diswot"], rel=1e-3)
    # a fresh scorer with the same seed gives the same scores; another seed other scores
    assert ProxyScorer(names, teacher, digits, seed=0)(spec) == got
    assert ProxyScorer(names, teacher, digits, seed=1)(spec)["diswot"] != pytest.approx(got["diswot"], rel=1e-6)


def test_diswot_ranks_the_better_aligned_student_first():
    """A constructed case: two students whose signatures are the teacher's plus noise, small for one and large for
    the other (same noise draw, scaled), for each semantic form. The closer signature must score higher."""
    gen = torch.Generator().manual_seed(0)
    g_t, f_t = torch.randn(10, 16, generator=gen), torch.randn(32, 48, generator=gen)
    noise_g, noise_f = torch.randn(10, 16, generator=gen), torch.randn(32, 48, generator=gen)
    teacher = Signature([g_t], [relation_matrix(f_t)])

    def probe(eps: float, width: int | None = None) -> Probe:
        g = g_t + eps * noise_g
        if width is not None:  # a wider student: the teacher's channels plus unrelated ones
            g = torch.cat([g, eps * torch.randn(10, width - 16, generator=torch.Generator().manual_seed(1))], dim=1)
        p = Probe(nn.Identity(), [], (1, 8, 8), 10, lambda: teacher)
        p._student_sig = Signature([g], [relation_matrix(f_t + eps * noise_f)])
        return p

    for width in (None, 24):
        close, far = probe(0.2, width), probe(2.0, width)
        for name in ("diswot", "diswot_semantic", "diswot_relation", "diswot_classgrad"):
            assert PROXIES[name](close) > PROXIES[name](far), (name, width)
        if width is not None:  # unequal widths: both take the class form
            assert PROXIES["diswot"](close) == pytest.approx(PROXIES["diswot_classgrad"](close))


def test_a_frozen_trained_teacher_is_scored_and_left_frozen(digits, teacher_ckpt):
    from archkd.teacher import load_teacher

    teacher = load_teacher(teacher_ckpt)
    sig = signature(teacher.module, proxy_batches(digits), 10, train_mode=False)
    assert len(sig.grads) == 1
    assert not any(p.requires_grad for p in teacher.module.parameters()) and not teacher.module.training
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    space = create_space("stages", widths=(8, 16), depths=(1, 2))
    spec = space.spec(space.sample_rng(np.random.default_rng(0)), (1, 8, 8), 10)
    trained = ProxyScorer(["diswot"], teacher.module, digits, teacher_trained=True)(spec)
    reinit = ProxyScorer(["diswot"], teacher.module, digits)(spec)  # the paper's protocol: the teacher re-drawn too
    assert trained["diswot"] != pytest.approx(reinit["diswot"], rel=1e-6)
    assert all(torch.equal(before[k], v) for k, v in teacher.module.state_dict().items())
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
