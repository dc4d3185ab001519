"""Tansu (``stream.embedded_broker``) as a test broker: the last resort, because it is not Apache Kafka.

It rejects idempotent producers, so ``supports_idempotence`` is False; tests pass that through to aiokafka.
"""

from __future__ import annotations

from harness.broker.readiness import round_trip, run_sync
from harness.broker.running import BrokerUnavailable, RunningBroker
from stream.embedded_broker import EmbeddedBrokerError, start_tansu


def start_tansu_broker(timeout: float = 30.0) -> RunningBroker:
    try:
        embedded = start_tansu(timeout=timeout)
    except EmbeddedBrokerError as exc:
        raise BrokerUnavailable(str(exc)) from exc
    broker = RunningBroker(
        bootstrap=embedded.bootstrap,
        kind=embedded.kind,
        supports_idempotence=embedded.supports_idempotence,
        _stop=embedded.stop,
    )
    try:
        # Produce and read back, not just an open port. No consumer group: Tansu has no coordinator
        # warm-up to wait out, and it holds every first JoinGroup ~5 s, which would only slow each session.
        run_sync(round_trip(broker.bootstrap, idempotent=False, timeout=timeout, group=False))
    except TimeoutError as exc:
        broker.stop()
        raise BrokerUnavailable(f"Tansu started but is not usable: {exc}") from exc
    return broker
