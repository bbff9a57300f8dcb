"""Precision and memory format chosen by measurement, per model: what cuDNN's benchmark mode does for kernels.

Why measure: no one setting is fastest for every student. On an AVX-512-BF16 CPU, bf16 autocast with channels_last
trains a ResNet 2.2–2.5× faster than fp32, while a ViT runs at 0.6× (its matmuls and layer norms lose to the casts);
on CUDA, bf16 usually wins. So before a training, a few steps of the actual model, objective and batch size are timed
under each candidate ``Setting`` — fp32 or bf16 autocast, contiguous or channels_last — and the fastest is used.

- The student's training step and a frozen teacher's inference are tuned apart (a ResNet teacher may gain from bf16
  where a ViT student loses). The teacher-output cache is keyed by the precision the teacher ran in, so logits
  computed in bf16 are never served to an fp32 teacher or the other way round. A teacher with feature taps, or one
  that trains, runs as the config says.
- The loss is always taken in fp32 on fp32 logits (KD's softmax at temperature T loses most in bf16); master weights
  stay fp32 (autocast casts per op, it never stores bf16 weights).
- Choices are cached per machine (CPU model, cores, threads, torch version, device) and per (model spec, batch size,
  input shape), in ``<cache dir>/autotune.json``, so a search pays once per architecture. A training too short to
  repay the measurement (under ``MIN_STEPS`` optimiser steps) uses the fixed default, never a cached choice: the
  cache is filled by whatever longer training ran first on the machine (a search's final student, its teacher), and
  a short training that read it would train in another precision after such a run than before it — a restarted or
  repeated search would not reproduce its trials (``bench/chaos.py`` caught this). Measuring is
  not bounded: timing a slow model on a slice of its batch instead picked a setting 15-40 % slower than the best for
  3 of 16 models (``bench/precision.py``), so every setting is timed on the whole batch.
- Explicit ``train.amp`` / ``train.channels_last`` win over the tuner, which then only tunes what is left open.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from archkd.device import default_cache_dir

Step = Callable[[nn.Module, "Setting"], None]  # one training (or inference) step of a model copy under a setting

WARMUP, TIMED = 1, 2  # untimed then timed training steps per candidate
MIN_STEPS = 100  # a training shorter than this many steps is not worth measuring (cached or default choice)


@dataclass(frozen=True)
class Setting:
    amp: bool  # bf16 autocast for the student's forward and backward
    channels_last: bool  # channels-last memory format for the student and its inputs

    @property
    def name(self) -> str:
        return f"{'bf16' if self.amp else 'fp32'}{'+channels_last' if self.channels_last else ''}"


@dataclass
class Choice:
    """The setting a training runs with, where it came from, and what was measured (img/s per setting name)."""

    setting: Setting
    source: str  # "tuned" (measured now), "cached" (measured earlier on this machine), "config" (all fixed), "default"
    speeds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # spent measuring

    def to_dict(self) -> dict:
        return {**asdict(self.setting), "name": self.setting.name, "source": self.source, "speeds": self.speeds,
                "seconds": self.seconds}


def candidates(device: torch.device, amp: bool | None, channels_last: bool | None) -> list[Setting]:
    """Every setting the tuner may pick: the open choices take both values, the fixed ones their own."""
    amps = [False, True] if amp is None else [bool(amp)]
    cls = [False, True] if channels_last is None else [bool(channels_last)]
    return [Setting(a, c) for a in amps for c in cls]


def autocast(device: torch.device, on: bool):
    """bf16 autocast on ``device`` (CPU or CUDA) when ``on``; a null context otherwise."""
    import contextlib

    return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}|{os.cpu_count()}|{torch.__version__}"


def model_key(model: nn.Module, spec: dict | None) -> str:
    """The model a choice holds for: its spec, or for a model built outside the registry its module tree and
    parameter shapes (what its speed depends on)."""
    if spec is not None:
        return json.dumps(spec, sort_keys=True, default=str)
    return repr(model) + json.dumps([list(p.shape) for p in model.parameters()])


def cache_key(model: str, batch_size: int, input_shape: tuple[int, ...], device: torch.device,
              settings: list[Setting]) -> str:
    """What a measured choice holds for: the model, batch, input, device, threads, this machine and the candidates."""
    parts = [model, batch_size, list(input_shape), device.type, torch.get_num_threads(), _machine(),
             [s.name for s in settings]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _store() -> Path:
    return Path(default_cache_dir()) / "autotune.json"


def cached(key: str) -> Setting | None:
    try:
        found = json.loads(_store().read_text()).get(key)
        return Setting(bool(found["amp"]), bool(found["channels_last"])) if found else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remember(key: str, choice: Choice) -> None:
    """Add ``choice`` to the machine's store (a temporary file renamed into place: concurrent trainings may race, and
    the last writer wins, which loses at most a measurement)."""
    path = _store()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}
        table[key] = {**asdict(choice.setting), "speeds": choice.speeds}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table))
        os.replace(tmp, path)
    except OSError:  # a read-only cache costs a re-measurement next time, nothing else
        pass


def measure(model: nn.Module, step: Step, settings: list[Setting], images: int,
            train: bool = True) -> dict[str, float]:
    """img/s of ``step(model_copy, setting)`` (a training step, or an inference for ``train=False``, on a real batch
    of ``images``) under each setting, on a private copy of the model so the caller's weights and statistics are
    untouched."""
    speeds: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):  # dropout in the timed steps must not shift the training's random stream
        for s in settings:
            speeds[s.name] = _time(model, step, s, images, train)
    return speeds


def _seconds(model: nn.Module, step: Step, s: Setting, train: bool, steps: int) -> float:
    """Seconds of ``steps`` steps, untimed warm-up aside, on a private copy of ``model`` under ``s``."""
    m = copy.deepcopy(model)
    if s.channels_last:
        m = m.to(memory_format=torch.channels_last)
    m.train(train)
    for _ in range(WARMUP):
        step(m, s)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(m, s)
    return max(time.perf_counter() - t0, 1e-9)


def _time(model: nn.Module, step: Step, s: Setting, images: int, train: bool) -> float:
    """img/s of ``TIMED`` steps of ``images`` images after ``WARMUP``, on a private copy of ``model`` under ``s``."""
    return images * TIMED / _seconds(model, step, s, train, TIMED)


def choose(model: nn.Module, step: Step, *, device: torch.device,
           amp: bool | None, channels_last: bool | None, tune: bool, default: Setting, total_steps: int,
           spec: dict | None, batch_size: int, input_shape: tuple[int, ...], train: bool = True) -> Choice:
    """The setting to train with (``train=False``: to run inference with, as a frozen teacher does); see the module
    docstring. ``default`` is the fixed choice for the device; ``total_steps`` the steps it will serve."""
    settings = candidates(device, amp, channels_last)
    if len(settings) == 1:
        return Choice(settings[0], "config")
    if not tune:
        return Choice(default if default in settings else settings[0], "default")
    if total_steps < MIN_STEPS:  # before the cache: see the module docstring
        return Choice(default if default in settings else settings[0], "default")
    key = cache_key(("" if train else "inference|") + model_key(model, spec), batch_size, input_shape, device,
                    settings)
    found = cached(key)
    if found is not None:
        return Choice(found, "cached")
    t0 = time.perf_counter()
    speeds = measure(model, step, settings, batch_size, train)
    best = max(settings, key=lambda s: speeds[s.name])
    choice = Choice(best, "tuned", speeds, time.perf_counter() - t0)
    remember(key, choice)
    return choice
