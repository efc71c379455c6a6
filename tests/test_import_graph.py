"""The shape of the package: adapters do not know each other, and packages import in one
direction only.

The adapters (the milter, the policy daemon, the flows follower) are the
edges of extrusion: each speaks to the engine and nothing else, and only the
whole service's entry point (`extrusion.service`) and the CLI put them side by
side. The graph is read from the source with `ast`, imports inside functions
included, so a lazy import cannot hide an edge.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "extrusion"
ADAPTERS = ("extrusion.milter", "extrusion.policyd", "extrusion.flows")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every extrusion module `path` imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("extrusion"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                anchor = package.split(".")
                if path.name != "__init__.py":
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("extrusion"):
                yield base
                # `from extrusion import config` imports the module extrusion.config.
                yield from (f"{base}.{a.name}" for a in node.names)


def _package(module: str) -> str:
    """extrusion.milter.daemon -> extrusion.milter; a top-level module is its own node."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _known(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        if "migrations" in path.parts:
            continue  # Alembic's generated scripts import only Alembic and SQLAlchemy
        name = _module_name(path)
        graph[name] = {m for m in _imports(path) if m != "extrusion" and _known(m)}
    return graph


def package_graph() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        src = _package(module)
        out.setdefault(src, set()).update(
            _package(t) for t in targets if _package(t) != src)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that starts and ends on the same node, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read() -> None:
    """The walk sees real edges, lazy ones included (else the other tests prove nothing)."""
    graph = module_graph()
    assert "extrusion.milter.daemon" in graph
    assert "extrusion.policyd.daemon" in graph["extrusion.service"]
    assert "extrusion.flows.service" in graph["extrusion.service"]  # imported in a function
    assert "extrusion.scoring" in package_graph()["extrusion.milter"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_no_adapter_imports_another(adapter: str) -> None:
    others = set(ADAPTERS) - {adapter}
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in module_graph().items() if _package(module) == adapter
        for target in targets if _package(target) in others
    )
    assert offending == []


def test_no_cycle_between_packages() -> None:
    assert find_cycle(package_graph()) is None


def test_no_cycle_between_modules() -> None:
    # A package's __init__ re-exporting its modules is no cycle of meaning: an edge from
    # a module to its own package's __init__ is left out, and so is a module naming
    # itself (a worker process imports its own module by name).
    graph = {m: {t for t in ts if t != m and not m.startswith(f"{t}.")}
             for m, ts in module_graph().items()}
    assert find_cycle(graph) is None


def test_find_cycle_finds_one() -> None:
    """The checker itself: a planted cycle is reported, a tree is not."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
