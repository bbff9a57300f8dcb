"""The latency predictor: what it records, how it fits, and a search that uses it in place of measuring."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from archkd import api
from archkd.cli import run
from archkd.errors import ArchkdError
from archkd.measure import REPEATS, WARMUP
from archkd.measure.predictor import FEATURES, LatencyPredictor, block_kind, block_module, count_ops
from archkd.search import Budget, fit_latency_predictor, sample_latencies
from archkd.spaces import create_space

from conftest import small_config


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y = y + self.dw(y)  # a functional residual add: seen by the recorder though it is no module
        return self.fc(self.pw(y).mean((2, 3)))


def test_every_conv_and_linear_is_a_block_rebuilt_with_its_shape():
    ops = count_ops(_Net(), (3, 16, 16))
    assert [block_kind(b) for b in ops.blocks] == ["conv", "dwconv", "conv", "linear"]
    assert ops.totals["eltwise_ops"] == 2 and ops.totals["pool_ops"] == 1  # relu + add; mean
    for key, (cin, hw, cout) in zip(ops.blocks[:3], [(3, 16, 8), (8, 8, 8), (8, 8, 16)]):
        module, shape, batch = block_module(key)
        assert shape == (cin, hw, hw) and batch == 1
        out = module.eval()(torch.randn(1, *shape))
        assert out.shape[1] == cout and out.shape[-1] == (8 if hw == 16 else hw)  # stride 2 on the first
    module, shape, _ = block_module(ops.blocks[3])
    assert isinstance(module, nn.Linear) and shape == (16,) and module.out_features == 10


def test_the_fit_recovers_a_cost_model_of_its_own_form():
    """Latencies built exactly from the model's form are fitted back to within rounding: NNLS on relative error
    finds the generating non-negative coefficients."""
    rng = np.random.default_rng(0)
    true = {"bias": 0.01, "conv_ms": 0.9, "dwconv_ms": 0.5, "linear_n": 0.002, "eltwise_elems": 1e-6}
    feats = [{k: (1.0 if k == "bias" else float(rng.uniform(0, 1e3 if k.endswith("elems") else 1)))
              for k in FEATURES} for _ in range(40)]
    lats = [sum(true.get(k, 0.0) * v for k, v in f.items()) for f in feats]
    pred = LatencyPredictor(runtime="onnxruntime").fit(feats, lats)
    v = pred.validate(feats, lats)
    assert v.within_10pct == 1.0 and v.max_rel_error < 1e-6 and v.kendall_tau == pytest.approx(1.0)
    assert all(w >= 0 for w in pred.weights.values())


def test_a_fitted_predictor_ranks_a_space_and_round_trips(tmp_path):
    space = create_space("stages")
    pred = fit_latency_predictor(space, (1, 8, 8), 10, "onnxruntime", samples=24, holdout=0.25)
    assert pred.validation.n == 6 and pred.n_fit == 24 and pred.lut and pred.empty_ms > 0
    assert pred.validation.kendall_tau > 0.3  # loose: timing on a shared CI machine; the bench reports the real figure
    model = space.build(space.smallest(), (1, 8, 8), 10)
    ms = pred.predict_ms(model, (1, 8, 8))  # times the blocks it had not met: the table grows with use
    back = LatencyPredictor.load(pred.save(tmp_path / "p.json"))
    assert back.predict_ms(model, (1, 8, 8)) == ms and back.lut == pred.lut
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArchkdError, match="not an archkd latency predictor"):
        LatencyPredictor.load(tmp_path / "bad.json")
    with pytest.raises(ArchkdError, match="no latency predictor"):
        LatencyPredictor.load(tmp_path / "missing.json")


def test_samples_are_distinct_networks_of_the_space():
    space = create_space("stages")
    drawn = sample_latencies(LatencyPredictor(runtime="torch"), space, (1, 8, 8), 10, samples=6, seed=1)
    assert len({json.dumps(s.spec, sort_keys=True) for s in drawn}) == 6
    assert all(s.latency_ms > 0 and s.features["bias"] == 1.0 for s in drawn)


def test_budget_uses_the_predictor_instead_of_the_runtime(monkeypatch):
    budget = Budget(max_latency_ms=1.0, latency_source="predicted")
    model = _Net()
    with pytest.raises(ArchkdError, match="no latency predictor is loaded"):
        budget.measure(model, (3, 16, 16))
    budget.predictor = LatencyPredictor(runtime="onnxruntime", weights={"bias": 0.25}, empty_ms=0.0,
                                        lut={b: 0.0 for b in count_ops(model, (3, 16, 16)).blocks})
    monkeypatch.setattr("archkd.measure.budget_kinds.measure_latency", lambda *a, **k: pytest.fail("measured"))
    assert budget.measure(model, (3, 16, 16))["latency_ms"] == pytest.approx(0.25)
    assert "predicted" in budget.describe()


def test_one_latency_protocol_everywhere(monkeypatch):
    """Config defaults, measure_latency's defaults and what a search budget asks for are the one protocol: the test
    fails if a budget passes its own warm-up or repeat count again (it used 5/30)."""
    import inspect

    from archkd.config import MeasureConfig
    from archkd.measure import LatencyResult, measure_latency

    assert (MeasureConfig().warmup, MeasureConfig().repeats) == (WARMUP, REPEATS) == (10, 50)
    params = inspect.signature(measure_latency).parameters
    assert (params["warmup"].default, params["repeats"].default) == (WARMUP, REPEATS)
    seen = {}

    def fake(model, shape, **kw):
        seen.update(kw)
        return LatencyResult("onnxruntime", "cpu", 1, 1, REPEATS, 0.5, 0.0, 0.5, 0.5)

    monkeypatch.setattr("archkd.measure.budget_kinds.measure_latency", fake)
    assert Budget(max_latency_ms=1.0).measure(_Net(), (3, 16, 16))["latency_ms"] == 0.5
    assert "warmup" not in seen and "repeats" not in seen


def test_search_on_predicted_latency_remeasures_its_pareto_set(tmp_path, teacher_ckpt, capsys):
    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "budget.max_latency_ms": 50.0,
                                    "budget.latency_source": "predicted", "budget.latency_predictor_samples": 8,
                                    "cache_dir": str(tmp_path / "cache")})
    r = api.search(cfg, log=print)
    out = capsys.readouterr().out
    assert "fitting a latency predictor" in out and "re-measuring the" in out
    measured = r["pareto"]["measured_ms"]
    assert measured and set(measured) == set(r["pareto"]["trials"])
    for t in r["trials"]:
        if t["number"] in measured:
            assert t["latency_measured_ms"] == measured[t["number"]] > 0 and t["latency_ms"] > 0
    files = list((tmp_path / "cache" / "latency").rglob("stages-onnxruntime-t1-b1-1x8x8.json"))
    assert len(files) == 1
    cfg.name = "again"
    api.search(cfg, log=print)
    assert "fitting a latency predictor" not in capsys.readouterr().out  # the machine's predictor is reused


def test_predictor_cli_fits_and_reports(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert run(["predictor", "--space", "stages", "--samples", "10", "--out", str(out),
                f"cache_dir={tmp_path / 'cache'}"]) == 0
    assert "Kendall" in capsys.readouterr().out
    pred = LatencyPredictor.load(out)
    assert pred.space == "stages" and pred.input_shape == [1, 8, 8] and pred.validation.n == 2
