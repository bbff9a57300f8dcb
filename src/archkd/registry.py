"""One lookup for every name registry (losses, spaces, samplers, transforms, ...).

Why shared: an unknown name must always give the same one-line error with the closest registered name, whichever
registry it came from.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, TypeVar

from archkd.errors import ArchkdError

T = TypeVar("T")


def lookup(registry: dict[str, T], name: str, kind: str) -> T:
    """``registry[name]``, or an ``ArchkdError`` naming the closest registered ``kind``."""
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=1)
        raise ArchkdError(f"unknown {kind} '{name}'",
                          f"did you mean '{close[0]}'?" if close else f"choose one of {sorted(registry)}")
    return registry[name]


def build(registry: dict[str, Callable[..., T]], name: str, kind: str, options_key: str, *args: Any,
          **kwargs: Any) -> T:
    """Look up and call a factory; a wrong option is a user error pointing at ``options_key``."""
    factory = lookup(registry, name, kind)
    try:
        return factory(*args, **kwargs)
    except TypeError as e:
        raise ArchkdError(f"bad options for {kind} '{name}': {e}", f"check {options_key}") from None
