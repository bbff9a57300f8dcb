"""Tests for archkd.models: registry, uniform model contract, and the reference parameter counts."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models import build_from_spec, create_model, list_models, model_spec, register_model, wrn
from archkd.models import registry as _registry

ALL_MODELS = list_models()
# Small configs of the heavier families keep the contract tests fast on 2 CPU cores.
FAST_KWARGS: dict[str, dict] = {"mobilenetv2": {"width_mult": 0.5}, "shufflenetv2": {"net_size": 0.5}}
EXPECTED = [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "mobilenetv2", "shufflenetv2", "stagenet",
]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_expected_models_registered() -> None:
    assert set(EXPECTED) <= set(ALL_MODELS)
    assert ALL_MODELS == sorted(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_cifar_shape_and_stage_hooks(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3).eval()
    modules = dict(model.named_modules())
    assert model.stage_names and len(model.stage_names) == len(model.feature_channels)
    seen: dict[str, torch.Tensor] = {}
    handles = [
        modules[s].register_forward_hook(lambda _m, _i, out, s=s: seen.__setitem__(s, out)) for s in model.stage_names
    ]
    with torch.no_grad():
        y = model(torch.randn(2, 3, 32, 32))
    for h in handles:
        h.remove()
    assert y.shape == (2, 10)
    assert list(seen) == model.stage_names  # every hook fired, in shallow-to-deep order
    assert [seen[s].shape[1] for s in model.stage_names] == model.feature_channels
    sizes = [seen[s].shape[-1] for s in model.stage_names]
    assert sizes == sorted(sizes, reverse=True)  # deeper stages never grow spatially


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "mobilenetv2", "shufflenetv2", "stagenet"])
def test_grayscale_8x8(name: str) -> None:
    model = create_model(name, num_classes=10, in_channels=1, **FAST_KWARGS.get(name, {})).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("name", ["resnet20", "wrn_16_2", "mobilenetv2", "shufflenetv2", "stagenet"])
def test_spec_roundtrip_same_params_and_outputs(name: str) -> None:
    kwargs = FAST_KWARGS.get(name, {})
    torch.manual_seed(123)
    model = create_model(name, num_classes=7, in_channels=1, **kwargs).eval()
    spec = model_spec(model)
    assert spec == {"name": name, "num_classes": 7, "in_channels": 1, "kwargs": kwargs}
    spec = json.loads(json.dumps(spec))
    torch.manual_seed(123)
    rebuilt = build_from_spec(spec).eval()
    assert n_params(rebuilt) == n_params(model)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "name,expected",
    [("resnet20", 272_474), ("resnet8x4", 1_210_000), ("wrn_40_2", 2_243_000), ("resnet32x4", 7_410_000)],
)
def test_reference_param_counts(name: str, expected: int) -> None:
    assert abs(n_params(create_model(name, num_classes=10)) - expected) / expected < 0.05


def test_resnet20_exact_param_count() -> None:
    assert n_params(create_model("resnet20")) == 272_474


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(ArchkdError) as info:
        create_model("resnet21")
    assert "resnet20" in (info.value.fix or "")
    with pytest.raises(ArchkdError) as info:
        create_model("mobilenet_v2")
    assert "mobilenetv2" in (info.value.fix or "")


def test_bad_kwarg_is_user_error_with_suggestion() -> None:
    with pytest.raises(ArchkdError) as info:
        create_model("mobilenetv2", widht_mult=0.5)
    assert "width_mult" in (info.value.fix or "")
    with pytest.raises(ArchkdError):
        create_model("shufflenetv2", net_size=3)


def test_model_spec_requires_registry_model() -> None:
    with pytest.raises(ArchkdError):
        model_spec(nn.Linear(2, 2))
    with pytest.raises(ArchkdError):
        build_from_spec({"num_classes": 10})


def test_stagenet_custom_stages_and_width_growth() -> None:
    def stages(width: int) -> list[dict]:
        return [
            {"depth": 1, "width": width, "kernel": 3},
            {"depth": 2, "width": 2 * width, "kernel": 5},
            {"depth": 1, "width": 4 * width, "kernel": 7, "stride": 1},
        ]

    small = create_model("stagenet", stages=stages(8))
    big = create_model("stagenet", stages=stages(16), stem_width=8)
    assert n_params(big) > n_params(small)
    assert small.stage_names == ["stages.0", "stages.1", "stages.2"]
    assert small.feature_channels == [8, 16, 32]
    assert json.loads(json.dumps(model_spec(big)))["kwargs"]["stages"] == stages(16)
    with torch.no_grad():
        assert big.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    depth_one = create_model("stagenet", stages=[{"depth": 1, "width": 8, "kernel": 3}])
    assert depth_one.stage_names == ["stages.0"]


@pytest.mark.parametrize(
    "bad",
    [[], [{"depth": 0, "width": 8, "kernel": 3}], [{"depth": 1, "width": 8, "kernel": 4}], [{"depht": 1, "width": 8, "kernel": 3}]],
)
def test_stagenet_rejects_bad_stages(bad: list) -> None:
    with pytest.raises(ArchkdError):
        create_model("stagenet", stages=bad)


def test_wrn_helper_builds_generic_wrn_with_spec() -> None:
    model = wrn(22, 1)
    assert model_spec(model)["kwargs"] == {"depth": 22, "widen": 1}
    assert model.feature_channels == [16, 32, 64]
    assert n_params(build_from_spec(model_spec(model))) == n_params(model)


def test_deterministic_given_seed() -> None:
    torch.manual_seed(5)
    a = create_model("resnet8")
    torch.manual_seed(5)
    b = create_model("resnet8")
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # trace is deprecated upstream but still the contract
@pytest.mark.parametrize("name", ["resnet20", "stagenet", "shufflenetv2"])
def test_jit_trace(name: str) -> None:
    model = create_model(name, **FAST_KWARGS.get(name, {})).eval()
    x = torch.randn(1, 3, 16, 16)
    traced = torch.jit.trace(model, x)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
        # traced graphs must stay size-agnostic (global pooling, shape-derived reshapes)
        torch.testing.assert_close(traced(torch.randn(2, 3, 8, 8)).shape, torch.Size([2, 10]))


@pytest.mark.parametrize("name", ["resnet8", "mobilenetv2", "shufflenetv2"])
def test_channels_last(name: str) -> None:
    model = create_model(name, **FAST_KWARGS.get(name, {})).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # legacy (dynamo=False) exporter is the contract
@pytest.mark.parametrize("name", ["resnet8", "shufflenetv2"])
def test_onnx_export(name: str, tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    model = create_model(name, **FAST_KWARGS.get(name, {})).eval()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 16, 16),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
    )
    onnx.checker.check_model(onnx.load(str(path)))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 8, 8)
    (out,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-4, atol=1e-5)


def test_register_custom_model_infers_stages() -> None:
    name = "_test_tiny_cnn"

    @register_model(name)
    def tiny(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, num_classes),
        )

    try:
        assert name in list_models()
        model = create_model(name, num_classes=3)
        assert model.stage_names == ["1", "3"]  # last module at each resolution (32 px, then 16 px)
        assert model.feature_channels == [4, 6]
        with pytest.raises(ArchkdError):
            register_model(name)(lambda num_classes=10, in_channels=3: nn.Identity())
    finally:
        _registry._REGISTRY.pop(name, None)
