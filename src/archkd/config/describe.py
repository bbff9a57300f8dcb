"""Every settable key described from the schema's field metadata: type (closed choices spelled out, registry-backed
ones listed from the registries imported so far), default, range and help. ``archkd config --keys`` prints it and the
documentation's configuration page is generated from it."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from archkd.config.fields import field_bounds, field_help, field_registry, unwrap
from archkd.config.load import REGISTRY_CHOICES, _hints
from archkd.config.schema import Config

__all__ = ["KeyDoc", "describe_fields", "describe_keys"]


@dataclass(frozen=True)
class KeyDoc:
    """One settable key: its ``type`` as a user writes it, its ``default`` (YAML), its ``range`` (``"> 0, ≤ 1"``;
    empty: any value of the type) and its ``help``."""

    key: str
    type: str
    default: str
    range: str
    help: str


def _spell(key: str, tp: Any, registry: str | None) -> str:
    if key in REGISTRY_CHOICES or registry is not None:
        names = (" | ".join(sorted(REGISTRY_CHOICES[key]())) if key in REGISTRY_CHOICES
                 else f"a registered {registry}")
        base, optional = unwrap(tp)
        listed = base is list or typing.get_origin(base) is list
        spelled = f"list of ({names})" if listed else f"dict of ({names}): number" if base is dict else names
        return spelled + (" | null" if optional else "")
    if typing.get_origin(tp) is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list and typing.get_args(tp):
        return f"list of ({_spell(key, typing.get_args(tp)[0], None)})"
    args = typing.get_args(tp)
    if args:
        return " | ".join(_spell(key, a, None) for a in args)
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def describe_fields(obj: Any = None, prefix: str = "") -> list[KeyDoc]:
    """A ``KeyDoc`` for every settable key below ``obj`` (default: a fresh ``Config``), in schema order."""
    obj = Config() if obj is None else obj
    rows: list[KeyDoc] = []
    for f in dataclasses.fields(obj):
        key, tp, value = prefix + f.name, _hints(type(obj))[f.name], getattr(obj, f.name)
        if dataclasses.is_dataclass(tp):
            rows.extend(describe_fields(value, key + "."))
            continue
        bounds = field_bounds(f)
        default = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        rows.append(KeyDoc(key, _spell(key, tp, field_registry(f)), default, bounds.text() if bounds else "",
                           field_help(f)))
    return rows


def describe_keys() -> list[tuple[str, str, str, str]]:
    """``(key, type, default, help)`` for every settable key, for ``archkd config --keys``; the help ends with the
    key's range when it has one (``describe_fields`` keeps the range apart)."""
    return [(d.key, d.type, d.default, d.help + (f" (range: {d.range})" if d.range else "")) for d in describe_fields()]
