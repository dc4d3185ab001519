"""Imports stay one-way: stream never imports trainer; window logic is pure; the parser knows no Kafka."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("stream", {"trainer"}),
        ("stream.windowing", {"aiokafka", "drain3", "torch", "stream.pipeline", "stream.parsing"}),
        ("stream.parsing", {"aiokafka", "torch", "stream.pipeline", "stream.windowing"}),
        # the model is shared by training and serving: no stream runtime in it
        ("stream.model", {"aiokafka", "drain3", "stream.pipeline", "stream.parsing", "stream.windowing"}),
        # what tests and benchmarks share is in harness/; the shipped packages import none of it
        ("stream", {"harness", "tests", "bench"}),
        ("trainer", {"harness", "tests", "bench"}),
        ("harness", {"tests", "bench"}),
        ("bench", {"tests"}),
    ],
)
def test_package_does_not_import(package: str, forbidden: set[str]) -> None:
    offenders = {
        f"{path} imports {name}"
        for path, names in imported_modules(package).items()
        for name in names
        if any(name == bad or name.startswith(bad + ".") for bad in forbidden)
    }
    assert not offenders


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, every import counted: at module level, inside functions and
    under ``if TYPE_CHECKING`` (a cycle hidden there is still two modules that cannot be read apart)."""
    paths = sorted((ROOT / package.replace(".", "/")).rglob("*.py"))
    modules = {module_name(path) for path in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = module_name(path)
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # "from package import module" imports the module; "from module import name" the module itself
                named = {f"{node.module}.{alias.name}" for alias in node.names} & modules
                edges.update(named or ({node.module} & modules))
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for after in sorted(graph.get(node, ())):
            if after not in index:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in stack:
                low[node] = min(low[node], index[after])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_a_cycle_through_a_type_checking_import() -> None:
    # the shape logllm <-> logllm_fit had: a runtime import one way, a TYPE_CHECKING import back
    graph = {"m.detector": {"m.fit", "m.config"}, "m.fit": {"m.detector", "m.config"}, "m.config": set()}
    assert cycles(graph) == [["m.detector", "m.fit"]]
    assert cycles({"m.detector": {"m.fit"}, "m.fit": {"m.config"}, "m.config": set()}) == []


def test_no_import_cycle_inside_the_model_package() -> None:
    graph = import_graph("stream.model")
    assert "stream.model.training" in graph and "stream.model.logllm.fit" in graph  # the graph covers the packages
    assert cycles(graph) == []
