"""DistPro: hypergradient correctness, replay interpolation, BN statistics and teacher mode invariants."""
import pytest
import torch
import torch.nn as nn

from archkd.config import ProcessConfig, TrainConfig
from archkd.distill import fit
from archkd.distill.objective import Taps
from archkd.models import create_model
from archkd.process import (hypergradient, interpolate, load_process, make_pathways, normalize, replay_objective,
                            save_process, search_objective, search_process)
from archkd.process.search import _Joint, alpha_hypergradient
from archkd.teacher import load_teacher


def test_hypergradient_matches_finite_differences():
    """Tiny float64 problem: L_train = CE + Σ softmax(α)_i · d_i(w), L_val = CE on other data."""
    torch.manual_seed(0)
    d = torch.float64
    x, y = torch.randn(16, 5, dtype=d), torch.randint(0, 3, (16,))
    xv, yv = torch.randn(16, 5, dtype=d), torch.randint(0, 3, (16,))
    targets = [torch.randn(4, 3, dtype=d) for _ in range(3)]
    w0 = {"w1": torch.randn(5, 4, dtype=d) * 0.5, "w2": torch.randn(4, 3, dtype=d) * 0.5}
    mom = {"w1": torch.randn(5, 4, dtype=d) * 0.1, "w2": torch.randn(4, 3, dtype=d) * 0.1}
    alpha = torch.tensor([0.3, -0.2, 0.5], dtype=d, requires_grad=True)
    lr, mu, wd = 0.5, 0.9, 5e-4

    def forward(p, inp):
        h = torch.tanh(inp @ p["w1"])
        return h, h @ p["w2"]

    def train_loss_at(p, a):
        h, out = forward(p, x)
        wts = torch.softmax(a, 0)
        feats = [h[:4, :3], out[:4], (h[4:8, 1:] ** 2)]
        return nn.functional.cross_entropy(out, y) + sum(wi * ((f - t) ** 2).mean()
                                                         for wi, f, t in zip(wts, feats, targets))

    def val_loss(p):
        return nn.functional.cross_entropy(forward(p, xv)[1], yv)

    hg, _ = hypergradient(lambda p: train_loss_at(p, alpha), val_loss, w0, alpha, lr, mu, wd, mom)

    def unrolled_val(a):
        p = {k: v.clone().requires_grad_() for k, v in w0.items()}
        g = torch.autograd.grad(train_loss_at(p, a), list(p.values()))
        return float(val_loss({k: v - lr * (mu * mom[k] + gi + wd * v)
                               for (k, v), gi in zip(w0.items(), g)}))

    h = 1e-5
    fd = torch.zeros(3, dtype=d)
    for i in range(3):
        e = torch.zeros(3, dtype=d)
        e[i] = h
        fd[i] = (unrolled_val(alpha.detach() + e) - unrolled_val(alpha.detach() - e)) / (2 * h)
    rel = float((hg - fd).norm() / fd.norm())
    assert rel < 1e-2, (hg, fd)


def test_replay_interpolation_is_exact_at_both_ends():
    traj = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 7.0]])
    full = interpolate(traj, 9)
    assert torch.equal(full[0], traj[0]) and torch.equal(full[-1], traj[-1])
    assert torch.allclose(full[4], traj[1])  # the middle of the stretched schedule is the middle of the search
    assert torch.allclose(full[2], (traj[0] + traj[1]) / 2)
    assert torch.equal(interpolate(traj, 3), traj)


def test_normalisations():
    a = torch.tensor([1.0, 1.0, 1.0])
    assert torch.allclose(normalize(a, "softmax"), torch.full((3,), 1 / 3))
    assert torch.allclose(normalize(a, "softmax_bias"), torch.full((3,), 1 / 4))
    assert torch.allclose(normalize(a, "scaled_biased_softmax"), torch.full((3,), 3 / 4))
    assert torch.allclose(normalize(torch.zeros(2), "sigmoid"), torch.full((2,), 0.5))
    assert len(make_pathways(4, 4)) == 10 and len(make_pathways(3, 3, "all")) == 9


class GuardedTeacher(nn.Module):
    """Fails the test if anything puts it in train mode."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.stage_names = [f"inner.{n}" for n in inner.stage_names]
        super().train(False)

    def train(self, mode: bool = True):
        assert not mode, "the teacher was put in train mode"
        return super().train(False)

    def forward(self, x):
        assert not self.training and not self.inner.training
        return self.inner(x)


@pytest.fixture()
def setup(digits, teacher_ckpt):
    teacher = GuardedTeacher(load_teacher(teacher_ckpt).module)
    torch.manual_seed(0)
    student = create_model("stagenet", num_classes=10, in_channels=1,
                           stages=[{"depth": 1, "width": 8, "kernel": 3}, {"depth": 1, "width": 16, "kernel": 3}])
    x8, _, _ = next(digits.train.batches(4, device=torch.device("cpu")))
    obj = search_objective(student, teacher, digits.normalize(x8), ProcessConfig(transform="conv1x1"))
    return teacher, student, obj


def test_unrolled_passes_leave_bn_statistics_untouched(digits, setup):
    teacher, student, obj = setup
    s_taps, t_taps = Taps(student, obj.student_taps), Taps(teacher, obj.teacher_taps)
    x8, y, idx = next(digits.train.batches(32, device=torch.device("cpu")))
    x = digits.normalize(x8)
    with torch.no_grad():
        student(x)
        teacher(x)
    obj.setup(s_taps.pop(), t_taps.pop())
    with torch.no_grad():
        teacher(x)
    t_feats = t_taps.pop()
    joint = _Joint(student.train(), obj.train(), s_taps)
    before = {n: b.clone() for n, b in joint.named_buffers()}
    hg, _ = alpha_hypergradient(joint, x, y, t_feats, x[:16], y[:16], lr=0.1, momentum=0.9, weight_decay=5e-4)
    assert hg.shape == obj.alpha.shape and torch.isfinite(hg).all() and hg.abs().sum() > 0
    for n, b in joint.named_buffers():
        assert torch.equal(b, before[n]), f"{n} changed during the unrolled passes"
    joint(x, y, t_feats)  # the real step does update them
    assert any(not torch.equal(b, before[n]) for n, b in joint.named_buffers() if "running_mean" in n)


def test_search_and_replay_end_to_end(digits, setup, tmp_path):
    teacher, student, obj = setup
    r = search_process(student, teacher, digits, TrainConfig(epochs=1, batch_size=64, lr=0.1), obj, log=None)
    steps = r.steps_per_epoch
    assert r.trajectory.shape == (steps, len(obj.pathways)) and not torch.equal(r.trajectory[0], r.trajectory[-1])
    save_process(tmp_path / "process.pt", r, obj, {"note": "x"})
    proc = load_process(tmp_path / "process.pt")
    torch.manual_seed(0)
    s2 = create_model("stagenet", num_classes=10, in_channels=1,
                      stages=[{"depth": 1, "width": 8, "kernel": 3}, {"depth": 1, "width": 16, "kernel": 3}])
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.1)
    total = cfg.epochs * (len(digits.train) // 64)
    rep = replay_objective(proc, total, tau=0.9)
    res = fit(s2, digits, cfg, objective=rep, teacher=teacher, log=None)
    assert int(rep.step) == total and res.history[-1]["loss_ce"] < res.history[0]["loss_ce"]
    assert 0 < rep.saved_share() < 1  # τ-clipping skipped some (not all) pathway losses
    assert torch.allclose(rep.schedule[0], proc["trajectory"][0]) and torch.allclose(rep.schedule[-1],
                                                                                     proc["trajectory"][-1])
    equal = replay_objective(proc, total, mode="equal")
    assert torch.equal(equal.weights(), torch.ones(len(obj.pathways)))
    final = replay_objective(proc, total, mode="final")
    assert torch.allclose(final.weights(), normalize(proc["trajectory"][-1], "scaled_biased_softmax"))
    fit(s2, digits, TrainConfig(epochs=1, batch_size=64), objective=equal, teacher=teacher, log=None)


def test_cli_process_search_then_replay(tmp_path, teacher_ckpt):
    import json

    from conftest import small_config

    from archkd import api

    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "student.arch": "resnet8",
                                    "process.search_epochs": 1, "process.transform": "linear",
                                    "train.batch_size": 128, "train.epochs": 1})
    r = api.process_search(cfg, log=None)
    # resnet8 → resnet8: the stem and 3 stages on each side (index 0 is the stem), every forward pair
    assert r["pathways"] == ["t0→s0", "t0→s1", "t0→s2", "t0→s3", "t1→s1", "t1→s2", "t1→s3", "t2→s2", "t2→s3", "t3→s3"]
    assert r["student_taps"][0] == r["teacher_taps"][0] == "input:stem.2"
    html = (cfg.run_dir / "report.html").read_text()
    assert "Pathway weights" in html and "data:image/png;base64," in html
    assert json.loads((cfg.run_dir / "results.json").read_text())["curves"]["series"]
    cfg.distill.process = r["process"]
    cfg.process.tau = 0.5
    d = api.distill(cfg, log=None)
    assert d["process"] == r["process"] and d["pathway_loss_saved"] is not None


def test_joint_student_and_process_search(tmp_path, teacher_ckpt):
    from conftest import small_config

    from archkd import api

    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.process": True, "search.n_trials": 2,
                                    "process.transform": "linear", "budget.max_params": 30_000, "search.top_k": 1})
    r = api.search(cfg, log=None)
    done = [t for t in r["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 2
    for t in done:
        assert t["process"] == str((cfg.run_dir / "trials" / f"{t['number']:04d}" / "process.pt").resolve())
    # the winner is finalised with the process searched in its own trial, replayed over the full schedule
    (final,) = r["top_k"]
    assert final["process"] == done[[t["number"] for t in done].index(final["trial"])]["process"]
    assert final["test_acc"] is not None
    from archkd.config import load_config

    assert load_config(cfg.run_dir / "config.yaml").distill.process is None  # the search's config is not rewritten


def test_each_stage_pair_chooses_among_transforms(digits, teacher_ckpt, tmp_path):
    """DistPro's candidate set is pathways × transforms: each gets its own α, and the search moves weight between the
    transforms of one stage pair; the saved process replays each pathway with its own transform."""
    teacher = GuardedTeacher(load_teacher(teacher_ckpt).module)
    torch.manual_seed(0)
    student = create_model("stagenet", num_classes=10, in_channels=1,
                           stages=[{"depth": 1, "width": 8, "kernel": 3}, {"depth": 1, "width": 16, "kernel": 3}])
    x8, _, _ = next(digits.train.batches(4, device=torch.device("cpu")))
    obj = search_objective(student, teacher, digits.normalize(x8), ProcessConfig(transforms=["linear", "conv1x1"]))
    pairs = sorted({(p.teacher, p.student) for p in obj.pathways})
    assert len(obj.pathways) == 2 * len(pairs) == obj.alpha.numel()
    assert [p.transform for p in obj.pathways[:2]] == ["linear", "conv1x1"] and obj.pathways[0].name().endswith(":linear")
    r = search_process(student, teacher, digits, TrainConfig(epochs=1, batch_size=64, lr=0.1), obj, log=None)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in obj.transforms[1].modules())  # conv1x1 has its BN
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in obj.transforms[0].modules())  # linear has none
    w = r.weights[-1]
    gaps = [abs(float(w[2 * i] - w[2 * i + 1])) for i in range(len(pairs))]
    assert max(gaps) > 1e-3  # every α started at 1 (equal weights): the search separated the two transforms
    save_process(tmp_path / "p.pt", r, obj, {})
    replay = replay_objective(load_process(tmp_path / "p.pt"), 10)
    assert replay.pathways == obj.pathways
