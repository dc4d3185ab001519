"""``adaptlog infer`` on a real broker: HDFS_5k end to end through the stream workers, adapter versions published
mid-stream (and a corrupt one refused), and SIGKILL of the inference worker mid-stream."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from harness.broker.running import RunningBroker
from harness.inference import inference_settings, produce_windows, publish_adapter, running_inference, windows_of
from harness.streaming import (
    DATA,
    block_lines,
    read_topic,
    running_worker,
    worker_env,
    write_systems_file,
)
from stream.inference.worker import InferenceWorker
from stream.model.artifacts import WEIGHTS
from stream.model.quality import confusion
from stream.model.registry import Registry
from stream.pipeline.kafka_clients import (
    assign_from_beginning,
    ensure_topics,
    inference_topic_specs,
    make_consumer,
    make_producer,
)
from stream.records import ANOMALOUS
from stream.replay import read_block_labels, replay, replay_records
from stream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def announce(settings: Settings, target: str, version: str) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        record = orjson.dumps({"kind": "adapter", "target": target, "version": version})
        await producer.send_and_wait(settings.topics.model_updates, record, key=target.encode())
    finally:
        await producer.stop()


async def count_records(settings: Settings, topic: str, *, at_least: int, timeout_s: float) -> int:
    """Read ``topic`` from the beginning until it holds ``at_least`` records (or the time is up); how many."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    seen = 0
    try:
        await assign_from_beginning(consumer, topic, timeout_s)
        deadline = time.monotonic() + timeout_s
        while seen < at_least and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return seen


def test_hdfs_5k_end_to_end_gives_one_verdict_per_block_and_flags_anomalies(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry
) -> None:
    settings = inference_settings(kafka_broker, topic_prefix, hdfs_registry.registry.root)
    path = DATA / "hdfs" / "HDFS_5k.log"
    blocks = block_lines(path)
    labels = read_block_labels(DATA / "hdfs" / "HDFS_5k_block_labels.csv")

    async def scenario() -> tuple[list[dict], list[dict]]:
        await ensure_topics(settings, inference_topic_specs(settings))
        async with running_worker(settings), running_inference(settings):
            fmt = settings.systems["hdfs"].line_format("hdfs")
            await replay(settings, replay_records(path, "hdfs", fmt, labels), "hdfs")
            verdicts = await read_topic(settings, settings.topics.verdicts, until=len(blocks), timeout_s=180)
        alerts = await read_topic(settings, settings.topics.alerts, quiet_s=2)
        return verdicts, alerts

    verdicts, alerts = asyncio.run(scenario())
    by_window = {v["window_id"]: v for v in verdicts}
    assert len(verdicts) == len(by_window) == len(blocks) == 110  # one verdict per block, none repeated
    truth = [int(v["truth"] == ANOMALOUS) for v in by_window.values()]
    assert sum(truth) == 10
    quality = confusion([v["score"] for v in by_window.values()], truth, hdfs_registry.base.threshold)
    print(f"HDFS_5k end to end: {quality.to_dict()}")
    assert quality.f1 >= 0.7, quality.to_dict()  # 7 of 10 anomalous blocks, 1 false alarm (trivial F1: 0.17)
    assert all(v["model"] == "hdfs/v0001" and v["zero_shot"] for v in verdicts)
    anomalous = [v for v in verdicts if v["label"] == ANOMALOUS]
    assert anomalous and all(v["explanation"] for v in anomalous)
    assert alerts and all(a["status"] in ("open", "ongoing") and a["verdict"]["label"] == ANOMALOUS for a in alerts)
    assert sum(a["status"] == "open" for a in alerts) <= len(anomalous)


def test_adapter_versions_published_mid_stream_serve_and_a_corrupt_one_is_refused(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry, tmp_path: Path
) -> None:
    # a registry of our own: the other tests' adapter versions must not leak in
    registry_root = tmp_path / "registry"
    shutil.copytree(hdfs_registry.registry.root / "bases", registry_root / "bases")
    own = Registry(registry_root)
    base = own.serving("base", "hdfs")
    settings = inference_settings(kafka_broker, topic_prefix, registry_root, refresh_interval_s=3600)
    test = windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:150])
    parts = [test[:50], test[50:100], test[100:]]

    async def until(count: int) -> list[dict]:
        return await read_topic(settings, settings.topics.verdicts, until=count, timeout_s=120)

    async def scenario() -> tuple[list[dict], InferenceWorker]:
        await ensure_topics(settings, inference_topic_specs(settings))
        async with running_inference(settings) as worker:
            await produce_windows(settings, parts[0])
            await until(50)
            published = publish_adapter(own, base, seed=1)
            await announce(settings, "hdfs", published.version)
            await asyncio.sleep(2)  # the update is seen; the next batch runs on the new version
            await produce_windows(settings, parts[1])
            await until(100)
            corrupt = publish_adapter(own, base, seed=2)
            weights = own.path("adapter", "hdfs", corrupt.version) / WEIGHTS
            weights.write_bytes(weights.read_bytes()[:-64] + b"\0" * 64)
            await announce(settings, "hdfs", corrupt.version)
            await asyncio.sleep(2)
            await produce_windows(settings, parts[2])
            return await until(150), worker

    verdicts, worker = asyncio.run(scenario())
    versions: dict[str, set] = defaultdict(set)
    for verdict in verdicts:
        versions[verdict["window_id"]].add(verdict["adapter_version"])
    assert set(versions) == {w.window_id for w in test}  # nothing lost
    assert all(versions[w.window_id] == {None} for w in parts[0])  # zero-shot before any adapter
    assert all(versions[w.window_id] == {"v0001"} for w in parts[1])  # picked up mid-stream
    assert all(versions[w.window_id] == {"v0001"} for w in parts[2])  # the corrupt v0002 never served
    assert worker.host.counts["artifacts_refused"] == 1
    assert worker.metrics.refused._value.get() == 1


def test_sigkill_of_the_inference_worker_mid_stream_loses_no_window(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry, tmp_path: Path
) -> None:
    settings = inference_settings(kafka_broker, topic_prefix, hdfs_registry.registry.root)
    env = worker_env(settings, write_systems_file(tmp_path / "systems.yaml", dict(settings.systems)), dict(os.environ))
    env |= {
        "ADAPTLOG_INFERENCE__REGISTRY": str(hdfs_registry.registry.root),
        "ADAPTLOG_INFERENCE__PUBLISH_VERDICTS": "true",
        "ADAPTLOG_INFERENCE__MAX_BATCH": "4",  # many small batches: the kill lands mid-stream
        "ADAPTLOG_INFERENCE__THREADS": "1",
    }
    windows = windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:1000])
    log = tmp_path / "infer.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([sys.executable, "-m", "stream", "infer"], env=env, stdout=out, stderr=out)

    async def scenario() -> tuple[list[dict], int]:
        await ensure_topics(settings, inference_topic_specs(settings))
        await produce_windows(settings, windows)
        first = start()
        try:
            await count_records(settings, settings.topics.verdicts, at_least=40, timeout_s=120)
            first.send_signal(signal.SIGKILL)  # as soon as 40 verdicts are out: mid-stream
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        at_kill = len(await read_topic(settings, settings.topics.verdicts, quiet_s=1))
        second = start()
        try:
            verdicts = await read_topic(settings, settings.topics.verdicts, until=len(windows), timeout_s=240)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
        return verdicts, at_kill

    verdicts, at_kill = asyncio.run(scenario())
    assert 0 < at_kill < len(windows), (
        f"the kill did not land mid-stream ({at_kill} verdicts): {log.read_text()[-2000:]}"
    )
    ids = [v["window_id"] for v in verdicts]
    assert set(ids) == {w.window_id for w in windows}  # every window got a verdict
    repeats = len(ids) - len(set(ids))
    print(f"SIGKILL after {at_kill} verdicts; {repeats} repeated after the restart (at-least-once)")
    by_window = defaultdict(list)
    for verdict in verdicts:
        by_window[verdict["window_id"]].append(verdict)
    for copies in by_window.values():  # a repeat is the same verdict again
        assert {round(c["score"], 4) for c in copies} == {round(copies[0]["score"], 4)}
