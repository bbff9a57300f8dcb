"""Reading YAML from a user (a config file, an override's value, a pool file) safely: a repeated key, runaway
aliases or a nesting too deep for the parser is a one-line ``ArchkdError``, never a silently lost setting or a hang."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from archkd.errors import ArchkdError

__all__ = ["YAML_ALIAS_EXPANSION", "load_yaml", "read_yaml"]

# Aliases (``*name``) may add at most this many values to a YAML document beyond those written in it. archkd's files
# need a few aliases at most, while nested ones grow exponentially: a 1 KB "billion laughs" file of 9 levels of 9
# aliases stands for 9⁹ values, and reading the config value by value ran past 120 s and 4 GB on it.
YAML_ALIAS_EXPANSION = 10_000


class _CheckedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses, before anything is constructed, a mapping that repeats a key (YAML keeps the
    last silently, so one of the user's two settings would be lost) and aliases that expand the document by more
    than ``YAML_ALIAS_EXPANSION`` values or refer to themselves."""

    where = "YAML"

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            self._check_expansion(node)
        return node

    def _check_expansion(self, root: yaml.Node) -> None:
        """Count the values the document stands for with every alias expanded, per distinct node (so the count costs
        what the file holds, not what it expands to) and stop as soon as the aliases add too many."""
        written: set[int] = set()
        stack = [root]
        while stack:  # the nodes written in the file: each composed node once, however many aliases point at it
            node = stack.pop()
            if id(node) not in written:
                written.add(id(node))
                stack.extend(_children(node))
        limit = len(written) + YAML_ALIAS_EXPANSION
        sizes: dict[int, int] = {}
        open_: set[int] = set()

        def size(node: yaml.Node) -> int:
            if id(node) in sizes:
                return sizes[id(node)]
            if id(node) in open_:
                raise ArchkdError(f"{self.where} has an alias inside the value it names "
                                  f"(line {node.start_mark.line + 1})",
                                  "write the value out: a value that contains itself has no end")
            open_.add(id(node))
            total = 1 + sum(size(child) for child in _children(node))
            open_.discard(id(node))
            if total > limit:
                raise ArchkdError(f"{self.where} uses aliases that stand for more than {YAML_ALIAS_EXPANSION:,} "
                                  f"values beyond those written (line {node.start_mark.line + 1})",
                                  "write the values out, or use fewer aliases")
            sizes[id(node)] = total
            return total

        size(root)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # a '<<' merge may be overridden by design; a non-scalar key is refused by PyYAML itself
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ArchkdError(f"{self.where} repeats key '{key}' (lines {seen[key]} and {line})",
                                  "keep one of them: YAML would silently use the last")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML from a user (a config file, an override's value, a pool file) with ``_CheckedLoader``; ``where``
    names it in the one-line error a bad document gives (invalid syntax, repeated key, runaway aliases, nesting too
    deep for the parser)."""
    loader = _CheckedLoader(text)
    loader.where = where
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ArchkdError(f"{where} is not valid YAML ({str(e).splitlines()[0]})", "fix the YAML syntax") from None
    except RecursionError:
        raise ArchkdError(f"{where} nests its values too deeply for the YAML parser",
                          "flatten it: archkd's files need a few levels") from None
    finally:
        loader.dispose()


def read_yaml(path: Path, what: str) -> Any:
    """``load_yaml`` of a user's file, named ``<what> <path>`` in its errors (a file that is not UTF-8 text too)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ArchkdError(f"{what} {path} is not UTF-8 text", "give a YAML file") from None
    return load_yaml(text, f"{what} {path}")

