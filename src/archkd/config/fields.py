"""Field metadata of the config schema: ``opt`` declares, beside a field's default, its help, its allowed range and
(for a key whose choices are a registry's names) the registry it names, so each key is described in one place.

The metadata is what ``archkd config --keys``, the generated configuration page and the load-time range check read;
a closed choice is its type (a ``Literal``), so its values are spelled once, in the annotation.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Bounds", "opt", "field_help", "field_bounds", "field_registry", "unwrap", "literal_choices"]

_MISSING: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Bounds:
    """The interval a number must lie in: ``ge``/``gt`` below (inclusive/exclusive), ``le``/``lt`` above."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def parts(self) -> list[str]:
        marks = (("≥", self.ge), (">", self.gt), ("≤", self.le), ("<", self.lt))
        return [f"{mark} {value:g}" for mark, value in marks if value is not None]

    def text(self) -> str:
        """``"> 0, ≤ 1"``: how the docs and ``archkd config --keys`` state the range."""
        return ", ".join(self.parts())

    def fix(self, value: float) -> str | None:
        """The fix text of a ``value`` outside the interval (None inside it)."""
        if (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt):
            return f"it must be {self.parts()[0]}"
        if (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt):
            return "a fraction is at most 1" if self.le == 1 else f"it must be {self.parts()[-1]}"
        return None


def opt(default: Any = _MISSING, *, help: str, factory: Any = None, ge: float | None = None,
        gt: float | None = None, le: float | None = None, lt: float | None = None,
        registry: str | None = None) -> Any:
    """A schema field: ``default`` (a list or dict is copied per instance) or ``factory``, its one-line ``help``,
    the range its number must lie in (``ge``/``gt``/``le``/``lt``, checked when the config loads), and ``registry``,
    the kind of registry whose names are its choices (``register_choices`` connects the key to the registry)."""
    meta: dict[str, Any] = {"help": help}
    if any(b is not None for b in (ge, gt, le, lt)):
        meta["range"] = Bounds(ge, gt, le, lt)
    if registry is not None:
        meta["registry"] = registry
    if factory is None and isinstance(default, (list, dict)):
        factory = lambda: copy.deepcopy(default)  # noqa: E731
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_help(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def field_bounds(f: dataclasses.Field) -> Bounds | None:
    return f.metadata.get("range")


def field_registry(f: dataclasses.Field) -> str | None:
    return f.metadata.get("registry")


def unwrap(tp: Any) -> tuple[Any, bool]:
    """``(type, optional)``: ``X | None`` gives ``(X, True)``, anything else ``(tp, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), len(rest) < len(args)
    return tp, False


def literal_choices(tp: Any) -> tuple[str, ...] | None:
    """The values of a closed choice: of ``Literal[...]``, ``Literal[...] | None`` or ``list[Literal[...]]``."""
    base, _ = unwrap(tp)
    if typing.get_origin(base) is list and typing.get_args(base):
        base = typing.get_args(base)[0]
    if typing.get_origin(base) is Literal:
        return tuple(str(a) for a in typing.get_args(base))
    return None
