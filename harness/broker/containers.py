"""Apache Kafka 4.x in Docker through testcontainers, used when a Docker daemon answers.

testcontainers-python's KafkaContainer drives the Confluent image's entrypoint scripts, so the
``apache/kafka`` image does not work with it; ``confluentinc/cp-kafka`` 8.1.x *is* Apache Kafka 4.1
packaged by Confluent. Override the image with ``ADAPTLOG_KAFKA_IMAGE``.
"""

from __future__ import annotations

import contextlib
import os

from harness.broker.readiness import round_trip, run_sync
from harness.broker.running import BrokerUnavailable, RunningBroker

IMAGE_ENV = "ADAPTLOG_KAFKA_IMAGE"
DEFAULT_IMAGE = "confluentinc/cp-kafka:8.1.0"


def docker_answers(timeout: float = 3.0) -> bool:
    """True when a Docker daemon answers a ping -- the same client testcontainers would use."""
    try:
        import docker  # comes with testcontainers; absent means this path is off anyway
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=int(max(timeout, 1)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, refused, bad DOCKER_HOST, timeout: every one means "no daemon"
        return False


def start_container_broker(timeout: float = 180.0) -> RunningBroker:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        try:
            from testcontainers.kafka import KafkaContainer  # testcontainers < 4.10 layout
        except ImportError as exc:
            raise BrokerUnavailable("testcontainers[kafka] is not installed") from exc

    image = os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)
    container = KafkaContainer(image).with_kraft()
    try:
        container.start(timeout=int(timeout))
        bootstrap = container.get_bootstrap_server()
        run_sync(round_trip(bootstrap, idempotent=True, timeout=timeout))
    except Exception as exc:  # docker and testcontainers raise their own zoo; the reason is what matters
        with contextlib.suppress(Exception):  # it may have failed before a container existed
            container.stop()
        raise BrokerUnavailable(f"testcontainers could not start {image}: {exc!r}") from exc
    return RunningBroker(
        bootstrap=bootstrap,
        kind=f"{image} (testcontainers, KRaft)",
        supports_idempotence=True,
        _stop=container.stop,
    )
