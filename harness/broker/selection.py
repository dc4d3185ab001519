"""Which broker the tests get, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` set: that broker, as is ("external"; assumed to be real Kafka).
2. A Docker daemon answers: Apache Kafka 4.x via testcontainers.
3. ``java`` and ``mvn`` present: Apache Kafka 4.x as a local KRaft process (``apache_kafka``).
4. Otherwise Tansu, with a warning -- unless ``ADAPTLOG_REQUIRE_APACHE_KAFKA=1``, which makes that an error.

``ADAPTLOG_TEST_BROKER`` = ``auto`` (default) | ``external`` | ``testcontainers`` | ``apache`` | ``tansu``
forces one way and makes its failure an error instead of a fallback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from harness.broker.apache_kafka import start_apache_kafka
from harness.broker.containers import docker_answers, start_container_broker
from harness.broker.readiness import reachable, run_sync
from harness.broker.running import BrokerUnavailable, RunningBroker
from harness.broker.tansu import start_tansu_broker

FORCE_ENV = "ADAPTLOG_TEST_BROKER"
REQUIRE_APACHE_ENV = "ADAPTLOG_REQUIRE_APACHE_KAFKA"
EXTERNAL_ENV = "KAFKA_BOOTSTRAP_SERVERS"

Starter = Callable[[], RunningBroker]


@dataclass
class Selection:
    broker: RunningBroker
    # Why earlier choices were passed over, for the pytest summary. Non-empty on a Tansu fallback.
    passed_over: list[str] = field(default_factory=list)

    @property
    def fell_back_to_tansu(self) -> bool:
        return self.broker.kind.startswith("tansu") and bool(self.passed_over)


def start_test_broker(env: Mapping[str, str] = os.environ) -> Selection:
    """Start (or attach to) the broker the environment asks for; BrokerUnavailable says why none is usable."""
    forced = env.get(FORCE_ENV, "auto").strip().lower() or "auto"
    require_apache = env.get(REQUIRE_APACHE_ENV, "") == "1"
    starters: dict[str, Starter] = {
        "external": partial(_external, env.get(EXTERNAL_ENV, "")),
        "testcontainers": start_container_broker,
        "apache": start_apache_kafka,
        "tansu": start_tansu_broker,
    }
    if forced != "auto":
        if forced not in starters:
            raise BrokerUnavailable(f"{FORCE_ENV}={forced!r}: expected auto or one of {', '.join(starters)}")
        if forced == "tansu" and require_apache:
            raise BrokerUnavailable(f"{FORCE_ENV}=tansu contradicts {REQUIRE_APACHE_ENV}=1")
        return Selection(starters[forced]())

    if env.get(EXTERNAL_ENV):
        return Selection(starters["external"]())

    passed_over: list[str] = []
    if docker_answers():
        try:
            return Selection(starters["testcontainers"]())
        except BrokerUnavailable as exc:
            passed_over.append(f"testcontainers: {exc}")
    else:
        passed_over.append("testcontainers: no Docker daemon answers")

    try:
        return Selection(starters["apache"](), passed_over)
    except BrokerUnavailable as exc:
        passed_over.append(f"local Apache Kafka: {exc}")

    reasons = "\n  ".join(passed_over)
    if require_apache:
        raise BrokerUnavailable(f"{REQUIRE_APACHE_ENV}=1 but no Apache Kafka could be started:\n  {reasons}")
    return Selection(starters["tansu"](), passed_over)


def _external(bootstrap: str) -> RunningBroker:
    if not bootstrap:
        raise BrokerUnavailable(f"{FORCE_ENV}=external needs {EXTERNAL_ENV}")
    try:
        run_sync(reachable(bootstrap, timeout=15.0))
    except Exception as exc:  # unreachable in any of aiokafka's ways: report, don't classify
        raise BrokerUnavailable(f"{EXTERNAL_ENV}={bootstrap} does not answer: {exc!r}") from exc
    return RunningBroker(bootstrap=bootstrap, kind="external")


@contextmanager
def bench_broker() -> Iterator[RunningBroker]:
    """The broker a benchmark runs on (``start_test_broker``: a local Apache Kafka, or the one the environment
    names), stopped when the block ends, whatever it raised."""
    broker = start_test_broker().broker
    try:
        yield broker
    finally:
        broker.stop()
