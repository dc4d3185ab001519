"""Operations surface the Helm chart relies on: /healthz catches a wedged event loop, /readyz waits for the work to
start, /metrics serves the stream worker's counts, `adaptlog health` is the container probe, `adaptlog topics`
creates every topic with its configs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry, Counter

from harness.streaming import DATA, free_port, settings_for, worker_env, write_systems_file
from stream.cli import main
from stream.ops_http import OpsServer, check_health
from stream.pipeline.kafka_clients import all_topic_specs, make_producer
from stream.replay import replay, replay_records
from stream.settings import Settings, load_settings


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_answers_while_the_loop_runs_and_fails_while_it_is_blocked() -> None:
    async def scenario() -> tuple[tuple[bool, str], tuple[bool, str], tuple[int, str], tuple[int, str]]:
        registry = CollectorRegistry()
        Counter("adaptlog_test_things", "things", registry=registry).inc(3)
        server = OpsServer(0, registry, probe_timeout_s=0.3, host="127.0.0.1")
        try:
            healthy = await asyncio.to_thread(check_health, server.port)
            metrics = await asyncio.to_thread(get, server.port, "/metrics")
            missing = await asyncio.to_thread(get, server.port, "/nothing")
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


@pytest.mark.broker
def test_topics_command_creates_every_topic_with_its_configs(
    kafka_broker, topic_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, internal_partitions=3)
    for name, value in worker_env(settings, Path(os.devnull), {}).items():
        if name != "ADAPTLOG_SYSTEMS_FILE":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("ADAPTLOG_INTERNAL_PARTITIONS", "3")
    assert main(["topics"]) == 0
    printed = capsys.readouterr().out
    assert f"{settings.topics.state}\tpartitions=3\treplication=1\t" in printed

    async def described() -> tuple[dict[str, int], str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            names = [spec.name for spec in all_topic_specs(settings)]
            partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
            resource = ConfigResource(ConfigResourceType.TOPIC, settings.topics.state)
            config = (await admin.describe_configs([resource]))[0]
            entries = {e[0]: e[1] for e in config.resources[0][4]}
            return partitions, entries["cleanup.policy"]
        finally:
            await admin.close()

    partitions, policy = asyncio.run(described())
    assert set(partitions) == {spec.name for spec in all_topic_specs(settings)}
    assert set(partitions.values()) == {3}
    assert policy == "compact"
    assert main(["topics"]) == 0  # again: existing topics are kept, not an error


@pytest.mark.broker
@pytest.mark.slow
def test_stream_worker_serves_health_and_its_counts(kafka_broker, topic_prefix: str, tmp_path: Path) -> None:
    settings: Settings = settings_for(kafka_broker.bootstrap, topic_prefix)
    systems = write_systems_file(tmp_path / "systems.yaml", {"bgl": settings.systems["bgl"]})
    port = free_port()
    env = worker_env(settings, systems, dict(os.environ)) | {"ADAPTLOG_METRICS_PORT": str(port)}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "stream", "run"], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while not check_health(port, timeout_s=2)[0]:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no /healthz answer in 60 s\n" + log.read_text()
            time.sleep(0.5)
        while not check_health(port, timeout_s=2, path="/readyz")[0]:  # every stage has joined its group
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "not ready in 60 s\n" + log.read_text()
            time.sleep(0.5)
        records = replay_records(DATA / "bgl" / "BGL_2k.log", "bgl", settings.systems["bgl"].line_format("bgl"))
        sent = asyncio.run(replay(settings, records, "bgl"))
        sent += asyncio.run(send_bad_json(settings))
        wanted = (
            f'adaptlog_stream_records_in_total{{stage="ingest"}} {float(sent)}',
            # lines go out in batches, counted as each is sent (a topic's line appears once one is): wait for them too
            f'adaptlog_stream_records_out_total{{stage="ingest",topic="{settings.topics.lines}"}}',
            # the bad record, by the category of its reason (never the reason's free text)
            'adaptlog_stream_dead_letters_total{reason="json",stage="decode"} 1.0',
        )
        # caught up: the ingest group's partition (the key's) is at its end
        ingest_lag = f'adaptlog_stream_consumer_lag{{group="{settings.group_prefix}-ingest",partition="'
        caught_up = f'",topic="{settings.topics.logs}"}} 0.0'

        deadline = time.monotonic() + 60
        while True:
            status, body = get(port, "/metrics")
            assert status == 200
            lags = [line for line in body.splitlines() if line.startswith(ingest_lag)]
            checkpointed = sample(body, "adaptlog_stream_checkpoint_bytes_total", "parse") > 0
            if all(line in body for line in wanted) and checkpointed and lags and lags[0].endswith(caught_up):
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
        assert sample(body, "adaptlog_stream_templates", 'system="bgl"') > 10  # BGL_2k mines ~100 templates
        # BGL_2k's lines are from 2005: the event-time lag is the two decades since
        assert sample(body, "adaptlog_stream_event_time_lag_seconds", 'system="bgl"') > 15 * 365 * 86400
        assert 'adaptlog_build_info{python="' in body and 'role="stream"' in body
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()


async def send_bad_json(settings: Settings) -> int:
    """One record a shipper got wrong (a truncated JSON object) to the logs topic; returns 1."""
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.logs, b'{"message": "cut off', key=b"bgl")
    finally:
        await producer.stop()
    return 1


def sample(body: str, name: str, label: str) -> float:
    """The value of the first sample of ``name`` whose labels contain ``label`` (0 when there is none)."""
    for line in body.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
