import pytest
import torch

from archkd.config import TrainConfig
from archkd.distill import DistillObjective, TeacherCache, fit, load_checkpoint, model_from_checkpoint
from archkd.models import create_model, model_spec
from archkd.teacher import load_teacher
from archkd.errors import ArchkdWarning


def _student(seed=0):
    torch.manual_seed(seed)
    return create_model("stagenet", num_classes=10, in_channels=1,
                        stages=[{"depth": 1, "width": 8, "kernel": 3}, {"depth": 1, "width": 16, "kernel": 3}])


def test_ce_training_learns_digits_and_is_deterministic(digits, tmp_path):
    cfg = TrainConfig(epochs=4, lr=0.1, batch_size=32)
    a = fit(_student(), digits, cfg, seed=1, device="cpu", log=None)
    b = fit(_student(), digits, cfg, seed=1, device="cpu", log=None)
    assert a.best_val_acc > 0.6
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]


def test_checkpoints_resume_and_rebuild(digits, tmp_path):
    cfg = TrainConfig(epochs=3)
    m = _student()
    full = fit(m, digits, cfg, seed=0, device="cpu", out_dir=tmp_path / "full", spec=model_spec(m), log=None)
    part = _student()  # an interrupted run: stops (as on a crash) after its second epoch

    class Stop(Exception):
        pass

    def stop(epoch, row):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(part, digits, cfg, seed=0, device="cpu", out_dir=tmp_path / "part", spec=model_spec(part), log=None,
            on_epoch=stop)
    assert load_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 1
    resumed = fit(_student(), digits, cfg, seed=0, device="cpu", out_dir=tmp_path / "part", spec=model_spec(part),
                  log=None, resume=True)
    assert len(resumed.history) == 3
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], rel=1e-4)
    model, ck = model_from_checkpoint(full.best_path)
    assert ck["spec"]["name"] == "stagenet" and not model.training


def test_teacher_cache_is_exact_and_shared(digits, teacher_ckpt, tmp_path):
    teacher = load_teacher(teacher_ckpt)

    def cache():
        return TeacherCache(tmp_path / "c", teacher_hash=teacher.fingerprint, data_fingerprint=digits.fingerprint,
                            augment_key=digits.augment.key(), normalize_key="n", seed=0, n_train=len(digits.train),
                            n_val=len(digits.val), num_classes=10)

    cfg = TrainConfig(epochs=2)

    def run(c):
        obj = DistillObjective(ce_weight=0.1, kd_weight=0.9)
        return fit(_student(), digits, cfg, objective=obj, teacher=teacher.module, cache=c, seed=0, device="cpu",
                   log=None)

    naive = run(None)
    cold = run(cache())
    warm = run(cache())  # a new cache object: reads what the first wrote to disk
    assert cold.cache["misses"] > 0 and cold.cache["hits"] == 0
    assert warm.cache["misses"] == 0 and warm.cache["hit_rate"] == 1.0
    assert [r["train_loss"] for r in cold.history] == [r["train_loss"] for r in warm.history]
    # fp16 storage of logits: the same training up to rounding
    assert warm.history[-1]["train_loss"] == pytest.approx(naive.history[-1]["train_loss"], rel=2e-2)


def test_teacher_cache_survives_corruption(digits, tmp_path):
    c = TeacherCache(tmp_path, teacher_hash="t", data_fingerprint="d", augment_key="a", normalize_key="n", seed=0,
                     n_train=10, n_val=2, num_classes=3)
    idx = torch.arange(4)
    calls = []

    def compute(mask):
        calls.append(int(mask.sum()))
        return torch.ones(int(mask.sum()), 3)

    c.lookup("e0", idx, compute)
    c.flush()
    f = c.dir / "e0.pt"
    d = torch.load(f, weights_only=True)
    d["logits"][0, 0] = 7.0  # silent corruption: checksum no longer matches
    torch.save(d, f)
    c2 = TeacherCache(tmp_path, teacher_hash="t", data_fingerprint="d", augment_key="a", normalize_key="n", seed=0,
                      n_train=10, n_val=2, num_classes=3)
    with pytest.warns(ArchkdWarning, match="integrity"):
        out = c2.lookup("e0", idx, compute)
    assert calls == [4, 4] and torch.equal(out, torch.ones(4, 3))


def test_feature_losses_train_with_projectors(digits, teacher_ckpt):
    teacher = load_teacher(teacher_ckpt)
    obj = DistillObjective(ce_weight=0.1, kd_weight=0.9, features=[
        {"loss": "fitnet", "student": "stages.1", "teacher": "layer3"},
        {"loss": "at", "student": "stages.0", "teacher": "layer1"}])
    res = fit(_student(), digits, TrainConfig(epochs=1), objective=obj, teacher=teacher.module, seed=0,
              device="cpu", log=None)
    assert any(k.startswith("loss_fitnet") for k in res.history[0])
    assert sum(p.numel() for p in obj.parameters()) > 0  # the FitNet projector was created and trained


def test_validation_logits_are_cached(digits, teacher_ckpt, tmp_path):
    from archkd.distill import teacher_accuracy

    teacher = load_teacher(teacher_ckpt)

    def cache():
        return TeacherCache(tmp_path, teacher_hash=teacher.fingerprint, data_fingerprint=digits.fingerprint,
                            augment_key="none", normalize_key="n", seed=0, n_train=len(digits.train),
                            n_val=len(digits.val), num_classes=10)

    c1, c2 = cache(), cache()
    acc = teacher_accuracy(teacher.module, digits, c1)
    assert acc == teacher_accuracy(teacher.module, digits, c2) == teacher_accuracy(teacher.module, digits, None)
    assert c1.misses == len(digits.val) and c2.misses == 0 and c2.hits == len(digits.val)
    assert acc > 0.5


def test_cache_for_another_seed_is_refused(digits, teacher_ckpt, tmp_path):
    from archkd.errors import ArchkdError

    teacher = load_teacher(teacher_ckpt)
    c = TeacherCache(tmp_path, teacher_hash=teacher.fingerprint, data_fingerprint=digits.fingerprint,
                     augment_key=digits.augment.key(), normalize_key="n", seed=0, n_train=len(digits.train),
                     n_val=len(digits.val), num_classes=10)
    with pytest.raises(ArchkdError, match="built for seed 0"):
        fit(_student(), digits, TrainConfig(epochs=1), objective=DistillObjective(0.1, 0.9), teacher=teacher.module,
            cache=c, seed=1, device="cpu", log=None)


def test_cache_of_another_precision_is_refused(digits, teacher_ckpt, tmp_path):
    """bf16-autocast logits are never served to an fp32 run (or the reverse): precision is in the key and checked."""
    from archkd.distill import cache_precision
    from archkd.errors import ArchkdError

    teacher = load_teacher(teacher_ckpt)

    def cache(precision):
        return TeacherCache(tmp_path, teacher_hash=teacher.fingerprint, data_fingerprint=digits.fingerprint,
                            augment_key=digits.augment.key(), normalize_key="n", seed=0, n_train=len(digits.train),
                            n_val=len(digits.val), num_classes=10, precision=precision)

    assert cache("bf16").dir != cache("fp32").dir
    assert cache_precision(False) == "fp32" and cache_precision(True) == "bf16"
    with pytest.raises(ArchkdError, match="bf16 logits but training uses .* fp32"):
        fit(_student(), digits, TrainConfig(epochs=1, amp=False), objective=DistillObjective(0.1, 0.9),
            teacher=teacher.module, cache=cache("bf16"), seed=0, device="cpu", log=None)
    with pytest.raises(ValueError, match="precision"):
        cache("fp16")


def test_identity_augmentation_shares_one_logit_table(digits, teacher_ckpt, tmp_path):
    """Without augmentation every epoch sees the same views: a cold run asks the teacher once per sample."""
    from dataclasses import replace

    from archkd.data import Augment

    plain = replace(digits, augment=Augment())
    assert plain.augment.is_identity
    teacher = load_teacher(teacher_ckpt)
    c = TeacherCache(tmp_path, teacher_hash=teacher.fingerprint, data_fingerprint=plain.fingerprint,
                     augment_key=plain.augment.key(), normalize_key="n", seed=0, n_train=len(plain.train),
                     n_val=len(plain.val), num_classes=10)
    cfg = TrainConfig(epochs=3, batch_size=64)
    res = fit(_student(), plain, cfg, objective=DistillObjective(0.1, 0.9), teacher=teacher.module, cache=c, seed=0,
              device="cpu", log=None)
    seen_per_epoch = (len(plain.train) // 64) * 64
    assert res.cache["hits"] + res.cache["misses"] == 3 * seen_per_epoch
    assert res.cache["misses"] <= len(plain.train)  # per-epoch tables would miss on all 3 * seen_per_epoch
    assert sorted(p.name for p in c.dir.glob("*.pt")) == ["train.pt"]


def test_bn_recalibration_gives_exact_statistics_of_the_current_weights(digits):
    """Running stats become the exact average over the chosen images; momentum and train/eval mode are restored."""
    import numpy as np

    from archkd.distill import recalibrate_bn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 64, 10)).eval()
    idx = np.arange(0, 192, 2)  # 96 images: three full batches of 32
    n = recalibrate_bn(model, digits.train, digits.normalize, "cpu", indices=idx, n=1000, batch_size=32)
    assert n == 96 and not model.training and model[1].momentum == 0.1
    x8, _, _ = next(digits.train.batches(96, device=torch.device("cpu"), indices=idx))
    with torch.no_grad():
        h = model[0](digits.normalize(x8))
    assert torch.allclose(model[1].running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert model[1].num_batches_tracked.item() == 3
    # a sample smaller than the subset is spread over it, not its head (image folders are sorted by class)
    used = []

    class Spy:  # records which images recalibrate_bn asks the split for
        def batches(self, *a, **kw):
            used.append(kw["indices"])
            return digits.train.batches(*a, **kw)

    recalibrate_bn(model, Spy(), digits.normalize, "cpu", indices=idx, n=32, batch_size=32)
    (batch,) = used
    assert len(batch) == 32 and int(batch.max()) > int(idx[40])


def test_a_short_training_without_bn_recalibration_is_warned(digits):
    """Under SHORT_RUN_STEPS steps a BatchNorm model is warned (its eval mode can collapse to one class); the warning
    names the fix, and goes away with the fix, with a longer run, or for a model without BatchNorm."""
    from archkd.distill import SHORT_RUN_STEPS, epoch_steps

    def warnings_of(model, **train):
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(model, digits, TrainConfig(**{"epochs": 1, "batch_size": 64, **train}), seed=0, device="cpu", log=None)
        return [str(w.message) for w in caught if issubclass(w.category, ArchkdWarning)
                and "BatchNorm's running averages" in str(w.message)]

    _, steps = epoch_steps(len(digits.train), 64)
    assert steps < SHORT_RUN_STEPS
    (line,) = warnings_of(_student())
    assert f"({steps} steps)" in line and "train.bn_recalibration=2048" in line
    assert warnings_of(_student(), bn_recalibration=256) == []
    assert warnings_of(_student(), epochs=-(-SHORT_RUN_STEPS // steps), data_fraction=1.0) == []
    no_bn = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    assert warnings_of(no_bn) == []


def test_search_trials_recalibrate_bn_and_final_training_does_not(tmp_path):
    """Search fidelity carries search.bn_recalibration; the final recipe keeps train.bn_recalibration (off)."""
    from conftest import small_config

    from archkd.api import _fidelity

    cfg = small_config(tmp_path)
    assert cfg.train.bn_recalibration == 0 and _fidelity(cfg).bn_recalibration == cfg.search.bn_recalibration > 0
    cfg.search.bn_recalibration = 0
    assert _fidelity(cfg).bn_recalibration == 0


def test_fit_reports_accuracy_after_recalibration(digits):
    """With train.bn_recalibration the reported val acc is that of the recalibrated model, which best.pt holds."""
    from archkd.distill import evaluate, recalibrate_bn

    cfg = TrainConfig(epochs=1, batch_size=64, bn_recalibration=512)
    model = _student()
    res = fit(model, digits, cfg, seed=0, device="cpu", log=None)
    assert res.history[-1]["val_acc"] == evaluate(model, digits.val, digits.normalize)
    idx = digits.train.subset(1.0, 0)
    recalibrate_bn(model, digits.train, digits.normalize, "cpu", indices=idx, n=512, batch_size=64)
    assert res.history[-1]["val_acc"] == evaluate(model, digits.val, digits.normalize)  # idempotent


def test_fixed_amp_default_is_cuda_only_an_explicit_flag_wins_and_negative_recalibration_is_refused(digits):
    from archkd.device import use_amp
    from archkd.errors import ArchkdError

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not use_amp(cpu, None) and use_amp(cpu, True)  # an explicit train.amp=true runs bf16 on CPU too
    assert use_amp(cuda, None) and use_amp(cuda, True) and not use_amp(cuda, False)
    with pytest.raises(ArchkdError, match="bn_recalibration=-1"):
        fit(_student(), digits, TrainConfig(epochs=1, bn_recalibration=-1), seed=0, device="cpu", log=None)


def test_trainable_teacher_learns_beside_the_student(digits):
    """GTN's need: the teacher trains in the same loop (its own optimiser), gradients of the KD term and of a hook's
    extra loss term reach it; the teacher-output cache is refused, since its logits would go stale."""
    import torch.nn.functional as F

    from archkd.distill import TrainHook, objective_from_config
    from archkd.config import DistillConfig
    from archkd.errors import ArchkdError

    class TeacherCE(TrainHook):
        def loss_terms(self, ctx, batch, s_logits):
            return {"teacher_ce": F.cross_entropy(batch.t_logits, batch.y)}

    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=10, in_channels=1)
    before = [p.detach().clone() for p in teacher.parameters()]
    res = fit(_student(), digits, TrainConfig(epochs=2), objective=objective_from_config(DistillConfig()),
              teacher=teacher, teacher_train=TrainConfig(epochs=2, lr=0.1), hooks=[TeacherCE()], seed=0,
              device="cpu", log=None)
    assert any(not torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert res.history[-1]["loss_teacher_ce"] < res.history[0]["loss_teacher_ce"]  # the teacher learns
    cache = object()
    with pytest.raises(ArchkdError, match="no teacher-output cache"):
        fit(_student(), digits, TrainConfig(epochs=1), teacher=teacher, teacher_train=TrainConfig(), cache=cache,
            seed=0, device="cpu", log=None)
