"""A real ``promtool`` for the tests (rule files checked and unit-tested as Prometheus itself reads them), built from
the Go module proxy and cached like Alertmanager (harness/alertmanager/service.py).

Build (once per machine, several minutes on 2 cores; reused while ``VERSION`` is unchanged)::

    GOBIN=<staging> go install github.com/prometheus/prometheus/cmd/promtool@vVERSION

(its GOPATH shared with the Alertmanager build).

Prometheus tags its Go module as v0.<minor><patch>.x (v0.316.0 is Prometheus 3.16.0). promtool embeds no web UI, so
unlike Alertmanager a plain ``go install`` works. The binary lands in ``~/.cache/adaptlog/promtool-VERSION/bin`` (or
``$ADAPTLOG_PROMTOOL_CACHE``), renamed into place only when complete.

``python -m harness.prometheus_tools build`` builds (or finds) it and prints where and how long it took.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.go_tools import build_command, cache_root, cached_binary, run_go

VERSION = "0.316.0"
PACKAGE = "github.com/prometheus/prometheus/cmd/promtool"
CACHE_ENV = "ADAPTLOG_PROMTOOL_CACHE"
REQUIRE_ENV = "ADAPTLOG_REQUIRE_PROMTOOL"


class PromtoolUnavailable(RuntimeError):
    """promtool cannot be built here; the message says why."""


def cache_dir() -> Path:
    return cache_root(CACHE_ENV, "promtool", VERSION)


def binary() -> Path:
    """The cached promtool; built first when missing (needs ``go`` and the Go module proxy)."""
    return cached_binary(cache_dir(), "promtool", VERSION, _build, PromtoolUnavailable)


def _build(go: str, staging: Path, env: dict[str, str]) -> None:
    # promtool embeds no web UI, so a plain ``go install`` into the staging dir's bin works
    run_go([go, "install", f"{PACKAGE}@v{VERSION}"], staging, env | {"GOBIN": str(staging / "bin")},
           f"go install {PACKAGE}@v{VERSION}", PromtoolUnavailable)  # fmt: skip


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary()), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def main(argv: list[str]) -> int:
    return build_command(argv, "harness.prometheus_tools", "promtool", VERSION, binary)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
