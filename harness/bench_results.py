"""What every benchmark writes: its result as indented JSON (and on stdout), and the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import orjson


def machine() -> dict[str, Any]:
    """The figures a reader needs to compare runs: CPUs and Python version."""
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` to ``path`` (folders made as needed) and print it."""
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    print(text.decode())
