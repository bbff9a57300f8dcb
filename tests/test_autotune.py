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
