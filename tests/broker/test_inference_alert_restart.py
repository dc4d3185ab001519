"""The alert lifecycle on a real broker, where time and restarts matter: an incident resolves on time when traffic
stops, and a restarted inference worker continues an open incident instead of opening it again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

from harness.broker.running import RunningBroker
from harness.inference import inference_settings, produce_windows, running_inference, stream_window
from harness.streaming import read_topic
from stream.inference.alerts import AlertBook
from stream.inference.model_host import ModelHost
from stream.inference.worker import ALERT_TICK_S
from stream.pipeline.kafka_clients import (
    assign_from_beginning,
    ensure_topics,
    inference_topic_specs,
    make_consumer,
    make_producer,
)
from stream.records import ANOMALOUS, SeverityPolicy, Window, alert_record
from stream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@dataclass(frozen=True)
class Published:
    timestamp_ms: int  # the record's time: when the worker sent it
    alert: dict


@dataclass(frozen=True)
class Twins:
    """Two windows of the same anomalous content under different block ids: two verdicts of one incident."""

    first: Window
    second: Window
    templates: tuple[str, ...]  # what their explanation names: the incident's identity


def anomalous_twins(hdfs_registry) -> Twins:
    """A held-out anomalous HDFS block the trained model flags (and explains), and its twin."""
    host = ModelHost(hdfs_registry.registry)
    dataset, split = hdfs_registry.dataset, hdfs_registry.split
    for i in [i for i in split.test if dataset.windows[i].label][:40]:
        block = dataset.windows[i]
        first, second = (
            stream_window("hdfs", list(block.templates), list(block.masked), ANOMALOUS, key=f"{block.key}-{n}")
            for n in (1, 2)
        )
        verdicts = host.score([first, second])
        causes = [tuple(sorted({cause.template for cause in v.explanation})) for v in verdicts]
        if all(v.label == ANOMALOUS for v in verdicts) and causes[0] and causes[0] == causes[1]:
            return Twins(first, second, causes[0])
    raise AssertionError("the model flags none of 40 anomalous test blocks: nothing to alert on")


async def read_alerts(
    settings: Settings, until: Callable[[list[Published]], bool], timeout_s: float = 60.0
) -> list[Published]:
    """The alerts topic from the beginning, read until ``until`` holds (AssertionError at ``timeout_s``)."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    out: list[Published] = []
    try:
        await assign_from_beginning(consumer, settings.topics.alerts, timeout_s)
        deadline = time.monotonic() + timeout_s
        while not until(out):
            if time.monotonic() > deadline:
                raise AssertionError(f"alerts after {timeout_s} s: {[p.alert['status'] for p in out]}")
            fetched = await consumer.getmany(timeout_ms=200)
            out += [Published(r.timestamp, orjson.loads(r.value)) for records in fetched.values() for r in records]
    finally:
        await consumer.stop()
    return out


def has(status: str, count: int = 1) -> Callable[[list[Published]], bool]:
    return lambda published: sum(p.alert["status"] == status for p in published) >= count


def test_an_incident_resolves_on_time_when_traffic_stops(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry
) -> None:
    ttl_s = 2.0
    settings = inference_settings(kafka_broker, topic_prefix, hdfs_registry.registry.root, alert_ttl_s=ttl_s)
    twins = anomalous_twins(hdfs_registry)

    async def scenario() -> list[Published]:
        await ensure_topics(settings, inference_topic_specs(settings))
        async with running_inference(settings):
            await produce_windows(settings, [twins.first])  # one anomalous window, then nothing at all
            return await read_alerts(settings, has("resolved"))

    opened, resolved = asyncio.run(scenario())
    assert (opened.alert["status"], resolved.alert["status"]) == ("open", "resolved")
    assert resolved.alert["alert_id"] == opened.alert["alert_id"]
    assert tuple(resolved.alert["templates"]) == twins.templates and resolved.alert["count"] == 1
    assert resolved.alert["verdict"] is None  # resolved by time, not by a verdict
    waited_s = (resolved.timestamp_ms - opened.timestamp_ms) / 1000
    tick_s = min(ALERT_TICK_S, ttl_s / 4)
    # no earlier than the TTL (a few ms between the book's clock and the send); no later than a tick after it,
    # plus room for a loaded test machine
    assert ttl_s - 0.05 <= waited_s <= ttl_s + tick_s + 2.0, waited_s


def test_a_restarted_worker_continues_an_open_incident(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry
) -> None:
    ttl_s = 6.0  # long enough for the first worker to stop before it resolves the incident itself
    settings = inference_settings(kafka_broker, topic_prefix, hdfs_registry.registry.root, alert_ttl_s=ttl_s)
    twins = anomalous_twins(hdfs_registry)

    async def scenario() -> tuple[list[Published], int]:
        await ensure_topics(settings, inference_topic_specs(settings))
        async with running_inference(settings):
            await produce_windows(settings, [twins.first])
            await read_alerts(settings, has("open"))
        # stopped with the incident open; a new worker (a fresh book) in the same group
        async with running_inference(settings) as restarted:
            await produce_windows(settings, [twins.second])
            await read_alerts(settings, has("ongoing"))
            resumed = restarted.counts["alerts_resumed"]
            return await read_alerts(settings, has("resolved")), resumed  # and it resolves, once, by itself

    published, resumed = asyncio.run(scenario())
    alerts = [p.alert for p in published]
    assert [(a["status"], a["count"]) for a in alerts] == [("open", 1), ("ongoing", 2), ("resolved", 2)]
    assert len({a["alert_id"] for a in alerts}) == 1  # one incident across the restart
    assert alerts[1]["window_ids"] == [twins.first.window_id, twins.second.window_id]
    assert alerts[1]["verdict"]["window_id"] == twins.second.window_id
    assert resumed == 1


def test_workers_sharing_the_alerts_topic_resume_an_incident_once(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry
) -> None:
    """Two workers of one group after a restart: only the one that owns the system's windows partition resumes
    the incident, so it continues once and resolves once (not also a TTL later by the other worker)."""
    ttl_s = 6.0
    settings = inference_settings(kafka_broker, topic_prefix, hdfs_registry.registry.root, alert_ttl_s=ttl_s)
    twins = anomalous_twins(hdfs_registry)
    everything = frozenset(range(settings.internal_partitions))

    async def scenario() -> tuple[list[dict], int]:
        await ensure_topics(settings, inference_topic_specs(settings))
        async with running_inference(settings):
            await produce_windows(settings, [twins.first])
            await read_alerts(settings, has("open"))
        async with running_inference(settings) as one, running_inference(settings) as two:
            deadline = time.monotonic() + 60
            while not (one.partitions and two.partitions and one.partitions | two.partitions == everything):
                assert time.monotonic() < deadline, (one.partitions, two.partitions)
                await asyncio.sleep(0.2)  # until the group has settled: each holds some partitions
            await produce_windows(settings, [twins.second])
            ongoing = await read_alerts(settings, has("ongoing"))
            await asyncio.sleep(2 * ALERT_TICK_S)  # both have followed the assignment
            holders = sum(ongoing[-1].alert["alert_id"] in worker.alerts for worker in (one, two))
            await read_alerts(settings, has("resolved"))
            await asyncio.sleep(ttl_s + 2 * ALERT_TICK_S)  # time enough for a second, wrong resolution
            return await read_topic(settings, settings.topics.alerts, quiet_s=2), holders

    alerts, holders = asyncio.run(scenario())
    assert [(a["status"], a["count"]) for a in alerts] == [("open", 1), ("ongoing", 2), ("resolved", 2)]
    assert len({a["alert_id"] for a in alerts}) == 1
    assert holders == 1


def test_an_incident_left_open_by_a_long_outage_is_resolved_when_a_worker_comes_back(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry
) -> None:
    """An `open` record far older than two TTLs (its worker died and nothing ran for longer): the next worker
    given its system's partition publishes it `resolved` at once, rather than leave it open for ever; one just
    as open but recent (live) is resumed instead, not resolved."""
    ttl_s = 60.0
    settings = inference_settings(kafka_broker, topic_prefix, hdfs_registry.registry.root, alert_ttl_s=ttl_s)
    now_ms = int(time.time() * 1000)
    book = AlertBook(ttl_ms=int(ttl_s * 1000))
    old_ms, live_ms = now_ms - 3_600_000, now_ms - 5_000  # an hour ago (> 2 TTLs + skew), and just now
    orphan = book.observe(
        system="hdfs", templates=("gone <*>",), window_id="w1", score=0.9, last_event_ms=old_ms, now_ms=old_ms
    )
    live = book.observe(
        system="hdfs", templates=("live <*>",), window_id="w2", score=0.9, last_event_ms=live_ms, now_ms=live_ms
    )

    async def scenario() -> tuple[list[Published], int, int]:
        await ensure_topics(settings, inference_topic_specs(settings))
        producer = make_producer(settings)
        await producer.start()
        for alert, at_ms in ((orphan, old_ms), (live, live_ms)):
            await producer.send_and_wait(
                settings.topics.alerts,
                alert_record(alert, None, SeverityPolicy(), at_ms),
                key=alert.alert_id.encode(),
                timestamp_ms=at_ms,
            )
        await producer.stop()
        async with running_inference(settings) as worker:
            published = await read_alerts(settings, has("resolved"))
            await asyncio.sleep(2 * ALERT_TICK_S)  # time for a wrong, second resolution
            return published, worker.counts["alerts_orphans_resolved"], worker.counts["alerts_resumed"]

    published, orphans, resumed = asyncio.run(scenario())
    resolved = [p.alert for p in published if p.alert["status"] == "resolved"]
    assert [a["alert_id"] for a in resolved] == [orphan.alert_id]
    assert resolved[0]["count"] == 1 and resolved[0]["verdict"] is None
    assert (orphans, resumed) == (1, 1)
