"""A real ``promtool`` for the tests (rule files checked and unit-tested as Prometheus itself reads them), built from
the Go module proxy and cached like Alertmanager (tests/alertmanager/harness.py).

Build (once per machine, several minutes on 2 cores; reused while ``VERSION`` is unchanged)::

    GOBIN=<staging> go install github.com/prometheus/prometheus/cmd/promtool@vVERSION

(its GOPATH shared with the Alertmanager build).

Prometheus tags its Go module as v0.<minor><patch>.x (v0.316.0 is Prometheus 3.16.0). promtool embeds no web UI, so
unlike Alertmanager a plain ``go install`` works. The binary lands in ``~/.cache/adaptlog/promtool-VERSION/bin`` (or
``$ADAPTLOG_PROMTOOL_CACHE``), renamed into place only when complete.

``python -m tests.prometheus_tools build`` builds (or finds) it and prints where and how long it took.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VERSION = "0.316.0"
PACKAGE = "github.com/prometheus/prometheus/cmd/promtool"
CACHE_ENV = "ADAPTLOG_PROMTOOL_CACHE"
REQUIRE_ENV = "ADAPTLOG_REQUIRE_PROMTOOL"
_BUILD_TIMEOUT_S = 1800.0
_MARKER = ".adaptlog-build"


class PromtoolUnavailable(RuntimeError):
    """promtool cannot be built here; the message says why."""


def cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "adaptlog" / f"promtool-{VERSION}"


def binary() -> Path:
    """The cached promtool; built first when missing (needs ``go`` and the Go module proxy)."""
    root = cache_dir()
    target = root / "bin" / "promtool"
    marker = root / "bin" / _MARKER
    if target.is_file() and marker.is_file() and marker.read_text().strip() == VERSION:
        return target
    go = shutil.which("go")
    if go is None:
        raise PromtoolUnavailable("go is not on PATH (needed once to build promtool from the module proxy)")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    # The GOPATH beside the binaries' dirs, shared with the Alertmanager build: one module cache for CI to keep.
    env = os.environ | {
        "GOPATH": str(root.parent / "gopath"),
        "GOBIN": str(staging / "bin"),
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=mod",
    }
    try:
        try:
            done = subprocess.run(
                [go, "install", f"{PACKAGE}@v{VERSION}"],
                cwd=staging,
                env=env,
                capture_output=True,
                text=True,
                timeout=_BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PromtoolUnavailable(f"go install promtool did not finish in {_BUILD_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
            raise PromtoolUnavailable(f"go install {PACKAGE}@v{VERSION} failed (exit {done.returncode}):\n{tail}")
        (staging / "bin" / _MARKER).write_text(VERSION + "\n")
        if (root / "bin").exists():
            shutil.rmtree(root / "bin")
        try:
            (staging / "bin").rename(root / "bin")
        except OSError:
            if not marker.is_file():  # lost a race only if the winner left a complete dir
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary()), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def main(argv: list[str]) -> int:
    if argv != ["build"]:
        print("usage: python -m tests.prometheus_tools build", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        path = binary()
    except PromtoolUnavailable as exc:
        print(f"promtool: {exc}", file=sys.stderr)
        return 1
    print(f"promtool {VERSION}: {path} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
