"""Apache Kafka 4.x, single node in KRaft mode, from jars Maven resolves -- no Docker, no Kafka download.

The jar set is ``kafka-runtime/pom.xml`` next to this file, copied once into a cache dir
(``~/.cache/adaptlog/kafka-<version>/libs``, or ``$ADAPTLOG_KAFKA_CACHE``) and reused while the pom is
unchanged. Each start gets free loopback ports and a temp dir (data + ``logs/server.log``) that
``stop()`` removes.

Usage::

    with apache_kafka_broker() as broker:   # a RunningBroker
        run_benchmark(broker.bootstrap)
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.broker.readiness import round_trip, run_sync
from harness.broker.running import BrokerUnavailable, RunningBroker
from stream.embedded_broker import LOOPBACK, kafka_answers, log_tail

RUNTIME_DIR = Path(__file__).with_name("kafka-runtime")
POM = RUNTIME_DIR / "pom.xml"
LOG4J_CONFIG = RUNTIME_DIR / "log4j2.properties"
CACHE_ENV = "ADAPTLOG_KAFKA_CACHE"

# Written into the libs dir after a complete copy; holds the pom's hash so a pom change re-resolves.
_MARKER = ".adaptlog-pom-sha256"
_MVN_TIMEOUT_S = 600.0
_BIND_ATTEMPTS = 3

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data_dir}
num.partitions=1
# One node: every internal topic has to live with replication factor 1.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# One offsets partition instead of 50: the group coordinator is ready sooner, and tests never need more.
offsets.topic.num.partitions=1
# Tests start consumer groups one after another; the default 3 s delay would be pure waiting.
group.initial.rebalance.delay.ms=0
"""


# A second listener for the OAUTHBEARER test (start_apache_kafka(oauthbearer=True)): SASL/OAUTHBEARER with Kafka's
# own unsecured JWS validator (an unsigned token with "sub" and "exp"), which is what proves a client sends the token
# it reads, without an identity provider.
_OAUTHBEARER_PROPERTIES = """\
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port},SASL_PLAINTEXT://{host}:{sasl_port}
advertised.listeners=PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{host}:{sasl_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
listener.name.sasl_plaintext.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=\
org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";
"""


@dataclass(frozen=True)
class _Ports:
    port: int
    controller_port: int
    sasl_port: int = 0  # the OAUTHBEARER listener's, when asked for


def kafka_version() -> str:
    """The broker version, read from the pom so that file is the one place to bump it."""
    root = ET.parse(POM).getroot()
    node = root.find("{http://maven.apache.org/POM/4.0.0}properties/{http://maven.apache.org/POM/4.0.0}kafka.version")
    if node is None or not node.text:
        raise BrokerUnavailable(f"{POM} has no <kafka.version> property")
    return node.text.strip()


def cached_libs_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "adaptlog" / f"kafka-{kafka_version()}" / "libs"


def resolve_jars(libs: Path | None = None) -> Path:
    """The dir holding the broker's jars; runs Maven only when the cache is missing or from another pom.

    A dir without our marker is someone else's: used as is when it holds the right kafka jar, never replaced.
    """
    libs = libs or cached_libs_dir()
    wanted = hashlib.sha256(POM.read_bytes()).hexdigest()
    marker = libs / _MARKER
    if marker.is_file() and marker.read_text().strip() == wanted:
        return libs
    if libs.exists() and not marker.is_file():
        # Not ours (e.g. ADAPTLOG_KAFKA_CACHE=/opt/kafka/libs, or jars copied in by hand): use it if it holds
        # the right Kafka, never delete it. Without log4j-slf4j-impl such a set just writes no server.log.
        if (libs / f"kafka_2.13-{kafka_version()}.jar").is_file():
            return libs
        raise BrokerUnavailable(
            f"{libs} exists but holds no kafka_2.13-{kafka_version()}.jar and was not made by this harness; "
            f"remove it or point {CACHE_ENV} elsewhere"
        )
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable("mvn is not on PATH (needed once to fetch the Apache Kafka jars)")

    # Copy into a private sibling and rename into place, so a parallel run or a killed run never
    # leaves a half-filled libs dir that would then pass for complete.
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".libs-", dir=libs.parent))
    try:
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BrokerUnavailable(f"mvn did not finish in {_MVN_TIMEOUT_S:.0f}s resolving {POM}") from exc
        if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            output = (done.stdout + done.stderr).strip().splitlines()[-20:]
            raise BrokerUnavailable(f"mvn could not resolve {POM} (exit {done.returncode}):\n" + "\n".join(output))
        (staging / _MARKER).write_text(wanted + "\n")
        staging.chmod(0o755)  # mkdtemp makes it 0700; the cache may be shared (CI cache, other users)
        if libs.exists():
            shutil.rmtree(libs)  # ours (it has the marker) but made from another version of the pom
        try:
            staging.rename(libs)
        except OSError:
            if not (libs / _MARKER).is_file():  # lost a race only if the winner left a complete dir
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return libs


def start_apache_kafka(timeout: float = 90.0, heap: str = "512m", *, oauthbearer: bool = False) -> RunningBroker:
    """Start a single-node KRaft broker; return once a produce/consume/commit round trip works.

    ``timeout`` covers the JVM start and readiness, not a first Maven resolve. Raises BrokerUnavailable
    (with the tail of the broker's log) when java/mvn are missing or the broker does not come up.
    """
    java = shutil.which("java")
    if java is None:
        raise BrokerUnavailable("java is not on PATH (Apache Kafka needs a JRE 17+)")
    version = kafka_version()
    libs = resolve_jars()
    failure = ""
    for _ in range(_BIND_ATTEMPTS):
        ports = _free_ports(oauthbearer)
        workdir = Path(tempfile.mkdtemp(prefix="adaptlog-kafka-"))
        try:
            process = _launch(java, libs, workdir, ports, heap)
        except BrokerUnavailable:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        broker = RunningBroker(
            bootstrap=f"{LOOPBACK}:{ports.port}",
            kind=f"apache-kafka {version} (local KRaft)",
            supports_idempotence=True,
            pid=process.pid,
            _stop=functools.partial(_stop, process, workdir),
            oauthbearer_bootstrap=f"{LOOPBACK}:{ports.sasl_port}" if oauthbearer else None,
        )
        failure = _wait_ready(process, broker.bootstrap, workdir, timeout)
        if not failure:
            return broker
        broker.stop()
        if "Address already in use" not in failure:
            break  # a lost port race is worth a retry; anything else is not
    raise BrokerUnavailable(f"Apache Kafka {version} did not start: {failure}")


@contextlib.contextmanager
def apache_kafka_broker(timeout: float = 90.0, heap: str = "512m") -> Iterator[RunningBroker]:
    broker = start_apache_kafka(timeout=timeout, heap=heap)
    try:
        yield broker
    finally:
        broker.stop()


def _launch(java: str, libs: Path, workdir: Path, ports: _Ports, heap: str) -> subprocess.Popen[bytes]:
    logs = workdir / "logs"
    logs.mkdir()
    properties = workdir / "server.properties"
    text = _SERVER_PROPERTIES.format(
        host=LOOPBACK, port=ports.port, controller_port=ports.controller_port, data_dir=workdir / "data"
    )
    if ports.sasl_port:  # later keys win in a Java properties file
        text += _OAUTHBEARER_PROPERTIES.format(
            host=LOOPBACK, port=ports.port, controller_port=ports.controller_port, sasl_port=ports.sasl_port
        )
    properties.write_text(text)
    common = [
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-Djava.awt.headless=true",
        "-cp",
        f"{libs}/*",  # java expands the wildcard itself; no shell involved
    ]
    # The formatter is a short-lived JVM: C1 only starts it faster and it does no real work. It logs to
    # its own dir so its config dump does not bury the server's lines at the tail of server.log.
    format_logs = f"-Dkafka.logs.dir={logs / 'format'}"
    format_cmd = [java, "-XX:TieredStopAtLevel=1", format_logs, *common, "kafka.tools.StorageTool", "format"]
    format_cmd += ["-t", _cluster_id(), "-c", str(properties)]
    formatted = subprocess.run(format_cmd, capture_output=True, text=True, timeout=60, check=False)
    if formatted.returncode != 0:
        output = (formatted.stdout + formatted.stderr).strip()[-2000:]
        raise BrokerUnavailable(f"kafka-storage format failed (exit {formatted.returncode}): {output}")

    server_cmd = [java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", f"-Dkafka.logs.dir={logs}", *common]
    server_cmd += ["kafka.Kafka", str(properties)]
    with open(logs / "stdout.log", "wb") as stdout:
        return subprocess.Popen(
            server_cmd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent_hook(),
        )


def _wait_ready(process: subprocess.Popen[bytes], bootstrap: str, workdir: Path, timeout: float) -> str:
    """Empty string once usable; otherwise why not, with the tail of the broker's logs."""
    deadline = time.monotonic() + timeout
    host, port = bootstrap.rsplit(":", 1)
    # Cheap poll first (sub-second granularity, notices a crashed JVM at once), then the real round trip.
    while not kafka_answers(host, int(port)):
        if process.poll() is not None:
            return f"the JVM exited with code {process.returncode}.\n{_logs_tail(workdir)}"
        if time.monotonic() > deadline:
            return f"no Kafka answer on {bootstrap} within {timeout:.0f}s.\n{_logs_tail(workdir)}"
        time.sleep(0.1)
    try:
        run_sync(round_trip(bootstrap, idempotent=True, timeout=max(deadline - time.monotonic(), 5.0)))
    except TimeoutError as exc:
        return f"{exc}\n{_logs_tail(workdir)}"
    return ""


def _logs_tail(workdir: Path) -> str:
    logs = workdir / "logs"
    # stdout first: a JVM that dies before logging (bad flag, no memory) only says why there.
    return (
        f"--- stdout.log (tail) ---\n{log_tail(logs / 'stdout.log', lines=10)}\n"
        f"--- server.log (tail) ---\n{log_tail(logs / 'server.log')}"
    )


def _stop(process: subprocess.Popen[bytes], workdir: Path, timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: Kafka's controlled shutdown
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def _free_ports(sasl: bool = False) -> _Ports:
    # All sockets open at once, so the ports differ.
    with socket.socket() as first, socket.socket() as second, socket.socket() as third:
        for sock in (first, second, third):
            sock.bind((LOOPBACK, 0))
        sasl_port = third.getsockname()[1] if sasl else 0
        return _Ports(port=first.getsockname()[1], controller_port=second.getsockname()[1], sasl_port=sasl_port)


def _cluster_id() -> str:
    """What ``StorageTool random-uuid`` prints (URL-safe base64 of 16 random bytes), without a JVM start."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that would parse as a CLI flag
            return text


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that has Linux SIGTERM the JVM when this process dies, so a killed pytest leaves no broker.

    PDEATHSIG fires when the *thread* that forked exits, so it is only armed from the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook
