"""Go tools the tests run for real (Alertmanager, promtool), built once per machine from the Go module proxy.

One build-and-cache routine for all of them: a binary lives in ``<cache root>/bin`` with a marker naming its version,
is built in a private staging dir and renamed into place only when complete (so a concurrent or interrupted build
never leaves half a tool), and every tool shares one GOPATH beside the cache roots (``~/.cache/adaptlog/gopath``),
so module downloads are cached once and CI keeps one dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BUILD_TIMEOUT_S = 1800.0
_MARKER = ".adaptlog-build"


def cache_root(env_var: str, name: str, version: str) -> Path:
    """``$env_var`` when set, else ``~/.cache/adaptlog/<name>-<version>``."""
    override = os.environ.get(env_var)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "adaptlog" / f"{name}-{version}"


def go_env(root: Path) -> dict[str, str]:
    return os.environ | {"GOPATH": str(root.parent / "gopath"), "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}


def run_go(command: list[str], cwd: Path, env: dict[str, str], what: str, error: type[Exception]) -> str:
    """Run a go command; ``error`` with the output's tail when it fails or outlasts ``BUILD_TIMEOUT_S``."""
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what} did not finish in {BUILD_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise error(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def cached_binary(
    root: Path,
    name: str,
    version: str,
    build: Callable[[str, Path, dict[str, str]], None],
    error: type[Exception],
) -> Path:
    """``root/bin/name`` when the cached build is of ``version``; else ``build(go, staging, env)`` (which leaves the
    binary at ``staging/bin/name``) runs first, and its result is moved into place whole."""
    target = root / "bin" / name
    marker = root / "bin" / _MARKER
    if target.is_file() and marker.is_file() and marker.read_text().strip() == version:
        return target
    go = shutil.which("go")
    if go is None:
        raise error(f"go is not on PATH (needed once to build {name} from the module proxy)")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        build(go, staging, go_env(root))
        (staging / "bin" / _MARKER).write_text(version + "\n")
        (staging / "bin").chmod(0o755)
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


def build_command(argv: list[str], module: str, name: str, version: str, binary: Callable[[], Path]) -> int:
    """``python -m <module> build``: build (or find) the tool and say where and how long it took."""
    if argv != ["build"]:
        print(f"usage: python -m {module} build", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        path = binary()
    except RuntimeError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    print(f"{name} {version}: {path} ({time.monotonic() - started:.1f} s)")
    return 0
