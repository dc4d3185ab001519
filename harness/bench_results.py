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


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time a live process has used so far (Linux /proc), None when it cannot be read."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15
