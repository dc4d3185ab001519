"""Operations on a broker: `adaptlog topics` creates every topic with its configs, and a stream worker serves /healthz,
/readyz and its counts on /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from harness.streaming import DATA, free_port, ops_get, settings_for, worker_env, write_systems_file
from stream.cli import main
from stream.ops_http import check_health
from stream.pipeline.kafka_clients import all_topic_specs, make_producer
from stream.replay import replay, replay_records
from stream.settings import Settings


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
            status, body = ops_get(port, "/metrics")
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
