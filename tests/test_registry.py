"""The one Registry: registration, clash refusal, did-you-mean alike in every table, and budget kinds a plugin adds
without editing archkd."""
from __future__ import annotations

import types

import pytest
import torch.nn as nn

from archkd.config import load_config, method_presets
from archkd.distill import LOSSES, create_loss, register_loss
from archkd.distill.losses import LogitLoss
from archkd.errors import ArchkdError
from archkd.measure import RUNTIMES, measure_latency
from archkd.models import create_model, register_model
from archkd.process import create_transform
from archkd.proxies import ProxyScorer
from archkd.registry import Registry, suggest
from archkd.search import create_sampler, register_sampler
from archkd.search.budget import BUDGET_KINDS, Budget, register_budget_kind
from archkd.search.samplers import SAMPLERS
from archkd.spaces import create_space
from archkd.teacher import LOADERS, load_teacher, register_teacher_loader


def _double(x: int) -> int:
    return 2 * x


def test_register_as_decorator_and_call_lookup_and_mapping():
    r: Registry[type] = Registry("widget", options_key="widget.kwargs")
    r.register("b", int)

    @r.register("a")
    class A:
        def __init__(self, size: int = 1) -> None:
            self.size = size

    assert list(r) == ["b", "a"] and r.names() == ["a", "b"] and len(r) == 2  # registration order; names sorted
    assert "a" in r and "c" not in r and [] not in r and r["a"] is A and r.get("c") is None
    assert r.build("a", size=3).size == 3
    with pytest.raises(ArchkdError, match="bad options for widget 'a'.*check widget.kwargs"):
        r.build("a", colour="red")
    with pytest.raises(ArchkdError) as e:
        r.lookup("aa")
    assert (e.value.problem, e.value.fix) == ("unknown widget 'aa'", "did you mean 'a'?")
    with pytest.raises(ArchkdError, match="choose one of a, b"):
        r.lookup("zzzzzz")
    r.register("first", float, before="b")
    assert list(r) == ["first", "b", "a"]
    assert r.unregister("first") is float and r.unregister("first") is None


def test_a_name_clash_is_refused_unless_replace_or_the_same_thing():
    r: Registry = Registry("widget")
    r.register("double", _double)
    r.register("double", _double)  # the same object again: harmless
    twin = types.FunctionType(_double.__code__, globals())  # a new function object, as after a module re-import
    assert r.register("double", twin) is twin and r["double"] is twin
    with pytest.raises(ArchkdError, match="already registered"):  # two lambdas of one function are not the same
        r.register("lambda", lambda x: x)
        r.register("lambda", lambda x: -x)
    with pytest.raises(ArchkdError, match="a widget named 'double' is already registered"):
        r.register("double", abs)
    r.register("double", abs, replace=True)
    assert r["double"] is abs


def test_built_in_registries_refuse_a_clash():
    with pytest.raises(ArchkdError, match="already registered"):
        register_model("resnet20")(lambda num_classes=10, in_channels=3: nn.Identity())
    with pytest.raises(ArchkdError, match="already registered"):
        @register_loss("kd")
        class Other(LogitLoss):
            pass
    with pytest.raises(ArchkdError, match="already registered"):
        register_sampler("random")(lambda **kw: None)
    assert LOSSES["kd"].__name__ == "HintonKD"


@pytest.mark.parametrize("make, typo, kind, close", [
    (lambda n: create_model(n), "resnet21", "model", "resnet20"),
    (lambda n: create_loss(n), "fitnett", "distillation loss", "fitnet"),
    (lambda n: create_sampler(n), "tpee", "search method", "tpe"),
    (lambda n: create_space(n), "stagez", "search space", "stages"),
    (lambda n: create_transform(n, 4, 4, (2, 2)), "atention", "pathway transform", "attention"),
    (lambda n: ProxyScorer([n], None, None), "diswat", "proxy", "diswot"),  # type: ignore[arg-type]
    (lambda n: measure_latency(nn.Identity(), (1, 2, 2), runtime=n), "onnxruntim", "runtime", "onnxruntime"),
    (lambda n: Budget(limits={n: 1}), "param", "budget kind", "params"),
])
def test_did_you_mean_is_the_same_everywhere(make, typo, kind, close):
    with pytest.raises(ArchkdError) as e:
        make(typo)
    assert (e.value.problem, e.value.fix) == (f"unknown {kind} '{typo}'", f"did you mean '{close}'?")


def test_suggest_prefers_the_longer_shared_prefix():
    assert suggest("resnet21", ["resnet32", "resnet20", "resnet44"]) == "resnet20"
    assert suggest("xyz", ["resnet20"]) is None


def test_a_method_preset_lives_in_its_sampler_entry():
    assert SAMPLERS["akd"].preset["search.space"] == "mnas" and not SAMPLERS["random"].preset
    assert method_presets()["autokd"] == dict(SAMPLERS["autokd"].preset)
    assert load_config(overrides=["search.method=akd"]).search.space == "mnas"


def test_a_plugin_teacher_loader_is_tried_before_the_generic_loaders():
    seen = []

    @register_teacher_loader("_toy", lambda ref: ref.startswith("toy:"))
    def _toy(ref, weights, kwargs):
        seen.append(ref)
        return "teacher"

    try:
        assert list(LOADERS) == ["timm", "hf", "_toy", "factory", "file"]
        assert load_teacher("toy:x") == "teacher" and seen == ["toy:x"]
    finally:
        LOADERS.unregister("_toy")


# A budget kind registered from here, without touching archkd: the number of convolutions.
@pytest.fixture
def convs():
    @register_budget_kind("convs", label="conv layers", cheap=True)
    def count_convs(model: nn.Module, input_shape: tuple[int, ...], settings: object) -> float:
        return sum(isinstance(m, nn.Conv2d) for m in model.modules())

    yield count_convs
    BUDGET_KINDS.unregister("convs")


def test_a_budget_kind_registered_outside_archkd_is_measured_and_enforced(convs):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 1))
    budget = Budget.from_config(load_config(overrides=["budget.limits={convs: 2}"]).budget)
    m = budget.measure(model, (1, 8, 8))
    assert m["convs"] == 3
    assert budget.violations(m) == ["conv layers 3 > 2"]
    assert budget.constraints(m) == {"convs": pytest.approx(0.5)}
    assert budget.describe() == "conv layers ≤ 2" and not budget.is_empty
    assert Budget(limits={"convs": 3}).violations(m) == []
    soft = Budget(limits={"convs": 2}, mode="penalty", penalty=0.1)
    assert soft.penalised(1.0, m) == pytest.approx(0.95)
    with pytest.raises(ArchkdError, match="budget.limits.convs is 0"):
        Budget(limits={"convs": 0})
    with pytest.raises(ArchkdError, match="config key 'budget.limits'.*did you mean 'convs'"):
        load_config(overrides=["budget.limits={convz: 2}"])


def test_samplers_draw_within_a_plugin_budget_kind(convs):
    space = create_space("stages", widths=(8,), depths=(1, 2))  # 9 convolutions at depth 1, 15 at depth 2
    budget = Budget(limits={"convs": 12})
    feasible = budget.feasibility(space, (1, 8, 8), 10)
    assert feasible is not None
    shallow, deep = (space.sample(lambda name, u=u: u) for u in (0.1, 0.9))
    assert feasible(shallow) and not feasible(deep)
    assert budget.violations(budget.measure(space.build(deep, (1, 8, 8), 10), (1, 8, 8))) == ["conv layers 15 > 12"]
    assert Budget(limits={"convs": 12}, mode="penalty").feasibility(space, (1, 8, 8), 10) is None
    assert list(RUNTIMES) == ["torch", "onnxruntime"]
