"""One registry class for every name -> thing table (models, spaces, samplers, losses, transforms, proxies, teacher
loaders, report sections, runtimes, budget kinds, ...).

Why one class: each table used to be a hand-written dict with its own ``register_*`` decorator, so an unknown name
gave a different message in each place (or a bare ``KeyError``), and only models refused a second entry under a
taken name — elsewhere a plugin silently replaced a built-in. ``Registry`` gives every table the same behaviour:

- ``register`` works as a decorator (``@R.register("name")``) and as a call (``R.register("name", obj)``);
- a name clash is refused with an ``ArchkdError`` unless ``replace=True``; registering *the same* object again (same
  object, or same module and qualified name, as when a module is re-imported) is a harmless no-op;
- ``lookup(name)`` returns the entry or raises the one-line ``ArchkdError`` "unknown <kind> '<name>' — did you mean
  '<closest>'?" (or the list of choices), the same for every table;
- it is a read-only ``Mapping`` (``in``, iteration in registration order, ``[]``, ``get``, ``items``), so code that
  treated the old dicts as mappings keeps working.

``suggest``/``did_you_mean`` are the one closest-name rule, also used for config keys and model options.
"""
from __future__ import annotations

import difflib
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, Callable, Generic, Iterable, TypeVar, overload

from archkd.errors import ArchkdError

T = TypeVar("T")

__all__ = ["Registry", "suggest", "did_you_mean"]


def suggest(word: str, options: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The option closest to ``word`` (difflib ratio, case-insensitive), or None below ``cutoff``.

    Ties go to the longer shared prefix, then alphabetical order: plain ``difflib.get_close_matches`` sends
    ``resnet21`` to ``resnet32`` (equal ratio, larger string) where the user almost surely meant ``resnet20``."""
    w = str(word).lower()
    best: tuple[float, int] | None = None
    choice = None
    for option in sorted(set(options)):
        o = option.lower()
        prefix = next((i for i, (a, b) in enumerate(zip(w, o)) if a != b), min(len(w), len(o)))
        score = (difflib.SequenceMatcher(None, w, o).ratio(), prefix)
        if score[0] >= cutoff and (best is None or score > best):
            best, choice = score, option
    return choice


def did_you_mean(word: str, options: Iterable[str], otherwise: str | None = None, cutoff: float = 0.6) -> str:
    """The fix text of an unknown-name error: ``did you mean 'x'?``, else ``otherwise`` (default: the choices)."""
    options = list(options)
    close = suggest(word, options, cutoff)
    if close is not None:
        return f"did you mean '{close}'?"
    return otherwise if otherwise is not None else f"choose one of {', '.join(sorted(options)) or '(none registered)'}"


def _identity(obj: Any) -> Hashable:
    """What makes two registrations "the same thing": a module re-import creates new function and class objects
    with the same module, qualified name (and, for functions, first line: two lambdas of one function differ);
    other objects are only the same as themselves."""
    qualname = getattr(obj, "__qualname__", None)
    if qualname is not None:
        return getattr(obj, "__module__", None), qualname, getattr(getattr(obj, "__code__", None), "co_firstlineno", 0)
    return id(obj)


class Registry(Mapping[str, T], Generic[T]):
    """A named table of ``T`` (factories, classes, records) that plugins extend by registration.

    ``kind`` names an entry in messages ("search method", "distillation loss"); ``options_key`` is the config key a
    user fixes when a factory rejects its options (``build``); ``origin`` maps a record entry to the function or
    class it wraps, whose module and qualified name tell a harmless re-registration (a module re-import) from a clash.
    """

    def __init__(self, kind: str, options_key: str | None = None, origin: Callable[[T], Any] | None = None) -> None:
        self.kind = kind
        self.options_key = options_key
        self._origin: Callable[[T], Any] = origin or (lambda entry: entry)
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str, obj: None = None, *, replace: bool = False,
                 before: str | None = None) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False, before: str | None = None) -> T: ...

    def register(self, name: str, obj: T | None = None, *, replace: bool = False,
                 before: str | None = None) -> Any:
        """Register ``obj`` as ``name`` (returned unchanged), or return a decorator doing so when ``obj`` is omitted.

        A taken name is refused unless ``replace`` (then the entry keeps its position) or the entry is the same
        thing again. ``before``: a new entry goes just before that existing entry instead of last (ordered tables
        such as report sections)."""
        if not isinstance(name, str) or not name.strip():
            raise ArchkdError(f"invalid {self.kind} name {name!r}",
                              f"register each {self.kind} under a non-empty string")
        if before is not None and before not in self._entries:
            raise ArchkdError(f"cannot place {self.kind} '{name}' before '{before}': no such {self.kind}",
                              did_you_mean(before, self._entries))
        if obj is None:
            return lambda o: self.register(name, o, replace=replace, before=before)
        if name in self._entries:
            existing = self._entries[name]
            same = existing is obj or _identity(self._origin(existing)) == _identity(self._origin(obj))
            if not replace and not same:
                raise ArchkdError(f"a {self.kind} named '{name}' is already registered",
                                  "register yours under another name, or pass replace=True to override it")
            self._entries[name] = obj
        elif before is None:
            self._entries[name] = obj
        else:
            items = list(self._entries.items())
            at = [k for k, _ in items].index(before)
            self._entries = dict(items[:at] + [(name, obj)] + items[at:])
        return obj

    def unregister(self, name: str) -> T | None:
        """Remove ``name``; return its entry (None when it was not registered)."""
        return self.pop(name)

    def pop(self, name: str, default: T | None = None) -> T | None:
        """``dict.pop`` spelling of ``unregister`` (tests clean up their temporary entries with it)."""
        return self._entries.pop(name, default)

    def lookup(self, name: str) -> T:
        """The entry ``name``, or the one-line ``ArchkdError`` naming the closest registered name."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name" from a hand-edited file
            raise ArchkdError(f"unknown {self.kind} '{name}'", did_you_mean(str(name), self._entries)) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Look up and call a factory; options it rejects are a user error pointing at ``options_key``."""
        factory = self.lookup(name)
        try:
            return factory(*args, **kwargs)  # type: ignore[operator]
        except TypeError as e:
            raise ArchkdError(f"bad options for {self.kind} '{name}': {e}",
                              f"check {self.options_key}" if self.options_key else None) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def suggest(self, name: str) -> str | None:
        return suggest(name, self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))  # a copy: registering while iterating (imports in a loop) is allowed

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

