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
