"""Check a YAML file a technician edits and say exactly where it is wrong: a node tree that
remembers each value's line and dotted key, and the accessors that report
``file:line: key: what is wrong (allowed: ...)`` instead of raising, so every problem in a file is
found in one pass. The config file, the alert routing file and the keyword library are read
with it: `compose` builds the tree for all three, `YamlChecker` adds the accessors of the first two.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

__all__ = ["FAST_LOADER", "Node", "OnProblem", "YamlChecker", "compose", "describe"]

# libyaml's composer, when PyYAML was built with it, is ten times faster and marks lines alike.
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

OnProblem = Callable[[int, str, str], None]
"""Told of each problem `compose` finds: its 1-based line, dotted key and message."""


@dataclass(slots=True)
class Node:
    """One value of the file, with where it came from."""

    data: Any  # dict[str, Node] | list[Node] | scalar
    line: int
    key: str  # dotted path such as groups.ks3.subnets[2]


def describe(value: object) -> str:
    """A value as a message names it: "text 'x'", "a list", "empty"."""
    if value is None:
        return "empty"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: f"text {value!r}",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def compose(
    source: str | yaml.Node | None,
    on_problem: OnProblem,
    *,
    not_text: str = "",
    twice: str = "keep one",
) -> Node:
    """The tree of one YAML document. `source` is its text, composed with `FAST_LOADER` (raises
    `yaml.MarkedYAMLError` when it is not YAML), or its root node as composed already (None for
    an empty document). A key that is not text is left out and a key given twice keeps its
    first value; each is told to `on_problem`, its message ending with `not_text` or `twice`
    (what the file's reader is asked to do, or what the loader did)."""
    root = yaml.compose(source, Loader=FAST_LOADER) if isinstance(source, str) else source
    if root is None:
        return Node({}, 1, "")
    return _TreeBuilder(on_problem, not_text, twice).node(root, "")


class _TreeBuilder:
    __slots__ = ("constructor", "not_text", "on_problem", "twice")

    def __init__(self, on_problem: OnProblem, not_text: str, twice: str) -> None:
        self.on_problem = on_problem
        self.not_text = f"; {not_text}" if not_text else ""
        self.twice = f"; {twice}" if twice else ""
        # Scalars become Python values as yaml.safe_load would make them.
        self.constructor = SafeConstructor()

    def node(self, node: yaml.Node, key: str) -> Node:
        line = node.start_mark.line + 1
        if isinstance(node, MappingNode):
            out: dict[str, Node] = {}
            for knode, vnode in node.value:
                name = self.constructor.construct_object(knode)
                kline = knode.start_mark.line + 1
                if not isinstance(name, str):
                    self.on_problem(kline, key, f"key {name!r} must be text{self.not_text}")
                    continue
                child = f"{key}.{name}" if key else name
                if name in out:
                    self.on_problem(
                        kline, child, f"given twice (first on line {out[name].line}){self.twice}"
                    )
                    continue
                value = self.node(vnode, child)
                # A block value starts on the line after its key; name the key's line.
                value.line = kline
                out[name] = value
            return Node(out, line, key)
        if isinstance(node, SequenceNode):
            return Node([self.node(v, f"{key}[{i}]") for i, v in enumerate(node.value)], line, key)
        if not isinstance(node, ScalarNode):
            raise TypeError(f"not a YAML node: {node!r}")
        return Node(self.constructor.construct_object(node), line, key)


class YamlChecker:
    """Builds the tree of a composed YAML document and collects problems in `problems`.
    Subclasses add the typed accessors and the schema of their file."""

    def __init__(self, path: Path):
        self.file = path
        self.base = path.parent
        self.problems: list[str] = []

    # -- building the tree ---------------------------------------------------------------------

    def tree(self, node: yaml.Node | None) -> Node:
        return compose(node, self.problem)

    # -- reporting -----------------------------------------------------------------------------

    def problem(self, line: int, key: str, message: str) -> None:
        where = f"{self.file}:{line}"
        self.problems.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    def bad(self, v: Node, message: str) -> None:
        self.problem(v.line, v.key, message)

    # -- typed accessors shared by every file --------------------------------------------------

    def mapping(self, v: Node, allowed: tuple[str, ...] | None) -> dict[str, Node] | None:
        """Return the mapping in `v`, reporting keys outside `allowed` (None: any key)."""
        if not isinstance(v.data, dict):
            self.bad(v, f"must be a mapping of keys to values, not {describe(v.data)}")
            return None
        if allowed is not None:
            for name, child in v.data.items():
                if name not in allowed:
                    hint = difflib.get_close_matches(name, allowed, n=1)
                    also = f"; did you mean '{hint[0]}'?" if hint else ""
                    self.bad(child, f"unknown key (allowed: {', '.join(allowed)}){also}")
        return v.data

    def required(self, m: dict[str, Node], parent: Node, name: str) -> Node | None:
        if name not in m:
            key = f"{parent.key}.{name}" if parent.key else name
            self.problem(parent.line, key, "is required but missing")
            return None
        return m[name]

    def sequence(self, v: Node) -> list[Node] | None:
        if not isinstance(v.data, list):
            self.bad(v, f"must be a list, not {describe(v.data)}")
            return None
        return v.data

    def flag(self, v: Node) -> bool | None:
        if not isinstance(v.data, bool):
            self.bad(v, f"must be true or false, not {describe(v.data)}")
            return None
        return v.data
