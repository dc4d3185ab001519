"""Kafka brokers for the tests: pick one (``selection``), start it, and hand back a :class:`RunningBroker`.

Modules, one per way of getting a broker:

* ``apache_kafka``  Apache Kafka 4.x in KRaft mode from jars resolved by Maven (needs java + mvn)
* ``containers``    the same, via testcontainers, when a Docker daemon answers
* ``tansu``         the embedded Tansu broker from ``stream.embedded_broker`` (last resort: not Apache Kafka)
* ``selection``     the order they are tried in, and the environment variables that steer it
* ``readiness``     the produce/consume/commit round trip that decides a broker is usable
"""

from harness.broker.running import BrokerUnavailable, RunningBroker

__all__ = ["BrokerUnavailable", "RunningBroker"]
