"""Imports stay one-way: stream never imports trainer; window logic is pure; the parser knows no Kafka."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
        ("stream.windowing", {"aiokafka", "faust", "drain3", "torch", "stream.pipeline", "stream.parsing"}),
        ("stream.parsing", {"aiokafka", "faust", "torch", "stream.pipeline", "stream.windowing"}),
        # the model is shared by training and serving: no stream runtime in it
        ("stream.model", {"aiokafka", "faust", "drain3", "stream.pipeline", "stream.parsing", "stream.windowing"}),
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
