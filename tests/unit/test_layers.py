"""The package's dependency rules, read from the source (every import, at any depth, including
those under `if TYPE_CHECKING:`): the folders are layers, and a layer imports only downward.

    0  schoolgate (the version), events, files, pages, wording, config.model, config.yamltree
    1  classify, identify                       pure: no mitmproxy, store, YAML, network
    2  policy, config (loader, routing, times, diff)
    3  sources, store
    4  alerts, reports, check                   never gateway or cli
    5  gateway
    6  cli                                      imported by nothing

Each rule is checked against the real import graph, and each checker is shown to catch a
breach on a made-up graph, so none of these tests can pass by checking nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "proxy" / "schoolgate"

LAYERS: dict[str, int] = {
    "schoolgate": 0,
    "schoolgate.events": 0,
    "schoolgate.files": 0,
    "schoolgate.pages": 0,
    "schoolgate.wording": 0,
    "schoolgate.config.model": 0,
    "schoolgate.config.yamltree": 0,
    "schoolgate.classify": 1,
    "schoolgate.identify": 1,
    "schoolgate.policy": 2,
    "schoolgate.config": 2,
    "schoolgate.sources": 3,
    "schoolgate.store": 3,
    "schoolgate.alerts": 4,
    "schoolgate.reports": 4,
    "schoolgate.check": 4,
    "schoolgate.gateway": 5,
    "schoolgate.cli": 6,
}
LEAVES = ("schoolgate.events", "schoolgate.files", "schoolgate.pages", "schoolgate.wording",
          "schoolgate.config.model", "schoolgate.config.yamltree")
PURE = ("schoolgate.classify", "schoolgate.identify", "schoolgate.policy")
#: What the pure layers may not import: the proxy, the store, a YAML loader, network clients.
NOT_PURE = ("mitmproxy", "sqlite3", "yaml", "socket", "ssl", "http", "urllib.request",
            "requests", "aiosmtplib", "smtplib", "ldap3", "asyncio", "h11", "prometheus_client",
            "schoolgate.store", "schoolgate.sources", "schoolgate.config.loader",
            "schoolgate.config.yamltree")
NEVER_GATEWAY = ("schoolgate.alerts", "schoolgate.reports", "schoolgate.check")


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def read_imports(root: Path) -> tuple[set[str], list[Import]]:
    """Every module of the package under `root` and every import in it, resolved to the module
    imported (`from . import x` names the submodule `x` when there is one)."""
    modules = _modules(root)
    found: list[Import] = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        functions = [n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inside = {id(sub) for f in functions for sub in ast.walk(f)}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                           for a in node.names]
            found += [Import(name, t, node.lineno, id(node) in inside) for t in targets]
    return set(modules), found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if _within(module, p)), key=len)
    return LAYERS[best]


def breaches(imports: Iterable[Import]) -> list[str]:
    """Every import that breaks a rule in the module docstring, as `module:line -> target`."""
    out = []
    for i in imports:
        where = f"{i.source}:{i.line} -> {i.target}"
        ours = _within(i.target, "schoolgate")
        if ours and i.source in LEAVES and i.target != i.source:
            out.append(f"{where}: {i.source} is a leaf and imports nothing of Schoolgate")
        if any(_within(i.source, p) for p in PURE) and any(_within(i.target, b) for b in NOT_PURE):
            out.append(f"{where}: classify, identify and policy are pure")
        if any(_within(i.source, p) for p in NEVER_GATEWAY) and (
                _within(i.target, "schoolgate.gateway") or _within(i.target, "schoolgate.cli")):
            out.append(f"{where}: alerts, reports and check never import gateway or cli")
        if _within(i.target, "schoolgate.cli") and not _within(i.source, "schoolgate.cli"):
            out.append(f"{where}: nothing imports the CLI")
        if ours and layer_of(i.target) > layer_of(i.source):
            out.append(f"{where}: layer {layer_of(i.source)} imports layer {layer_of(i.target)}")
        if ours and i.in_function:
            out.append(f"{where}: an import of Schoolgate inside a function (import at the top)")
    return out


def cycles(modules: set[str], imports: Iterable[Import]) -> list[list[str]]:
    """The import graph's strongly connected components with more than one module (Tarjan)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for i in imports:
        if i.target in modules and i.target != i.source:
            edges[i.source].add(i.target)
    return _components(edges)


def _components(edges: Mapping[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph() -> tuple[set[str], list[Import]]:
    modules, imports = read_imports(PACKAGE)
    assert len(modules) > 60 and len(imports) > 500  # the real package, not an empty folder
    return modules, imports


def test_every_module_has_a_layer(graph):
    modules, _ = graph
    assert all(any(_within(m, p) for p in LAYERS) for m in modules)


def test_imports_follow_the_layers(graph):
    _, imports = graph
    assert breaches(imports) == []


def test_the_import_graph_has_no_cycle(graph):
    modules, imports = graph
    assert cycles(modules, imports) == []


@pytest.mark.parametrize(("source", "target", "in_function", "rule"), [
    ("schoolgate.events", "schoolgate.config.model", False, "is a leaf"),
    ("schoolgate.config.model", "schoolgate.classify.urls", False, "is a leaf"),
    ("schoolgate.classify.index", "mitmproxy.http", False, "are pure"),
    ("schoolgate.identify.maps", "schoolgate.store", False, "are pure"),
    ("schoolgate.policy", "yaml", False, "are pure"),
    ("schoolgate.classify.library", "schoolgate.config.yamltree", False, "are pure"),
    ("schoolgate.policy.blockpage", "urllib.request", False, "are pure"),
    ("schoolgate.reports.daily", "schoolgate.gateway.service", False, "never import gateway"),
    ("schoolgate.check.run", "schoolgate.cli.common", False, "never import gateway"),
    ("schoolgate.gateway.service", "schoolgate.cli.reports", False, "nothing imports the CLI"),
    ("schoolgate.store", "schoolgate.alerts", False, "layer 3 imports layer 4"),
    ("schoolgate.classify", "schoolgate.policy", False, "layer 1 imports layer 2"),
    ("schoolgate.gateway.rules", "schoolgate.store", True, "inside a function"),
])
def test_each_rule_catches_a_breach(source, target, in_function, rule):
    (found,) = [b for b in breaches([Import(source, target, 7, in_function)]) if rule in b]
    assert found.startswith(f"{source}:7 -> {target}")


def test_allowed_imports_are_not_breaches():
    allowed = [Import("schoolgate.policy", "schoolgate.classify", 1, False),
               Import("schoolgate.cli.run", "schoolgate.gateway.bootstrap", 1, False),
               Import("schoolgate.classify.index", "re", 1, True),
               Import("schoolgate.cli.requests", "schoolgate.cli.policy", 1, False)]
    assert breaches(allowed) == []


def test_a_cycle_is_found():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _components(edges) == [["a", "b", "c"]]
