"""The ``multifamily`` space (TRADE's students): every family builds, trains, distils and exports at 8, 32 and 224 px;
ViT and Mixer students take feature losses and a DistPro process search; specs rebuild exactly; ``smallest``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archkd.config import ProcessConfig, TrainConfig
from archkd.distill import DistillObjective, fit
from archkd.distill.objective import Taps
from archkd.errors import ArchkdError
from archkd.export import export_model
from archkd.measure import count_params
from archkd.models import build_from_spec, create_model, model_spec
from archkd.process import search_with_config
from archkd.spaces import create_space
from archkd.spaces.multifamily import FAMILIES, Geometry

SHAPES = [(1, 8, 8), (3, 32, 32), (3, 224, 224)]
TOKEN_FAMILIES = ["vit", "mixer"]


def family_space(family: str):
    return create_space("multifamily", families=[family])


def random_configs(family: str, n: int, seed: int) -> list[dict]:
    space = family_space(family)
    rng = np.random.default_rng([seed, len(family)])
    return [space.sample_rng(rng) for _ in range(n)]


def changed(before: list[torch.Tensor], model: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_builds_trains_and_distils_at_every_input_size(family: str) -> None:
    space = family_space(family)
    kd = DistillObjective(ce_weight=0.5, kd_weight=0.5)
    for shape_i, shape in enumerate(SHAPES):
        torch.manual_seed(shape_i)
        teacher = create_model("resnet8", num_classes=10, in_channels=shape[0]).eval()
        for config in random_configs(family, 3, shape_i):
            assert config["family"] == family
            assert set(config) == {"family"} | {f"{family}_{d.name}" for d in FAMILIES[family].knobs}
            model = space.build(config, shape, 10).train()
            x, y = torch.randn(4, *shape), torch.randint(0, 10, (4,))
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            for step in ("ce", "kd"):
                before = [p.detach().clone() for p in model.parameters()]
                logits = model(x)
                assert logits.shape == (4, 10)
                if step == "ce":
                    loss = F.cross_entropy(logits, y)
                else:
                    with torch.no_grad():
                        t_logits = teacher(x)
                    loss, parts = kd(logits, y, t_logits)
                    assert parts["kd"] > 0
                assert torch.isfinite(loss)
                opt.zero_grad()
                loss.backward()
                opt.step()
                assert changed(before, model), (family, shape, step)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_distils_on_digits_with_fit(family: str, digits) -> None:
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=10, in_channels=1).eval()
    model = family_space(family).build(random_configs(family, 1, 7)[0], digits.input_shape, digits.num_classes)
    before = [p.detach().clone() for p in model.parameters()]
    res = fit(model, digits, TrainConfig(epochs=1, batch_size=32, data_fraction=0.1),
              objective=DistillObjective(ce_weight=0.5, kd_weight=0.5), teacher=teacher, log=None)
    row = res.history[-1]
    assert np.isfinite(row["loss_kd"]) and np.isfinite(row["loss_ce"]) and 0 <= row["val_acc"] <= 1
    assert changed(before, model)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy (dynamo=False) ONNX exporter
@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnx_export_matches_pytorch(family: str, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    space = family_space(family)
    cases = [(c, (3, 32, 32)) for c in random_configs(family, 2, 3)] + [(space.smallest(), (3, 224, 224))]
    for i, (config, shape) in enumerate(cases):
        torch.manual_seed(i)
        model = space.build(config, shape, 10)
        res = export_model(model, tmp_path / str(i), torch.randn(2, *shape), {}, formats=("onnx",), atol=1e-4)
        assert res.max_abs_diff["onnx"] <= 1e-4


@pytest.mark.parametrize("family", list(FAMILIES))
def test_spec_rebuilds_exactly(family: str) -> None:
    space = family_space(family)
    for shape in SHAPES:
        for config in random_configs(family, 2, 11):
            spec = space.spec(config, shape, 10)
            spec = json.loads(json.dumps(spec))  # JSON-serialisable, and what a checkpoint gives back
            torch.manual_seed(3)
            model = space.build(config, shape, 10).eval()
            assert model_spec(model) == spec
            torch.manual_seed(3)
            rebuilt = build_from_spec(spec).eval()
            a, b = model.state_dict(), rebuilt.state_dict()
            assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]
            assert all(torch.equal(a[k], b[k]) for k in a)
            x = torch.randn(2, *shape)
            with torch.no_grad():
                torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_stage_taps_are_maps_that_never_grow(family: str) -> None:
    """Every stage tap is an (N, C, H, W) map of the declared channels, deeper taps never larger; 8 px inputs are
    downsampled at most twice (to 2x2, never 1x1)."""
    space = family_space(family)
    for shape in SHAPES:
        model = space.build(random_configs(family, 1, 5)[0], shape, 10).eval()
        taps = Taps(model, model.stage_names)
        with torch.no_grad():
            model(torch.randn(2, *shape))
        maps = taps.pop()
        taps.remove()
        assert [m.dim() for m in maps] == [4] * len(maps)
        assert [m.shape[1] for m in maps] == model.feature_channels
        sides = [m.shape[-1] for m in maps]
        assert sides == sorted(sides, reverse=True)
        if shape[1] == 8:
            assert sides[-1] >= 2


def test_space_dims_are_conditional_on_the_family() -> None:
    space = create_space("multifamily")
    dims = {d.name: d for d in space.arch_dims()}
    assert dims["family"].choices == tuple(FAMILIES)
    for family, fam in FAMILIES.items():
        for knob in fam.knobs:
            assert dims[f"{family}_{knob.name}"].when == ("family", (family,))
    assert {"vit_heads", "vit_patch", "mixer_patch", "mobilenetv2_expansion", "vit_mlp_ratio"} <= set(dims)
    restricted = create_space("multifamily", families=["vit", "mixer"])
    assert restricted.arch_dims()[0].choices == ("vit", "mixer")
    assert not any(d.name.startswith("resnet") for d in restricted.arch_dims())
    with pytest.raises(ArchkdError, match="unknown family"):
        create_space("multifamily", families=["vits"])
    with pytest.raises(ArchkdError, match="lacks"):
        space.spec({"family": "vit", "vit_depth": 3}, (3, 32, 32), 10)


def test_smallest_has_fewest_params_and_ranges_fit_budgets() -> None:
    space = create_space("multifamily")
    rng_state = torch.get_rng_state()
    smallest = space.smallest()
    assert torch.equal(rng_state, torch.get_rng_state())  # counted on the meta device: seeded builds unaffected
    assert smallest == {"family": "resnet_basic", "resnet_basic_depth": 1, "resnet_basic_width": 4}
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        n_small = count_params(space.build(smallest, shape, 10))
        # every family's own minimum is no smaller, at every input size
        assert all(n_small <= count_params(family_space(f).build(family_space(f).smallest(), shape, 10))
                   for f in FAMILIES)
        if shape == (3, 32, 32):
            for _ in range(200):
                assert n_small <= count_params(space.build(space.sample_rng(rng), shape, 10))
    # budgets from 30k to 1M params have feasible choices in every family (digits and CIFAR)
    for family in FAMILIES:
        fs = family_space(family)
        high = {"family": family, **{f"{family}_{d.name}": d.high if hasattr(d, "high") else max(d.choices)
                                     for d in FAMILIES[family].knobs}}
        for shape in SHAPES[:2]:
            assert count_params(fs.build(fs.smallest(), shape, 10)) < 30_000
            assert 1_000_000 <= count_params(fs.build(high, shape, 10)) <= 3_000_000


def test_geometry_adapts_stems_strides_and_patches() -> None:
    small, cifar, large = (Geometry.of(s) for s in SHAPES)
    assert (small.stem_stride, cifar.stem_stride, large.stem_stride) == (1, 1, 4)
    assert small.strides((2, 2, 2)) == [1, 2, 2] and cifar.strides((2, 2, 2)) == [2, 2, 2]
    assert small.strides((1, 1, 2, 2, 1, 2, 1)) == [1, 1, 1, 2, 1, 2, 1]
    assert [cifar.patch(p) for p in (2, 4, 8)] == [2, 4, 8]
    assert [large.patch(p) for p in (2, 4, 8)] == [4, 7, 14]  # 14x14, 8x8, 4x4 tokens after the 56 px stem
    assert [small.patch(p) for p in (2, 4, 8)] == [1, 1, 2]


def test_vit_other_input_size_and_mixer_refuses_it() -> None:
    vit = create_model("vit", dim=32, depth=3, heads=2, img_size=32).eval()
    with torch.no_grad():
        assert vit(torch.randn(2, 3, 16, 16)).shape == (2, 10)  # position embedding resized
    mixer = create_model("mixer", dim=32, depth=3, img_size=32).eval()
    with pytest.raises(ArchkdError, match="built for 32x32"):
        mixer(torch.randn(2, 3, 16, 16))
    with pytest.raises(ArchkdError, match="divisible"):
        create_model("vit", dim=30, heads=4)


@pytest.mark.parametrize("family", TOKEN_FAMILIES)
def test_feature_losses_and_distpro_on_token_students(family: str, digits) -> None:
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=10, in_channels=1).eval()
    space = family_space(family)
    config = random_configs(family, 1, 2)[0]
    student = space.build(config, digits.input_shape, 10)
    features = [{"loss": "fitnet", "student": "stages.1", "teacher": "layer2"},
                {"loss": "at", "student": student.stage_names[-1], "teacher": "layer3"},
                {"loss": "hcl", "student": "stages.0", "teacher": "layer1"}]
    res = fit(student, digits, TrainConfig(epochs=1, batch_size=32, data_fraction=0.1),
              objective=DistillObjective(ce_weight=1.0, features=features), teacher=teacher, log=None)
    row = res.history[-1]
    for f in features:
        assert np.isfinite(row[f"loss_{f['loss']}:{f['student']}"]) and row[f"loss_{f['loss']}:{f['student']}"] > 0

    student = space.build(config, digits.input_shape, 10)
    result, objective = search_with_config(student, teacher, digits,
                                           TrainConfig(epochs=1, batch_size=32, data_fraction=0.15),
                                           ProcessConfig(transform="conv1x1"), seed=0, device=torch.device("cpu"))
    # the conv stem's pre-activation, then the stage maps themselves (no activation to look behind)
    assert objective.student_taps == ["input:embed.stem.2", *student.stage_names]
    assert result.trajectory.shape == (result.steps_per_epoch, len(objective.pathways))
    assert torch.isfinite(result.trajectory).all()
    assert not torch.equal(result.trajectory[0], result.trajectory[-1])
