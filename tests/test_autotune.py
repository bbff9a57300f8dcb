"""The student's precision and memory format, chosen by measurement (archkd.distill.autotune, issue #26)."""
from __future__ import annotations

import json

import torch

from archkd.config import TrainConfig
from archkd.distill import fit
from archkd.distill.autotune import MIN_STEPS, Setting, candidates, choose
from archkd.models import create_model, model_spec


def _step(model_input):
    def step(m, s):
        x = model_input.contiguous(memory_format=torch.channels_last) if s.channels_last else model_input
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.amp):
            out = m(x)
        out.float().sum().backward()

    return step


def test_open_choices_take_both_values_and_fixed_ones_their_own():
    cpu = torch.device("cpu")
    assert len(candidates(cpu, None, None)) == 4
    assert candidates(cpu, True, None) == [Setting(True, False), Setting(True, True)]
    assert candidates(cpu, False, False) == [Setting(False, False)]


def test_the_tuner_picks_the_fastest_measured_setting_and_remembers_it():
    m = create_model("resnet8", num_classes=10, in_channels=3)
    kw = dict(device=torch.device("cpu"), amp=None, channels_last=None, tune=True, default=Setting(False, False),
              total_steps=10 * MIN_STEPS, spec=model_spec(m), batch_size=16, input_shape=(3, 32, 32))
    before = [p.detach().clone() for p in m.parameters()]
    c = choose(m, _step(torch.randn(16, 3, 32, 32)), **kw)
    assert c.source == "tuned" and set(c.speeds) == {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    assert c.speeds[c.setting.name] == max(c.speeds.values())
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))  # measured on copies
    again = choose(m, _step(torch.randn(16, 3, 32, 32)), **kw)
    assert again.source == "cached" and again.setting == c.setting  # measured once per model and machine
    short = choose(create_model("resnet8", num_classes=7, in_channels=3), _step(torch.randn(16, 3, 32, 32)),
                   **{**kw, "spec": {"other": 1}, "total_steps": MIN_STEPS - 1})
    assert short.source == "default" and short.setting == Setting(False, False)  # not worth measuring
    # nor does a short training of the measured model read its cached choice: what a short training computes must
    # not depend on which longer trainings ran on this machine before it (a restarted search reproduces its trials)
    same_model_short = choose(m, _step(torch.randn(16, 3, 32, 32)), **{**kw, "total_steps": MIN_STEPS - 1})
    assert same_model_short.source == "default" and same_model_short.setting == Setting(False, False)
    fixed = choose(m, _step(torch.randn(16, 3, 32, 32)), **{**kw, "amp": False, "channels_last": True})
    assert fixed.source == "config" and fixed.setting == Setting(False, True)  # the user's settings win


def test_fit_records_the_choice_and_keeps_the_random_stream(digits):
    from archkd.distill import DistillObjective

    def run(**kw):
        torch.manual_seed(0)
        model = create_model("resnet8", num_classes=10, in_channels=1)
        cfg = TrainConfig(epochs=1, batch_size=16, **kw)
        return fit(model, digits, cfg, objective=DistillObjective(), seed=0, device="cpu", log=None,
                   spec=model_spec(model))

    tuned = run()  # 80 steps < MIN_STEPS: the fixed default, said so
    assert tuned.precision["source"] == "default" and tuned.precision["name"] == "fp32"
    off = run(autotune=False)
    assert off.precision["source"] == "default" and off.history[0]["train_loss"] == tuned.history[0]["train_loss"]
    bf16 = run(amp=True, channels_last=True)
    assert bf16.precision["source"] == "config" and bf16.precision["name"] == "bf16+channels_last"
    assert abs(bf16.history[0]["train_loss"] - tuned.history[0]["train_loss"]) < 0.1  # fp32 loss, bf16 student
    assert json.dumps(bf16.precision)


def test_a_frozen_teacher_is_tuned_apart_and_its_cache_keyed_by_its_precision(digits, tmp_path, monkeypatch):
    """The teacher's inference is timed under every setting (real steps); the timings are then tilted towards bf16 so
    the choice is deterministic. Its logits must land in the bf16 cache, never in the fp32 one the caller built."""
    import archkd.distill.autotune as autotune
    from archkd.distill import DistillObjective, TeacherCache

    real = autotune.measure

    def tilted(model, step, settings, images, train=True):
        speeds = real(model, step, settings, images, train)
        return {k: v * (100.0 if k == "bf16" and not train else 1.0) for k, v in speeds.items()}

    monkeypatch.setattr(autotune, "measure", tilted)
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=10, in_channels=1).eval()
    before = [p.detach().clone() for p in teacher.parameters()]
    kw = dict(teacher_hash="t", data_fingerprint=digits.fingerprint, augment_key=digits.augment.key(),
              normalize_key="n", seed=0, n_train=len(digits.train), n_val=len(digits.val), num_classes=10)
    fp32_cache = TeacherCache(tmp_path, **kw)
    student = create_model("resnet8", num_classes=10, in_channels=1)
    res = fit(student, digits, TrainConfig(epochs=1, batch_size=8, data_fraction=0.7),
              objective=DistillObjective(kd_weight=1.0),
              teacher=teacher,
              cache=fp32_cache, seed=0, device="cpu", log=None, spec=model_spec(student))
    assert res.precision["teacher"]["source"] == "tuned" and res.precision["teacher"]["name"] == "bf16"
    assert set(res.precision["teacher"]["speeds"]) == {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    assert res.cache["misses"] > 0
    bf16_cache = TeacherCache(tmp_path, **kw, precision="bf16")
    assert bf16_cache.dir != fp32_cache.dir and any(bf16_cache.dir.glob("*.pt"))
    assert not fp32_cache.dir.exists() or not any(fp32_cache.dir.glob("*.pt"))
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))  # measured on copies, frozen

