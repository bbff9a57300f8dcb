"""Golden values: each loss against a hand computation on fixed tensors."""
import math

import numpy as np
import pytest
import torch

from archkd.distill import LOSSES, DistillObjective, create_loss
from archkd.errors import ArchkdError


def test_kd_golden():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -0.5]])
    t = torch.tensor([[3.0, 2.0, 1.0], [0.0, 1.0, 0.0]])
    T = 2.0

    def sm(x):
        e = np.exp(x / T - np.max(x / T))
        return e / e.sum()

    expected = np.mean([np.sum(sm(tt) * (np.log(sm(tt)) - np.log(sm(ss)))) for ss, tt in zip(s.numpy(), t.numpy())])
    expected *= T * T
    got = float(create_loss("kd", temperature=T)(s, t))
    assert got == pytest.approx(expected, rel=1e-5)
    assert got == pytest.approx(0.74210, abs=1e-4)  # frozen golden value
    assert float(create_loss("kd", temperature=T)(t, t)) == pytest.approx(0.0, abs=1e-7)


def test_fitnet_golden_identity_projection():
    fs = torch.arange(8.0).view(1, 2, 2, 2)
    ft = torch.ones(1, 2, 2, 2)
    loss = create_loss("fitnet")
    loss.setup(fs.shape, ft.shape)
    assert float(loss(fs, ft)) == pytest.approx(np.mean((np.arange(8.0) - 1) ** 2))  # 17.5


def test_fitnet_projects_channels_and_space():
    loss = create_loss("fitnet")
    loss.setup(torch.Size([2, 4, 8, 8]), torch.Size([2, 6, 4, 4]))
    out = loss(torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4))
    assert out.ndim == 0 and sum(p.numel() for p in loss.parameters()) > 0


def test_at_golden():
    fs = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    ft = torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]])
    # attention maps: one-hot at different positions -> squared diff sums to 2 over 4 entries
    assert float(create_loss("at")(fs, ft)) == pytest.approx(0.5)
    assert LOSSES["at"].default_weight == 1000.0


def test_objective_combines_terms():
    obj = DistillObjective(ce_weight=0.1, kd_weight=0.9, kd_kwargs={"temperature": 4.0})
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    total, parts = obj(s, y, t)
    ce = 0.1 * torch.nn.functional.cross_entropy(s, y)
    kd = 0.9 * create_loss("kd", temperature=4.0)(s, t)
    assert float(total) == pytest.approx(float(ce + kd), rel=1e-5)
    assert set(parts) == {"ce", "kd"}


def test_unknown_loss():
    with pytest.raises(ArchkdError, match="did you mean 'fitnet'"):
        create_loss("fitnett")
    with pytest.raises(ArchkdError):
        create_loss("kd", temperature=-1)
    assert math.isfinite(LOSSES["kd"].default_weight)


def test_dkd_decomposes_hinton_kd():
    """The paper's identity, per sample: KD = TCKD + (1 − p_y^T) · NCKD (α = 1, β = 1 − p_y of the teacher)."""
    from archkd.distill.losses import create_loss

    torch.manual_seed(0)
    for _ in range(3):
        s, t, y = torch.randn(1, 6), torch.randn(1, 6), torch.randint(0, 6, (1,))
        p_y = float(torch.softmax(t / 4.0, 1)[0, y])
        dkd = create_loss("dkd", temperature=4.0, alpha=1.0, beta=1.0 - p_y)(s, t, y)
        assert float(dkd) == pytest.approx(float(create_loss("kd", temperature=4.0)(s, t, y)), rel=1e-5)
    assert float(create_loss("dkd")(t, t, y)) == pytest.approx(0.0, abs=1e-6)


def test_dkd_golden_value():
    import numpy as np

    from archkd.distill.losses import create_loss

    s = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    t = torch.tensor([[3.0, 0.0, -2.0], [-1.0, 2.0, 0.5]])
    y = torch.tensor([0, 1])
    T, a, b = 2.0, 1.0, 8.0

    def ref(s_row, t_row, k):  # numpy, written out term by term
        ps, pt = np.exp(s_row / T) / np.exp(s_row / T).sum(), np.exp(t_row / T) / np.exp(t_row / T).sum()
        bs, bt = np.array([ps[k], 1 - ps[k]]), np.array([pt[k], 1 - pt[k]])
        tckd = (bt * np.log(bt / bs)).sum()
        qs, qt = np.delete(ps, k) / np.delete(ps, k).sum(), np.delete(pt, k) / np.delete(pt, k).sum()
        return (a * tckd + b * (qt * np.log(qt / qs)).sum()) * T * T

    expected = np.mean([ref(s[i].numpy().astype(float), t[i].numpy().astype(float), int(y[i])) for i in range(2)])
    got = create_loss("dkd", temperature=T, alpha=a, beta=b)(s, t, y)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_rkd_and_pkt_golden_values():
    import numpy as np

    from archkd.distill.losses import create_loss

    rng = np.random.default_rng(0)
    es, et = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))  # widths may differ

    def huber(a, b):
        d = np.abs(a - b)
        return np.where(d < 1, 0.5 * d * d, d - 0.5).mean()

    def psi_d(e):
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(5)] for i in range(5)])
        return d / d[~np.eye(5, dtype=bool)].mean()

    def psi_a(e):
        out = np.zeros((5, 5, 5))
        for j in range(5):
            for i in range(5):
                for k in range(5):
                    u, v = e[i] - e[j], e[k] - e[j]
                    nu, nv = max(np.linalg.norm(u), 1e-12), max(np.linalg.norm(v), 1e-12)
                    out[j, i, k] = (u / nu) @ (v / nv)
        return out

    expected = 25 * huber(psi_d(es), psi_d(et)) + 50 * huber(psi_a(es), psi_a(et))
    fs, ft = torch.tensor(es, dtype=torch.float32), torch.tensor(et, dtype=torch.float32)
    assert float(create_loss("rkd")(fs, ft)) == pytest.approx(expected, rel=1e-4)
    # a 4-D map is pooled over space first: the same embeddings, spread over a 2×2 map
    assert float(create_loss("rkd")(fs[:, :, None, None].expand(5, 3, 2, 2), ft)) == pytest.approx(expected, rel=1e-4)

    def cond(e):
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        k = (e @ e.T + 1) / 2
        return k / k.sum(1, keepdims=True)

    ps, pt = cond(es), cond(et)
    assert float(create_loss("pkt")(fs, ft)) == pytest.approx((pt * np.log(pt / ps)).sum(1).mean(), rel=1e-4)
    assert float(create_loss("pkt")(fs, fs)) == pytest.approx(0.0, abs=1e-6)


def test_dkd_runs_from_the_config_with_the_teacher_cache(tmp_path, teacher_ckpt):
    from archkd import api
    from conftest import small_config

    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "distill.loss": "dkd", "train.epochs": 1,
                                    "distill.features": [{"loss": "pkt", "student": "layer3", "teacher": "layer3"}]})
    out = api.distill(cfg, log=None)
    assert out["val_acc"] > 0.1
    keys = {k for h in out["history"] for k in h}
    assert "loss_kd" in keys and "loss_pkt:layer3" in keys


def _review_by_hand(loss, fs, ft):
    """ReviewKD recomputed with plain functional calls on the module's own weights (eval-mode BN)."""
    import torch.nn.functional as F

    def bn(x, m):
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    total, residual = 0.0, None
    for i in range(len(fs) - 1, -1, -1):
        abf = loss.abfs[i]
        x = bn(F.conv2d(fs[i], abf.reduce[0].weight), abf.reduce[1])
        if residual is not None:
            y = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
            a = torch.sigmoid(F.conv2d(torch.cat([x, y], 1), abf.att.weight, abf.att.bias))
            x = x * a[:, :1] + y * a[:, 1:]
        out = bn(F.conv2d(x, abf.out[0].weight, padding=1), abf.out[1])
        residual = x
        t = ft[i]
        levels = [lv for lv in (4, 2, 1) if lv < out.shape[-1]]
        w = [0.5 ** (k + 1) for k in range(len(levels))]
        hcl = F.mse_loss(out, t) + sum(wk * F.mse_loss(F.adaptive_avg_pool2d(out, lv), F.adaptive_avg_pool2d(t, lv))
                                       for wk, lv in zip(w, levels))
        total = total + hcl / (1 + sum(w))
    return total


def test_reviewkd_golden():
    g = torch.Generator().manual_seed(0)
    fs = [torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 6, 4, 4, generator=g)]
    ft = [torch.randn(2, 5, 8, 8, generator=g), torch.randn(2, 7, 4, 4, generator=g)]
    torch.manual_seed(0)
    loss = create_loss("reviewkd", mid_channels=8)
    loss.setup([f.shape for f in fs], [f.shape for f in ft])
    loss.eval()
    with torch.no_grad():
        got, by_hand = float(loss(fs, ft)), float(_review_by_hand(loss, fs, ft))
    assert got == pytest.approx(by_hand, rel=1e-5)
    assert loss.abfs[0].att is not None and loss.abfs[1].att is None  # the deepest stage has nothing to fuse
    assert got == pytest.approx(2.2903, abs=1e-3)  # frozen golden value


def test_reviewkd_takes_lists_of_taps_in_the_objective():
    obj = DistillObjective(ce_weight=1.0, features=[{"loss": "reviewkd", "student": ["a", "b"], "teacher": ["c", "d"]},
                                                    {"loss": "at", "student": "b", "teacher": "d"}])
    assert obj.student_taps == ["a", "b", "b"] and obj.teacher_taps == ["c", "d", "d"]
    g = torch.Generator().manual_seed(1)
    s = [torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 6, 4, 4, generator=g)]
    t = [torch.randn(2, 5, 8, 8, generator=g), torch.randn(2, 7, 4, 4, generator=g)]
    obj.setup(s + s[1:], t + t[1:])
    total, parts = obj(torch.randn(2, 10), torch.tensor([1, 2]), None, s + s[1:], t + t[1:])
    assert set(parts) == {"ce", "reviewkd:a,b", "at:b"} and total.requires_grad
    with pytest.raises(ArchkdError, match="equally long lists"):
        DistillObjective(features=[{"loss": "reviewkd", "student": ["a", "b"], "teacher": ["c"]}])
    with pytest.raises(ArchkdError, match="give one of each"):
        DistillObjective(features=[{"loss": "at", "student": ["a", "b"], "teacher": ["c", "d"]}])
