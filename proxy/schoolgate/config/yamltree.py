"""Check a YAML file a technician edits and say exactly where it is wrong: a node tree that
remembers each value's line and dotted key, and the accessors that report
``file:line: key: what is wrong (allowed: ...)`` instead of raising, so every problem in a file is
found in one pass. The config file and the alert routing file are both read with it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

__all__ = ["Node", "YamlChecker", "describe"]


@dataclass(slots=True)
class Node:
    """One value of the file, with where it came from."""

    data: Any  # dict[str, Node] | list[Node] | scalar
    line: int
    key: str  # dotted path such as groups.ks3.subnets[2]


def describe(value: Any) -> str:
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


class YamlChecker:
    """Builds the tree of a composed YAML document and collects problems in `problems`.
    Subclasses add the typed accessors and the schema of their file."""

    def __init__(self, path: Path):
        self.file = path
        self.base = path.parent
        self.problems: list[str] = []
        self._constructor = yaml.SafeLoader("")

    # -- building the tree ---------------------------------------------------------------------

    def tree(self, node: yaml.Node | None) -> Node:
        if node is None:
            return Node({}, 1, "")
        return self._node(node, "")

    def _node(self, node: yaml.Node, key: str) -> Node:
        line = node.start_mark.line + 1
        if isinstance(node, MappingNode):
            out: dict[str, Node] = {}
            for knode, vnode in node.value:
                name = self._constructor.construct_object(knode)
                if not isinstance(name, str):
                    self.problem(knode.start_mark.line + 1, key, f"key {name!r} must be text")
                    continue
                child = f"{key}.{name}" if key else name
                if name in out:
                    self.problem(
                        knode.start_mark.line + 1,
                        child,
                        f"given twice (first on line {out[name].line}); keep one",
                    )
                    continue
                value = self._node(vnode, child)
                # A block value starts on the line after its key; name the key's line.
                value.line = knode.start_mark.line + 1
                out[name] = value
            return Node(out, line, key)
        if isinstance(node, SequenceNode):
            return Node(
                [self._node(v, f"{key}[{i}]") for i, v in enumerate(node.value)], line, key
            )
        assert isinstance(node, ScalarNode)
        return Node(self._constructor.construct_object(node), line, key)

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
