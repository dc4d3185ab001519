"""Operations surface the Helm chart relies on: /healthz catches a wedged event loop, /readyz waits for the work to
start, `adaptlog health` is the container probe, topic specs follow the settings. On a broker (`adaptlog topics`, a
stream worker's /metrics): tests/broker/test_ops_broker.py."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from harness.streaming import free_port, ops_get
from stream.cli import main
from stream.ops_http import OpsServer, check_health
from stream.pipeline.kafka_clients import all_topic_specs
from stream.settings import load_settings


def test_healthz_answers_while_the_loop_runs_and_fails_while_it_is_blocked() -> None:
    async def scenario() -> tuple[tuple[bool, str], tuple[bool, str], tuple[int, str], tuple[int, str]]:
        registry = CollectorRegistry()
        Counter("adaptlog_test_things", "things", registry=registry).inc(3)
        server = OpsServer(0, registry, probe_timeout_s=0.3, host="127.0.0.1")
        try:
            healthy = await asyncio.to_thread(check_health, server.port)
            metrics = await asyncio.to_thread(ops_get, server.port, "/metrics")
            missing = await asyncio.to_thread(ops_get, server.port, "/nothing")
            result: list[tuple[bool, str]] = []
            probe = threading.Thread(target=lambda: result.append(check_health(server.port)))
            probe.start()
            time.sleep(1.0)  # blocks the loop: what a liveness probe must notice
            probe.join()
            return healthy, result[0], metrics, missing
        finally:
            server.close()

    healthy, wedged, metrics, missing = asyncio.run(scenario())
    assert healthy == (True, "ok")
    assert wedged[0] is False and "not responding" in wedged[1]
    assert metrics[0] == 200 and "adaptlog_test_things_total 3.0" in metrics[1]
    assert missing[0] == 404


def test_readyz_waits_for_the_process_to_say_it_is_ready_and_for_a_live_loop() -> None:
    async def scenario() -> list[tuple[bool, str]]:
        server = OpsServer(0, CollectorRegistry(), probe_timeout_s=0.3, host="127.0.0.1")
        ready = threading.Event()
        try:
            seen = [await asyncio.to_thread(check_health, server.port, 5, "/readyz")]  # nothing said yet
            server.watch_readiness(ready.is_set)
            seen.append(await asyncio.to_thread(check_health, server.port, 5, "/readyz"))
            ready.set()
            seen.append(await asyncio.to_thread(check_health, server.port, 5, "/readyz"))
            probe = threading.Thread(target=lambda: seen.append(check_health(server.port, 5, "/readyz")))
            probe.start()
            time.sleep(1.0)  # a wedged loop is not ready either
            probe.join()
            return seen
        finally:
            server.close()

    before, starting, ready, wedged = asyncio.run(scenario())
    assert before[0] is False and "starting" in before[1]
    assert starting[0] is False and "starting" in starting[1]
    assert ready == (True, "ready")
    assert wedged[0] is False and "not responding" in wedged[1]


def test_health_command_reports_an_unreachable_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--port", str(free_port())]) == 1
    assert "no answer on port" in capsys.readouterr().err


def test_health_command_needs_a_port(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("ADAPTLOG_METRICS_PORT", "ADAPTLOG_INFERENCE__METRICS_PORT", "ADAPTLOG_TRAINER__METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert main(["health"]) == 2
    assert "metrics_port" in capsys.readouterr().err


def test_topic_specs_follow_partition_and_replication_settings() -> None:
    settings = load_settings(internal_partitions=6, replication_factor=3, trainer={"feedback_topics": ["labels-2"]})
    specs = {spec.name: spec for spec in all_topic_specs(settings)}
    topics = settings.topics
    expected = {
        topics.logs,
        topics.lines,
        topics.sessions,
        topics.state,
        topics.windows,
        topics.alerts,
        topics.verdicts,
        topics.feedback,
        topics.model_updates,
        topics.deadletter,
        "labels-2",
    }
    assert set(specs) == expected
    assert {(s.num_partitions, s.replication_factor) for s in specs.values()} == {(6, 3)}
    assert specs[topics.state].topic_configs["cleanup.policy"] == "compact"
    assert "retention.ms" in specs[topics.lines].topic_configs
