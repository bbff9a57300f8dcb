"""The ordered registry of report sections.

A section is ``fn(results: dict) -> str | None``: an HTML fragment (its body, without the heading), or
``None`` when the run has no data for it. The report wraps each fragment in
``<section id="section-<slug>"><h2>title</h2>...</section>`` and lists it in the page's contents.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archkd.registry import Registry

SectionFn = Callable[[dict[str, Any]], "str | None"]

__all__ = ["SECTIONS", "Section", "SectionFn", "register_section", "unregister_section", "get_sections",
           "section_names"]


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    fn: SectionFn

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "section"


# Ordered: the report shows sections in registration order (``before`` places one earlier).
SECTIONS: Registry[Section] = Registry("report section")


def register_section(
    name: str, *, title: str | None = None, before: str | None = None
) -> Callable[[SectionFn], SectionFn]:
    """Decorator adding ``fn(results) -> str | None`` as report section ``name``.

    New sections go after the existing ones, or just before section ``before`` when given. Registering a name
    again replaces that section's function and title in place (so re-importing a module is harmless).
    ``title`` (the <h2> text) defaults to ``name`` with its first letter upper-cased.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("section name must be a non-empty string")
    if before is not None and before not in SECTIONS:
        raise ValueError(f"unknown section {before!r}; registered: {section_names()}")

    def decorator(fn: SectionFn) -> SectionFn:
        if not callable(fn):
            raise TypeError("a report section must be callable: fn(results: dict) -> str | None")
        section = Section(name=name, title=title or name[:1].upper() + name[1:], fn=fn)
        SECTIONS.register(name, section, replace=True, before=None if name in SECTIONS else before)
        return fn

    return decorator


def unregister_section(name: str) -> bool:
    """Remove section ``name``; return whether it was registered."""
    return SECTIONS.unregister(name) is not None


def get_sections() -> list[Section]:
    """The registered sections, in report order (a copy)."""
    return list(SECTIONS.values())


def section_names() -> list[str]:
    """The registered section names, in report order."""
    return list(SECTIONS)
