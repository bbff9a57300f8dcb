"""Resolving a config: defaults < method preset < YAML file < CLI flags < ``key.sub=value`` overrides, each value
converted to its field's type, then every number checked against its field's range and every registry-backed
choice against its registry, so a bad value is a one-line error naming the key before any data is read."""
from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import yaml

from archkd.config.fields import field_bounds, unwrap
from archkd.config.schema import Config, FeatureLossConfig
from archkd.config.yamlio import load_yaml, read_yaml
from archkd.errors import ArchkdError
from archkd.registry import did_you_mean, suggest

__all__ = ["all_keys", "set_key", "parse_overrides", "load_config", "check_ranges", "check_choices",
           "register_choices", "REGISTRY_CHOICES", "register_presets", "PRESET_SOURCES", "method_presets", "to_dict",
           "save_config"]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key the config accepts (used for suggestions and docs)."""
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        sub = _hints(cls)[f.name]
        keys.append(key)
        if dataclasses.is_dataclass(sub):
            keys.extend(all_keys(sub, key + "."))
    return keys


def _unknown(key: str) -> ArchkdError:
    return ArchkdError(f"unknown config key '{key}'",
                       did_you_mean(key, all_keys(), "run 'archkd config' to list the valid keys", cutoff=0.5))


def _choose(value: Any, choices: list[str], lead: str) -> str:
    """``<lead> a, b, c`` plus ``(did you mean 'x'?)`` when one choice is close to ``value``."""
    close = suggest(str(value), choices, cutoff=0.5)
    return f"{lead} {', '.join(choices)}" + (f" (did you mean '{close}'?)" if close else "")


def _check_literal(key: str, tp: Any, value: Any, shown: Any) -> str:
    choices = [str(c) for c in typing.get_args(tp)]
    if str(value) not in choices:
        raise ArchkdError(f"config key '{key}' is {shown!r}", _choose(value, choices, "choose one of"))
    return str(value)


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the field's declared type; a closed choice (``Literal``, or
    a list of one) refuses a value outside it."""
    if isinstance(value, str) and tp is not str:
        value = load_yaml(value, f"the value of config key '{key}'") if value.strip() else None
    base, optional = unwrap(tp)
    if value is None:
        if optional:
            return None
        raise ArchkdError(f"config key '{key}' cannot be empty", f"give it a {getattr(base, '__name__', base)} value")
    if typing.get_origin(base) is Literal:
        return _check_literal(key, base, value, value)
    if typing.get_origin(base) is list:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        item = typing.get_args(base)[0] if typing.get_args(base) else Any
        if typing.get_origin(item) is Literal:
            return [_check_literal(key, item, v, items) for v in items]
        return [str(v) for v in items] if item is str else items
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
        if base is list:
            return list(value) if isinstance(value, (list, tuple)) else [value]
        if base is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise ArchkdError(
            f"config key '{key}' got {value!r}", f"expected a {getattr(base, '__name__', base)}"
        ) from None
    return value


def _apply(obj: Any, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ArchkdError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping", "check the YAML indentation")
    hints = _hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in data.items():
        key = prefix + str(k)
        if k not in names:
            raise _unknown(key)
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            _apply(getattr(obj, k), v, key + ".")
        else:
            setattr(obj, k, _coerce(key, tp, v))


def set_key(cfg: Config, key: str, value: Any) -> None:
    """Set one dotted key (``train.epochs``) with type checking; an unknown key names the closest valid one."""
    parts = key.split(".")
    obj = cfg
    for i, p in enumerate(parts):
        if not dataclasses.is_dataclass(obj) or p not in {f.name for f in dataclasses.fields(obj)}:
            raise _unknown(key)
        tp = _hints(type(obj))[p]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                _apply(getattr(obj, p), load_yaml(value, f"the value of config key '{key}'")
                       if isinstance(value, str) else value, key + ".")
            else:
                setattr(obj, p, _coerce(key, tp, value))
        else:
            obj = getattr(obj, p)


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ArchkdError(f"cannot read override '{item}'", "write overrides as key.sub=value, e.g. train.epochs=5")
        k, v = item.split("=", 1)
        out.append((k.strip(), v))
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                flags: dict[str, Any] | None = None, base: Config | None = None) -> Config:
    """Resolve a config: defaults (or ``base``) < YAML ``path`` < ``flags`` (dotted keys) < ``overrides``."""
    data = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ArchkdError(f"config file not found: {p}", "check the --config path")
        data = read_yaml(p, "config file") or {}

    def resolve(start: Config, preset: dict) -> Config:
        cfg = copy.deepcopy(start)
        for k, v in preset.items():
            set_key(cfg, k, copy.deepcopy(v))
        if data is not None:
            _apply(cfg, data)
        for k, v in (flags or {}).items():
            if v is not None:
                set_key(cfg, k, v)
        for k, v in parse_overrides(overrides or []):
            set_key(cfg, k, v)
        return cfg

    start = base if base is not None else Config()
    cfg = resolve(start, {})
    presets = method_presets()
    if cfg.search.method in presets:  # the method's defaults go under everything the user set
        cfg = resolve(start, presets[cfg.search.method])
    if not cfg.name or cfg.name in (".", "..") or any(c in cfg.name for c in "/\\"):
        raise ArchkdError(f"run name '{cfg.name}' is not a single folder name",
                          "give --name a plain name (no '/', '..'); choose the parent folder with --runs-dir")
    check_ranges(cfg)
    cfg.distill.features = [_feature(i, f) for i, f in enumerate(cfg.distill.features)]
    check_choices(cfg)
    return cfg


def _feature(i: int, item: Any) -> dict:
    """One ``distill.features`` entry, checked against ``FeatureLossConfig`` (keys, types, ranges) when the config
    loads; its ``loss`` is checked with the other registry-backed choices."""
    key = f"distill.features[{i}]"
    if isinstance(item, FeatureLossConfig):
        item = dataclasses.asdict(item)
    if not isinstance(item, dict):
        raise ArchkdError(f"{key} is {item!r}, not a mapping",
                          "write each feature loss as {loss: fitnet, student: <module>, teacher: <module>}")
    f = FeatureLossConfig()
    _apply(f, item, key + ".")
    check_ranges(f, key + ".")
    return dataclasses.asdict(f)


# A search method that is more than a sampler brings its defaults: what its paper searches and how. Each method's
# preset lives in its sampler's registry entry (``register_sampler(name, preset=...)``, a layer above), which hands
# config a view of them here; presets sit above the built-in defaults and below the YAML file, flags and overrides,
# so `--method autokd --space stages` still works.
PRESET_SOURCES: list[Callable[[], Mapping[str, dict[str, Any]]]] = []


def register_presets(source: Callable[[], Mapping[str, dict[str, Any]]]) -> None:
    """Add ``source() -> {method: {dotted key: value}}``, read whenever a config loads."""
    PRESET_SOURCES.append(source)


def method_presets() -> dict[str, dict[str, Any]]:
    """Every registered method's preset (dotted key -> value), by ``search.method`` name."""
    return {method: preset for source in PRESET_SOURCES for method, preset in source().items()}


# Keys whose choices live in a registry (a field declared with ``opt(..., registry=<kind>)``: a new sampler, space,
# model, loss, transform, proxy, runtime or budget kind is a registry entry, not a Literal here): the package owning
# the registry registers it, and a loaded config is checked against every registry imported by then (the CLI and
# ``archkd.api`` import them all) before any data is read. ``distill.features.loss`` reaches into each entry.
REGISTRY_CHOICES: dict[str, Callable[[], Iterable[str]]] = {}


def register_choices(key: str, names: Callable[[], Iterable[str]]) -> None:
    """Check config key ``key`` against ``names()`` (a registry's current entries) whenever a config loads."""
    REGISTRY_CHOICES[key] = names


def _values(obj: Any, parts: list[str], key: str) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` at the dotted path ``parts`` below ``obj``, one per entry of a list of sections on the way."""
    if not parts:
        yield key, obj
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _values(item, parts, f"{key}[{i}]")
    else:
        value = obj.get(parts[0]) if isinstance(obj, dict) else getattr(obj, parts[0])
        yield from _values(value, parts[1:], f"{key}.{parts[0]}" if key else parts[0])


def check_choices(cfg: Config) -> None:
    """Refuse a registry-backed value (each entry of a list, each key of a dict) that its registry does not hold."""
    for path, names in REGISTRY_CHOICES.items():
        choices = sorted(names())
        for key, value in _values(cfg, path.split("."), ""):
            for v in value if isinstance(value, (list, dict)) else [value]:
                if v is not None and v not in choices:
                    raise ArchkdError(f"config key '{key}' is {value!r}", _choose(v, choices, "choose from"))


def check_ranges(obj: Any, prefix: str = "") -> None:
    """Refuse numbers outside the range their field declares (``opt(ge=, gt=, le=, lt=)``), naming key and bound."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
            continue
        bounds = field_bounds(f)
        if bounds is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        fix = bounds.fix(value)
        if fix is not None:
            raise ArchkdError(f"config key '{prefix}{f.name}' is {value}", fix)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Save the resolved config (what actually ran) next to the run's results."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return p
