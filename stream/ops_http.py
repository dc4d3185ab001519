"""The operations endpoint of a long-running adaptlog process (`adaptlog run`, `adaptlog infer`, `adaptlog-train
serve`), on ``metrics_port``:

- ``GET /metrics``: the process's Prometheus registry.
- ``GET /healthz``: 200 when the process's asyncio loop runs a no-op within ``probe_timeout_s``, else 503. The
  HTTP server has its own thread, so answering at all proves nothing; a wedged loop (a blocking call on it, a
  deadlock) is what a liveness probe must catch, and model work and training run off the loop, so a healthy
  process answers in milliseconds even while it trains.
- ``GET /readyz``: 200 once the process does its work (``watch_readiness``: a worker has loaded its model and
  joined its consumer groups) and its loop is alive, else 503. A rolling update waits on it, so a new version
  that cannot load its model never replaces a serving one; benchmarks wait on it to leave start-up out.

``adaptlog health`` (the container's HEALTHCHECK) asks ``/healthz`` on the local port.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.settings import Settings

log = logging.getLogger(__name__)


def adaptlog_version() -> str:
    try:
        return package_version("adaptlog")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class BuildInfoCollector(Collector):
    """``adaptlog_build_info{version, python, role} 1``: which build each pod runs (join it onto other series with
    ``* on(instance) group_left(version)``), the Prometheus convention for versions."""

    def __init__(self, role: str) -> None:
        self.labels = [adaptlog_version(), platform.python_version(), role]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily("adaptlog_build_info", "the running build", labels=["version", "python", "role"])
        info.add_metric(self.labels, 1)
        yield info


def ops_port(settings: Settings, role_port: int = 0) -> int:
    """The port a process serves on: its role's own setting when given, else the process-wide ``metrics_port``."""
    return role_port or settings.metrics_port


class OpsServer:
    """/metrics and /healthz over HTTP on a daemon thread, watching the asyncio loop it was started from."""

    def __init__(self, port: int, registry: CollectorRegistry, *, probe_timeout_s: float = 5.0, host: str = "") -> None:
        self.registry = registry
        self.loop = asyncio.get_running_loop()
        self.probe_timeout_s = probe_timeout_s
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._ready: Callable[[], bool] = lambda: False  # until the process says how to tell (watch_readiness)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="adaptlog-ops", daemon=True)
        self._thread.start()
        log.info("operations endpoint on port %d (/metrics, /healthz, /readyz)", self.port)

    def watch_readiness(self, ready: Callable[[], bool]) -> None:
        """How /readyz tells the process is ready; called from the HTTP thread, so it must only read a flag."""
        self._ready = ready

    def is_ready(self) -> tuple[bool, str]:
        if not self._ready():
            return False, "starting"
        if not self.loop_is_alive():
            return False, "event loop not responding"
        return True, "ready"

    def loop_is_alive(self) -> bool:
        if self.loop.is_closed():
            return False
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(timeout=self.probe_timeout_s)
        except (FutureTimeout, RuntimeError):
            return False
        return True

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    alive = server.loop_is_alive()
                    self._reply(200 if alive else 503, b"ok\n" if alive else b"event loop not responding\n")
                elif self.path == "/readyz":
                    ready, why = server.is_ready()
                    self._reply(200 if ready else 503, f"{why}\n".encode())
                else:
                    self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

            def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: not worth a line
                pass

        return Handler


def check_health(port: int, timeout_s: float = 10.0, path: str = "/healthz") -> tuple[bool, str]:
    """Ask a local process's /healthz (or /readyz): (healthy, what it said or why it could not be asked)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as response:
            return response.status == 200, response.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read().decode(errors='replace').strip()}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"no answer on port {port}: {exc}"
