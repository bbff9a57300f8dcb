"""Tests for archkd.measure: hand-computed counts, latency protocol, no mutation of the caller's model."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.measure import (
    count_flops,
    count_params,
    format_budget,
    measure_latency,
    measure_model,
    peak_activation_memory,
    to_onnx,
)


def single_conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def test_count_params_hand_computed() -> None:
    model = tiny_net()
    # conv 8*3*9 = 216, BN weight+bias 16 (running stats are buffers), linear 8*4+4 = 36
    assert count_params(model) == 216 + 16 + 36
    model[0].weight.requires_grad_(False)  # frozen parameters still ship
    assert count_params(model) == 268


def test_count_flops_single_conv() -> None:
    res = count_flops(single_conv(), (3, 8, 8))
    assert res.macs == 8 * 3 * 9 * 64 == 13824
    assert res.flops == 2 * res.macs
    assert count_flops(single_conv(), (3, 8, 8), batch_size=4).macs == 4 * 13824


def test_count_flops_tiny_net_counts_conv_and_linear() -> None:
    assert count_flops(tiny_net(), (3, 8, 8)).macs == 13824 + 8 * 4


def test_peak_activation_memory_cpu_estimate() -> None:
    # conv: in 3*64*4 + out 8*64*4 = 2816 B; relu (not in-place): 2048 + 2048 = 4096 B
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    assert peak_activation_memory(model, (3, 8, 8)) == 4096
    # in-place ReLU returns its input storage: counted once
    inplace = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True))
    assert peak_activation_memory(inplace, (3, 8, 8)) == 2816
    assert peak_activation_memory(model, (3, 8, 8), batch_size=2) == 8192


def test_latency_both_runtimes() -> None:
    model = tiny_net()
    for runtime in ("torch", "onnxruntime"):
        res = measure_latency(model, (3, 8, 8), runtime=runtime, warmup=1, repeats=5, threads=1)
        assert res.runtime == runtime and res.device == "cpu" and res.repeats == 5
        assert res.median_ms > 0 and res.iqr_ms >= 0 and res.p90_ms >= res.min_ms > 0
        d = res.to_dict()
        json.dumps(d)
        assert d["median_ms"] == res.median_ms and "load_warning" in d


def test_latency_restores_thread_count() -> None:
    before = torch.get_num_threads()
    measure_latency(tiny_net(), (3, 8, 8), threads=2 if before == 1 else 1, warmup=0, repeats=1)
    assert torch.get_num_threads() == before


def test_latency_load_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.getloadavg", lambda: (1e6, 0.0, 0.0))
    res = measure_latency(tiny_net(), (3, 8, 8), warmup=0, repeats=1)
    assert res.load_warning and "unreliable" in res.load_warning


@pytest.mark.parametrize(
    "kwargs",
    [
        {"runtime": "tensorrt"},
        {"device": "tpu"},
        {"repeats": 0},
        {"threads": 0},
        {"batch_size": 0},
    ],
)
def test_latency_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ArchkdError):
        measure_latency(tiny_net(), (3, 8, 8), warmup=0, repeats=kwargs.pop("repeats", 1), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error path")
def test_latency_cuda_unavailable_is_user_error() -> None:
    with pytest.raises(ArchkdError):
        measure_latency(tiny_net(), (3, 8, 8), device="cuda", warmup=0, repeats=1)


def test_measurement_does_not_mutate_model(tmp_path) -> None:
    model = tiny_net().to(memory_format=torch.channels_last).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    measure_model(model, (3, 8, 8), warmup=0, repeats=1)
    peak_activation_memory(model, (3, 8, 8))
    to_onnx(model, torch.randn(2, 3, 8, 8), tmp_path / "m.onnx")
    assert model.training and all(m.training for m in model.modules())
    assert model[0].weight.device.type == "cpu" and model[0].weight.dtype == torch.float32
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    for k, v in model.state_dict().items():  # BN running stats untouched (no train-mode forward)
        assert torch.equal(v, state[k]), k


def test_measure_model_json_and_format() -> None:
    d = measure_model(tiny_net(), (3, 8, 8), warmup=0, repeats=2)
    json.dumps(d)
    assert d["params"] == 268 and d["macs"] == 13856 and d["flops"] == 2 * 13856
    assert d["peak_activation_bytes"] > 0 and set(d["latency"]) == {"torch", "onnxruntime"}
    line = format_budget(d)
    assert line.startswith("268 params · ") and "27.7K FLOPs" in line and "(onnxruntime, bs1, 1 thr)" in line
    no_lat = measure_model(tiny_net(), (3, 8, 8), latency=False)
    assert no_lat["latency"] == {} and format_budget(no_lat) == "268 params · 27.7K FLOPs"


def test_format_budget_example() -> None:
    d = {"params": 270_000, "flops": 41_200_000,
         "latency": {"torch": {"median_ms": 2.0, "batch_size": 1, "threads": 1, "device": "cpu"},
                     "onnxruntime": {"median_ms": 1.234, "batch_size": 1, "threads": 1, "device": "cpu"}}}
    assert format_budget(d) == "0.27M params · 41.2M FLOPs · 1.23 ms (onnxruntime, bs1, 1 thr)"


def test_to_onnx_parity_and_dynamic_batch(tmp_path) -> None:
    model = tiny_net().eval()
    path = to_onnx(model, torch.randn(1, 3, 8, 8), tmp_path / "sub" / "m.onnx")
    assert path.exists()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    x = torch.randn(5, 3, 8, 8)  # a different batch size than exported with
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.max(np.abs(got - ref)) <= 1e-4


def test_to_onnx_rejects_non_tensor_output(tmp_path) -> None:
    class TwoHeads(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(ArchkdError):
        to_onnx(TwoHeads(), torch.randn(1, 3), tmp_path / "m.onnx")
