"""GTN: the weight-sharing supernet, the path distribution, the pool, and generic-teacher training end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from archkd import api
from archkd.distill import evaluate, recalibrate_bn
from archkd.errors import ArchkdError
from archkd.models import build_from_spec
from archkd.models.supernet import create_supernet, slice_to
from archkd.spaces import create_space
from archkd.teacher import load_teacher
from archkd.teacher.generic import PathDistribution, extract_student, load_supernet, make_pool, standardized_kl
from conftest import small_config

SHAPE = (1, 8, 8)


def _space():
    return create_space("stages", widths=(8, 16, 24), depths=(1, 2, 3), kernels=(3, 5))


def _perturbed_supernet(space, seed: int = 0):
    """A supernet whose weights and BatchNorm affines are not at their initial values, as after training."""
    torch.manual_seed(seed)
    net = create_supernet(space.spec(space.largest(), SHAPE, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_slice_takes_leading_channels_and_the_kernel_centre():
    w = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    s = slice_to(w, (1, 2, 3, 3))
    assert torch.equal(s, w[:1, :2, 1:4, 1:4])
    assert torch.equal(slice_to(torch.arange(6.0), (4,)), torch.arange(4.0))
    with pytest.raises(ValueError):
        slice_to(w, (3, 3, 5, 5))


def test_extracted_student_computes_what_its_supernet_path_computes(digits):
    """Eval mode, BatchNorm recalibrated on the same training images: the same outputs, for random paths."""
    space = _space()
    net = _perturbed_supernet(space)
    rng = np.random.default_rng(0)
    x8, _, _ = next(digits.val.batches(64, device=torch.device("cpu")))
    x = digits.normalize(x8)
    indices = digits.train.subset(1.0, 0)
    for _ in range(6):
        spec = space.spec(space.sample_rng(rng), SHAPE, 10)
        net.set_path(spec)
        net.train()
        net(x)  # a training forward moves the shared running statistics away from this path's
        recalibrate_bn(net, digits.train, digits.normalize, indices=indices, n=512, batch_size=256)  # as extract_student
        path_out = net.eval()(x)
        student = extract_student(net, spec, digits, n=512)
        assert type(student).__name__ == "StageNet"
        assert sum(p.numel() for p in student.parameters()) == \
            sum(p.numel() for p in build_from_spec(spec).parameters())
        torch.testing.assert_close(student(x), path_out, rtol=1e-5, atol=1e-5)
    largest = space.spec(space.largest(), SHAPE, 10)
    assert sum(p.numel() for p in net.extract(largest).parameters()) == sum(p.numel() for p in net.net.parameters())


def test_a_path_outside_the_supernet_is_refused():
    space = _space()
    net = _perturbed_supernet(space)
    wide = create_space("stages", widths=(8, 16, 24, 32))
    with pytest.raises(ArchkdError, match="does not fit the supernet"):
        net.set_path(wide.spec(wide.largest(), SHAPE, 10))
    with pytest.raises(ArchkdError, match="num_classes"):
        net.set_path(space.spec(space.largest(), SHAPE, 7))
    with pytest.raises(ArchkdError, match="no weight-sharing supernet"):
        create_supernet({"name": "mnasnet", "num_classes": 10, "in_channels": 1, "kwargs": {}})
    with pytest.raises(ArchkdError, match="declares no largest network"):
        create_space("mnas").largest()


def test_the_path_distribution_moves_toward_paths_with_a_larger_gap():
    """Synthetic signal: the gap grows with the first factor's choice; the second factor does not matter."""
    dist = PathDistribution([4, 2], lr=0.05, entropy_weight=0.0)
    gen = torch.Generator().manual_seed(0)
    noise = np.random.default_rng(0)
    for _ in range(600):
        choice = dist.sample(gen)
        dist.update(choice, 1.0 + choice[0] + 0.3 * noise.random())
    first, second = dist.probs()
    assert int(first.argmax()) == 3 and float(first[3]) > 0.6
    assert (first[1:] > first[:-1]).all()  # ordered as the gaps are
    assert abs(float(second[0]) - 0.5) < 0.3
    # the entropy bonus alone keeps a flat distribution flat, and state round-trips
    flat = PathDistribution([3], lr=0.05, entropy_weight=1.0)
    for _ in range(50):
        flat.update(flat.sample(gen), 1.0)
    assert torch.allclose(flat.probs()[0], torch.full((3,), 1 / 3), atol=1e-3)
    copy = PathDistribution([4, 2])
    copy.load_full_state(dist.full_state())
    assert all(torch.equal(a, b) for a, b in zip(copy.probs(), dist.probs()))


def test_standardized_conditioning_ignores_the_teachers_logit_scale():
    torch.manual_seed(0)
    t, s = torch.randn(8, 10), torch.randn(8, 10)
    assert float(standardized_kl(t, s)) > 0 and float(standardized_kl(s, s)) < 1e-6
    assert torch.allclose(standardized_kl(3.0 * t + 1.0, s), standardized_kl(t, s), atol=1e-5)
    scale = torch.ones((), requires_grad=True)
    standardized_kl(scale * t, s).backward()
    assert abs(float(scale.grad)) < 1e-5  # no gradient toward a smaller (or larger) scale


def test_pool_sources(tmp_path):
    space = _space()
    pool = make_pool(space, ["random:5"], SHAPE, 10, seed=1, max_params=20_000)
    assert len(pool.configs) == 5 and len({json.dumps(c, sort_keys=True) for c in pool.configs}) == 5
    assert all(sum(p.numel() for p in space.build(c, SHAPE, 10).parameters()) <= 20_000 for c in pool.configs)
    assert make_pool(space, ["random:5"], SHAPE, 10, seed=1, max_params=20_000).configs == pool.configs
    good, bad = pool.configs[0], pool.configs[1]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"search": {"space": "stages"}, "trials": [
        {"state": "COMPLETE", "reward": 0.5, "config": {**bad, "distill.temperature": 4}},
        {"state": "COMPLETE", "reward": 0.9, "config": good},
        {"state": "INFEASIBLE", "reward": 0.0, "config": pool.configs[2]}]}))
    searched = make_pool(space, [f"{results}:1"], SHAPE, 10)
    assert searched.configs == [good]  # best first, recipe dimensions dropped, infeasible trials left out
    both = make_pool(space, [str(results), "random:2"], SHAPE, 10)
    assert both.configs[:2] == [good, bad] and len(both.configs) == 4
    listed = tmp_path / "pool.yaml"
    listed.write_text(json.dumps([good, good]))
    assert make_pool(space, [str(listed)], SHAPE, 10).configs == [good]
    whole = make_pool(space, ["space"], SHAPE, 10)
    assert whole.configs is None and whole.sizes() == [3, 3, 2] * 3
    assert whole.config([2, 2, 1] * 3) == space.largest()
    with pytest.raises(ArchkdError, match="cannot be combined"):
        make_pool(space, ["space", "random:2"], SHAPE, 10)
    with pytest.raises(ArchkdError, match="width_0"):
        listed.write_text(json.dumps([{**good, "width_0": 7}]))
        make_pool(space, [str(listed)], SHAPE, 10)
    with pytest.raises(ArchkdError, match="distinct pool students"):
        make_pool(space, ["random:5"], SHAPE, 10, max_params=100)


def test_generic_teacher_end_to_end_on_digits(tmp_path):
    """Train a generic teacher, load it as an ordinary teacher, distil a pool student from it (from scratch and from
    its supernet weights), and re-run the command: the finished run is resumed, not retrained."""
    cfg = small_config(tmp_path, name="gtn", **{"generic.pool": ["random:3"], "teacher.train.epochs": 2,
                                                "generic.space_kwargs": {"widths": [8, 16], "depths": [1, 2]},
                                                "generic.bn_recalibration": 256,
                                                "budget.max_params": 10**6})  # the whole small space
    out = api.generic_teacher(cfg, log=None)
    assert out["init"] == "scratch" and len(out["history"]) == 2 and out["val_acc"] > 0.3
    assert {"loss_ce", "loss_student", "loss_condition", "gap", "path_entropy"} <= set(out["history"][-1])
    assert len(out["pool"]) == 3 and abs(sum(m["probability"] for m in out["pool"]) - 1) < 1e-5
    teacher = load_teacher(out["checkpoint"])
    assert teacher.spec["name"] == "resnet8" and not any(p.requires_grad for p in teacher.module.parameters())
    results = json.loads((cfg.run_dir / "results.json").read_text())
    assert results["command"] == "archkd teacher generic" and len(results["teacher"]["pool"]) == 3
    assert "the student pool" in (cfg.run_dir / "report.html").read_text()

    member = out["pool"][1]
    supernet = load_supernet(out["supernet"])
    from archkd.data import load_data

    data = load_data("digits", seed=0)
    again = extract_student(supernet, member["spec"], data, n=256)
    assert evaluate(again, data.val, data.normalize) == pytest.approx(member["supernet_val_acc"])

    kd = small_config(tmp_path, name="kd", **{"teacher.path": out["checkpoint"],
                                              "student.checkpoint": member["checkpoint"], "train.epochs": 1})
    scratch = api.distill(kd, log=None)
    kd.name, kd.student.init = "kd_init", "checkpoint"
    warm = api.distill(kd, log=None)
    assert scratch["spec"] == member["spec"] and warm["spec"] == member["spec"]
    assert warm["history"][0]["val_acc"] > scratch["history"][0]["val_acc"]  # it starts from trained weights

    lines: list[str] = []
    rerun = api.generic_teacher(cfg, log=lines.append)
    assert any("already finished" in ln for ln in lines) and rerun["val_acc"] == out["val_acc"]


def test_fine_tuning_a_teacher_checkpoint(tmp_path, teacher_ckpt):
    cfg = small_config(tmp_path, name="ft", **{"teacher.path": teacher_ckpt, "generic.pool": ["random:2"],
                                               "teacher.train.epochs": 1, "teacher.train.lr": 0.01,
                                               "generic.space_kwargs": {"widths": [8], "depths": [1]},
                                               "generic.bn_recalibration": 128})
    before = load_teacher(teacher_ckpt).info["val_acc"]
    out = api.generic_teacher(cfg, log=None)
    assert out["init"] == "fine-tune" and out["val_acc"] > before - 0.2


def test_without_conditioning_the_generic_teacher_is_the_vanilla_teacher(tmp_path):
    """λ = 0: the stop-gradients leave the teacher exactly its CE training (the supernet learns beside it, unseen)."""
    over = {"generic.pool": ["random:2"], "teacher.train.epochs": 2, "generic.condition_weight": 0.0,
            "generic.space_kwargs": {"widths": [8], "depths": [1]}, "generic.bn_recalibration": 64}
    vanilla = api.train_teacher(small_config(tmp_path, name="vanilla", **over), log=None)
    generic = api.generic_teacher(small_config(tmp_path, name="generic", **over), log=None)
    a, b = (load_teacher(r["checkpoint"]).module.state_dict() for r in (vanilla, generic))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert generic["val_acc"] == vanilla["val_acc"]


def test_an_interrupted_generic_teacher_resumes_to_the_uninterrupted_result(tmp_path):
    """Stopped after its first epoch and run again, GTN training ends where an uninterrupted run ends: the same
    teacher, supernet and path distribution (their state, optimisers and sampler ride in ``last.pt``)."""
    from archkd.config import Config, set_key
    from archkd.data import load_data
    from archkd.models import create_model, model_spec
    from archkd.teacher.generic import train_generic_teacher

    data = load_data("digits", seed=0)
    cfg = Config()
    for k, v in {"teacher.train.epochs": 3, "generic.space_kwargs": {"widths": [8, 16], "depths": [1, 2]},
                 "generic.bn_recalibration": 64, "generic.entropy_weight": 0.0}.items():
        set_key(cfg, k, v)
    pool = make_pool(create_space("stages", widths=(8, 16), depths=(1, 2)), ["random:3"], SHAPE, 10, seed=0)

    def run(out, stop_after: int | None = None):
        torch.manual_seed(0)
        teacher = create_model("resnet8", num_classes=10, in_channels=1)

        def on_epoch(epoch: int, _row: dict) -> None:
            if stop_after is not None and epoch + 1 == stop_after:
                raise KeyboardInterrupt

        return train_generic_teacher(teacher, data, pool, cfg.teacher.train, cfg.train, cfg.distill, cfg.generic,
                                     seed=0, out_dir=out, meta={"spec": model_spec(teacher)}, log=None,
                                     on_epoch=on_epoch)

    straight = run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "stopped", stop_after=1)
    resumed = run(tmp_path / "stopped")
    assert resumed.fit.resumed_at_epoch == 1
    assert [h["val_acc"] for h in resumed.fit.history] == [h["val_acc"] for h in straight.fit.history]
    assert [h["gap"] for h in resumed.fit.history] == pytest.approx([h["gap"] for h in straight.fit.history])
    assert [m.probability for m in resumed.members] == pytest.approx([m.probability for m in straight.members])
    a, b = (torch.load(r.fit.last_path, weights_only=True)["state_dict"] for r in (straight, resumed))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    sa, sb = (torch.load(r.supernet, weights_only=True)["state_dict"] for r in (straight, resumed))
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa)
