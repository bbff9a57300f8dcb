"""Mixup / CutMix and the model EMA (issue #30): deterministic, resumable, the teacher run on mixed images (never a
cached view), the average validated and checkpointed while training continues on the raw weights."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from archkd.config import TrainConfig
from archkd.distill import DistillObjective, TeacherCache, fit, load_checkpoint, model_from_checkpoint
from archkd.distill.evaluation import evaluate
from archkd.distill.recipe import apply_mix, draw_mix
from archkd.errors import ArchkdError
from archkd.models import create_model, model_spec
from archkd.teacher import load_teacher


def _student(seed=0):
    torch.manual_seed(seed)
    return create_model("stagenet", num_classes=10, in_channels=1,
                        stages=[{"depth": 1, "width": 8, "kernel": 3}, {"depth": 1, "width": 16, "kernel": 3}])


class Stop(Exception):
    pass


def _stop_after_first(epoch, row):
    if epoch == 1:
        raise Stop


def test_a_mix_depends_on_seed_and_step_only_and_cutmix_keeps_its_area():
    a = draw_mix(0.2, 1.0, seed=3, step=7, n=16, h=8, w=8, device=torch.device("cpu"))
    b = draw_mix(0.2, 1.0, seed=3, step=7, n=16, h=8, w=8, device=torch.device("cpu"))
    assert a.lam == b.lam and torch.equal(a.perm, b.perm) and a.box == b.box
    assert draw_mix(0.0, 0.0, 3, 7, 16, 8, 8, torch.device("cpu")) is None
    cut = next(m for s in range(50) if (m := draw_mix(0.0, 1.0, 0, s, 4, 8, 8, torch.device("cpu"))).box
               and not torch.equal(m.perm, torch.arange(4)))
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 8, 8).contiguous()
    out = apply_mix(x, cut)
    moved = cut.perm != torch.arange(4)  # images whose partner is another image
    assert (out[moved] == x[moved]).float().mean().item() == pytest.approx(cut.lam)  # λ: the share each keeps
    mixed = apply_mix(x, draw_mix(0.2, 0.0, 0, 1, 4, 8, 8, torch.device("cpu")))
    assert mixed.shape == x.shape


def test_mixing_runs_the_teacher_on_mixed_images_and_resumes_exactly(digits, teacher_ckpt, tmp_path):
    teacher = load_teacher(teacher_ckpt)
    cache = TeacherCache(tmp_path / "c", teacher_hash=teacher.fingerprint, data_fingerprint=digits.fingerprint,
                         augment_key=digits.augment.key(), normalize_key="n", seed=0, n_train=len(digits.train),
                         n_val=len(digits.val), num_classes=10)
    cfg = TrainConfig(epochs=3, mixup=0.2, cutmix=1.0, batch_size=64)
    kd = DistillObjective(ce_weight=0.5, kd_weight=0.5)

    def run(out, **kw):
        m = _student()
        return fit(m, digits, cfg, objective=kd, teacher=teacher.module, cache=cache, seed=0, device="cpu",
                   out_dir=out, spec=model_spec(m), log=None, **kw)

    full = run(tmp_path / "full")
    # every step mixed, so the cache was never asked (a run without mixing looks every view up: misses > 0)
    assert full.cache is not None and full.cache["hits"] == 0 and full.cache["misses"] == 0
    with pytest.raises(Stop):
        run(tmp_path / "part", on_epoch=_stop_after_first)
    resumed = run(tmp_path / "part", resume=True)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in full.history],
                                                                        rel=1e-5)
    plain = fit(_student(), digits, TrainConfig(epochs=3, batch_size=64), objective=kd, teacher=teacher.module,
                seed=0, device="cpu", log=None)
    assert plain.history[-1]["train_loss"] != pytest.approx(full.history[-1]["train_loss"])  # mixing changed it


def test_mixing_is_refused_where_labels_cannot_mix(digits):
    class Counting(DistillObjective):
        mixable = False

    with pytest.raises(ArchkdError, match="train.mixup / train.cutmix"):
        fit(_student(), digits, TrainConfig(epochs=1, mixup=0.2), objective=Counting(), device="cpu", log=None)


def test_the_ema_is_what_is_validated_and_saved_and_it_resumes(digits, tmp_path):
    cfg = TrainConfig(epochs=3, ema=0.9, batch_size=64, lr=0.1)

    def run(out, **kw):
        m = _student()
        return m, fit(m, digits, cfg, seed=0, device="cpu", out_dir=out, spec=model_spec(m), log=None, **kw)

    raw, full = run(tmp_path / "full")
    best, _ = model_from_checkpoint(full.best_path)
    assert evaluate(best, digits.val, digits.normalize, "cpu") == pytest.approx(full.best_val_acc)  # what was validated
    last = load_checkpoint(tmp_path / "full" / "last.pt")
    shadow = last["hooks"][-1]["shadow"]  # the average travels in last.pt
    assert all(torch.equal(p.detach(), last["state_dict"][k]) for k, p in raw.state_dict().items())  # raw trains on
    assert any(not torch.equal(shadow[k], last["state_dict"][k]) for k in shadow if shadow[k].is_floating_point())
    one_epoch = fit(_student(), digits, replace(cfg, epochs=1), seed=0, device="cpu", out_dir=tmp_path / "one",
                    spec=model_spec(_student()), log=None)
    assert one_epoch.best_epoch == 1  # so its best checkpoint is the average of its last (only) epoch, not raw weights
    one_best, _ = model_from_checkpoint(one_epoch.best_path)
    one_shadow = load_checkpoint(tmp_path / "one" / "last.pt")["hooks"][-1]["shadow"]
    assert all(torch.equal(p, one_shadow[k]) for k, p in one_best.state_dict().items())
    with pytest.raises(Stop):
        run(tmp_path / "part", on_epoch=_stop_after_first)
    _, resumed = run(tmp_path / "part", resume=True)
    assert [r["val_acc"] for r in resumed.history] == pytest.approx([r["val_acc"] for r in full.history])


def test_the_policy_is_a_function_of_seed_epoch_and_index_and_keys_the_cache(digits):
    from archkd.data.augment import OPS, Augment, _op

    aug = Augment(crop_padding=1, randaug_ops=2, randaug_magnitude=15)
    x8, _, idx = next(digits.train.batches(16, device=torch.device("cpu")))
    full = aug(x8, idx, epoch=3, seed=5)
    part = aug(x8[4:9], idx[4:9], epoch=3, seed=5)  # another batch composition: the same views
    assert torch.equal(full[4:9], part) and full.dtype == x8.dtype and full.shape == x8.shape
    assert not torch.equal(aug(x8, idx, epoch=4, seed=5), full)  # another epoch: other draws
    assert aug.key() == "pad1-flip0-cut0-ra2m15" and Augment(crop_padding=1).key() == "pad1-flip0-cut0"
    sign = torch.ones(len(x8))
    for name in OPS[1:]:  # every op changes some image and stays within 0..255
        y = _op(name, x8, sign, 0.5)
        assert y.dtype == x8.dtype and int(y.min()) >= 0 and int(y.max()) <= 255
        assert not torch.equal(y, x8), name


def test_a_distillation_with_the_policy_runs_end_to_end(tmp_path, teacher_ckpt):
    from conftest import small_config

    from archkd import api

    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "student.arch": "resnet8", "train.epochs": 1,
                                    "data.augment.randaug_ops": 2, "train.ema": 0.99, "train.mixup": 0.2})
    teacher, data = api.prepare(cfg, log=None)
    assert data.augment.key().endswith("-ra2m9")
    r = api.distill(cfg, log=None, teacher=teacher, data=data)
    assert 0.0 <= r["test_acc"] <= 1.0
