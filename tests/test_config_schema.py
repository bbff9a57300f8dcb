"""The config schema describes itself: every field carries its help, its range and (closed or registry-backed) its
choices, and that metadata is what loading checks and what ``archkd config --keys`` and the docs show."""
from __future__ import annotations

import dataclasses
import typing

import pytest

import archkd.api  # noqa: F401  (imports every registry, as the CLI does)
from archkd.config import (REGISTRY_CHOICES, Config, FeatureLossConfig, all_keys, describe_fields, describe_keys,
                           field_bounds, field_help, field_registry, literal_choices, load_config)
from archkd.config.load import _hints
from archkd.errors import ArchkdError


def _leaves(cls: type = Config, prefix: str = "") -> list[tuple[str, dataclasses.Field, typing.Any]]:
    """``(dotted key, field, type)`` of every settable (non-section) field below ``cls``."""
    out = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _leaves(tp, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, f, tp))
    return out


LEAVES = _leaves() + _leaves(FeatureLossConfig, "distill.features.")
CLOSED = [(key, choices) for key, _f, tp in _leaves() if (choices := literal_choices(tp))]
REGISTRY_BACKED = sorted(key for key, f, _tp in LEAVES if field_registry(f))


def _sections(cls: type = Config) -> list[type]:
    subs = [_hints(cls)[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(_hints(cls)[f.name])]
    return [cls] + [s for sub in subs for s in _sections(sub)]


def test_every_field_has_help():
    missing = [f"{cls.__name__}.{f.name}" for cls in {*_sections(), FeatureLossConfig} for f in dataclasses.fields(cls)
               if not field_help(f).strip()]
    assert not missing, f"give these fields help=: {missing}"
    assert all(d.help for d in describe_fields())


def test_closed_choices_are_literals():
    """The free strings of before are closed types now (or registry-backed, below)."""
    keys = dict(CLOSED)
    assert keys["search.reward_metric"] == ("latency_ms", "params", "flops")
    assert keys["export.formats"] == ("onnx", "torchscript")
    assert {"train.optimizer", "search.pruner", "export.onnx_exporter", "process.normalization"} <= set(keys)
    assert len(CLOSED) >= 15


@pytest.mark.parametrize("key, choices", CLOSED, ids=[k for k, _ in CLOSED])
def test_each_closed_choice_rejects_a_bad_value_with_did_you_mean(key, choices):
    good = choices[-1]
    bad = good[:-1] + ("x" if good[-1] != "x" else "y")  # one letter off: close enough to be suggested
    value = f"[{bad}]" if key == "export.formats" else bad
    with pytest.raises(ArchkdError, match=f"config key '{key}' is ") as e:
        load_config(overrides=[f"{key}={value}"])
    assert f"did you mean '{good}'?" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ArchkdError, match="choose one of"):
        load_config(overrides=[f"{key}=zzzzzzzz"])
    assert load_config(overrides=[f"{key}=[{good}]" if key == "export.formats" else f"{key}={good}"])


@pytest.mark.parametrize("key", REGISTRY_BACKED)
def test_each_registry_backed_choice_is_checked_at_load(key):
    """A field declared ``registry=`` is connected to its registry (``register_choices``), and a bad name is refused
    when the config loads, naming the closest registered one."""
    assert key in REGISTRY_CHOICES, f"no package registers the choices of '{key}' (register_choices)"
    names = sorted(REGISTRY_CHOICES[key]())
    assert names
    good = names[0]
    bad = good[:-1] + ("x" if good[-1] != "x" else "y")
    if key == "distill.features.loss":
        override = f"distill.features=[{{loss: {bad}, student: a, teacher: b}}]"
        key = "distill.features[0].loss"
    elif key == "budget.limits":
        override = f"budget.limits={{{bad}: 1}}"
    elif key in ("measure.runtimes", "process.transforms"):
        override = f"{key}=[{bad}]"
    else:
        override = f"{key}={bad}"
    with pytest.raises(ArchkdError, match=f"config key '{key.split('[')[0]}") as e:
        load_config(overrides=[override])
    assert "choose from" in str(e.value) and key in str(e.value)


def test_every_registered_choice_is_declared_in_the_schema():
    assert set(REGISTRY_CHOICES) == set(REGISTRY_BACKED)


def test_ranges_come_from_field_metadata(monkeypatch):
    """The range check reads each field's ``opt(ge=, gt=, le=, lt=)``: change the metadata and the check follows."""
    bounded = {key: field_bounds(f) for key, f, _tp in _leaves() if field_bounds(f)}
    assert bounded["train.epochs"].ge == 1 and bounded["train.lr"].gt == 0
    assert (bounded["data.val_fraction"].gt, bounded["data.val_fraction"].le) == (0, 1)
    assert bounded["teacher.train.epochs"] == bounded["train.epochs"]  # one declaration, both sections
    for key, b in bounded.items():  # each bound refuses the value just past it and names key and bound
        for bad in ([b.ge - 1] if b.ge is not None else []) + ([b.gt] if b.gt is not None else []) + \
                   ([b.le + 1] if b.le is not None else []) + ([b.lt] if b.lt is not None else []):
            with pytest.raises(ArchkdError, match=f"config key '{key}' is"):
                load_config(overrides=[f"{key}={bad}"])
    rows = {d.key: d for d in describe_fields()}
    assert rows["data.val_fraction"].range == "> 0, ≤ 1" and rows["train.epochs"].range == "≥ 1"
    assert rows["train.optimizer"].range == ""
    # the metadata is the only table: loosen one field's bound and the value loads
    from archkd.config import schema

    f = next(f for f in dataclasses.fields(schema.TrainConfig) if f.name == "epochs")
    monkeypatch.setattr(f, "metadata", {**f.metadata, "range": dataclasses.replace(f.metadata["range"], ge=0)})
    assert load_config(overrides=["train.epochs=0"]).train.epochs == 0


def test_feature_losses_are_checked_at_load():
    with pytest.raises(ArchkdError, match=r"config key 'distill.features\[0\].weight' is -1"):
        load_config(overrides=["distill.features=[{loss: fitnet, student: a, teacher: b, weight: -1}]"])
    with pytest.raises(ArchkdError, match=r"'distill.features\[1\].loss' is 'fitnett'.*did you mean 'fitnet'"):
        load_config(overrides=["distill.features=[{loss: at, student: a, teacher: b}, "
                               "{loss: fitnett, student: a, teacher: b}]"])


def test_keys_show_help_range_and_choices():
    rows = {key: (tp, default, text) for key, tp, default, text in describe_keys()}
    assert set(rows) == {k for k in all_keys() if not dataclasses.is_dataclass(_field_type(k))}
    assert rows["export.formats"][0] == "list of (onnx | torchscript)"
    assert "onnxruntime" in rows["budget.latency_runtime"][0] and "torch" in rows["measure.runtimes"][0]
    assert rows["process.distance"][0] == "hcl | mse"
    assert rows["train.epochs"][2].endswith("(range: ≥ 1)")


def _field_type(key: str) -> typing.Any:
    cls: typing.Any = Config
    for part in key.split("."):
        cls = _hints(cls)[part]
    return cls


def test_the_lists_elsewhere_derive_from_the_config_types():
    """One source of truth per choice: the modules that implement a closed choice read its values from the config
    type, and the registry-backed runtimes are the runtime registry's names."""
    from archkd.config import ExportFormat, Normalization, OnnxExporter, Pruner, RewardMetric
    from archkd.export.exporter import FORMATS
    from archkd.measure.latency import RUNTIMES
    from archkd.measure.onnx_export import EXPORTERS
    from archkd.process.process import NORMALIZATIONS
    from archkd.search.reward import METRICS
    from archkd.search.storage import PRUNERS

    assert FORMATS == typing.get_args(ExportFormat) and EXPORTERS == typing.get_args(OnnxExporter)
    assert NORMALIZATIONS == typing.get_args(Normalization) and METRICS == typing.get_args(RewardMetric)
    assert set(PRUNERS) == set(typing.get_args(Pruner))
    assert sorted(REGISTRY_CHOICES["budget.latency_runtime"]()) == sorted(RUNTIMES)
