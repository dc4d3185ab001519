"""A real Prometheus Alertmanager for the tests, built from the Go module proxy and cached, run on loopback.

Build (once per machine, ~3 min on 2 cores; reused while ``VERSION`` is unchanged)::

    go mod download github.com/prometheus/alertmanager@VERSION     (into a cached GOPATH)
    copy the module, add placeholder web UI files, go build ./cmd/alertmanager

The module zip on the proxy lacks the web UI's built assets (``ui/app/dist`` is made by npm in Alertmanager's own
release build, and ``//go:embed app/dist`` fails without it), so a plain ``go install .../cmd/alertmanager@VERSION``
stops with "pattern app/dist: no matching files found". The harness builds from a copy with one placeholder page
per UI: the API, the dispatcher, grouping and the alert store are Alertmanager's own code, only the browser UI is a
stub. The binary lands in ``~/.cache/adaptlog/alertmanager-VERSION/bin`` (or ``$ADAPTLOG_ALERTMANAGER_CACHE``),
renamed into place only when complete, like the Kafka jars (harness/broker/apache_kafka.py).

Usage::

    with running_alertmanager() as am:      # a RunningAlertmanager
        post(am.url + "/api/v2/alerts", ...)

``python -m harness.alertmanager.service build`` builds (or finds) the binary and prints where and how long it took.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.broker.apache_kafka import _die_with_parent_hook
from harness.go_tools import build_command, cache_root, cached_binary, run_go

VERSION = "0.35.0"
MODULE = "github.com/prometheus/alertmanager"
CACHE_ENV = "ADAPTLOG_ALERTMANAGER_CACHE"
REQUIRE_ENV = "ADAPTLOG_REQUIRE_ALERTMANAGER"
LOOPBACK = "127.0.0.1"
_PLACEHOLDER = "<!doctype html><title>Alertmanager</title><p>Web UI not built (adaptlog test build): use the API.\n"

# Group by alertname and system, as the README suggests operators route adaptlog's alerts. The receiver has no
# integrations: the tests read Alertmanager's own API, not what it would send.
CONFIG = """\
route:
  receiver: blackhole
  group_by: [alertname, system]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: blackhole
"""


class AlertmanagerUnavailable(RuntimeError):
    """Alertmanager cannot be built or started here; the message says why."""


@dataclass(frozen=True)
class RunningAlertmanager:
    url: str  # http://127.0.0.1:PORT
    version: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "alertmanager.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def cache_dir() -> Path:
    return cache_root(CACHE_ENV, "alertmanager", VERSION)


def binary() -> Path:
    """The cached alertmanager binary; builds it first when missing (needs ``go`` and the Go module proxy)."""
    return cached_binary(cache_dir(), "alertmanager", VERSION, _build, AlertmanagerUnavailable)


def _build(go: str, staging: Path, env: dict[str, str]) -> None:
    """Alertmanager's cmd with placeholder web UIs: the module ships without the built UI that its embed needs."""
    listing = _run([go, "mod", "download", "-json", f"{MODULE}@v{VERSION}"], staging, env, "go mod download")
    module_dir = Path(json.loads(listing)["Dir"])
    source = staging / "src"
    shutil.copytree(module_dir, source)  # the module cache is read-only; the UI placeholders go into a copy
    for dirpath, dirnames, filenames in os.walk(source):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            path.chmod(path.stat().st_mode | 0o200)
    for ui in ("elm", "mantine"):
        page = source / "ui" / "app" / "dist" / ui / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(_PLACEHOLDER)
    built = staging / "bin" / "alertmanager"
    ldflags = f"-X github.com/prometheus/common/version.Version={VERSION}"
    command = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(built), "./cmd/alertmanager"]
    _run(command, source, env, "go build ./cmd/alertmanager")


def _run(command: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    return run_go(command, cwd, env, what, AlertmanagerUnavailable)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def start_alertmanager(timeout_s: float = 30.0) -> RunningAlertmanager:
    """Start Alertmanager on a free loopback port with CONFIG; return once /-/ready answers 200."""
    executable = binary()
    workdir = Path(tempfile.mkdtemp(prefix="adaptlog-alertmanager-"))
    (workdir / "alertmanager.yml").write_text(CONFIG)
    port = _free_port()
    command = [
        str(executable),
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",  # no gossip: a single instance, no port besides the API
        "--log.level=info",
    ]
    with open(workdir / "alertmanager.log", "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent_hook()
        )
    running = RunningAlertmanager(f"http://{LOOPBACK}:{port}", VERSION, process, workdir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = running.log_tail()
            running.stop()
            raise AlertmanagerUnavailable(f"alertmanager exited with {process.returncode}:\n{tail}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(running.url + "/-/ready", timeout=2) as response,
        ):
            if response.status == 200:
                return running
        time.sleep(0.1)
    tail = running.log_tail()
    running.stop()
    raise AlertmanagerUnavailable(f"alertmanager was not ready on {running.url} within {timeout_s:.0f} s:\n{tail}")


@contextlib.contextmanager
def running_alertmanager(timeout_s: float = 30.0) -> Iterator[RunningAlertmanager]:
    am = start_alertmanager(timeout_s)
    try:
        yield am
    finally:
        am.stop()


def main(argv: list[str]) -> int:
    return build_command(argv, "harness.alertmanager.service", "alertmanager", VERSION, binary)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
