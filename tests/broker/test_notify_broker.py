"""``adaptlog notify`` on a real Kafka broker: to a real Alertmanager (grouped under its labels, ended when the
incident resolves), and to a real local webhook that fails, refuses and recovers (retry, no commit before the
acknowledgement, nothing lost across a restart, repeats recognisable by alert_id, refusals dead-lettered)."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from harness.alertmanager.receiver import http_receiver
from harness.alertmanager.service import RunningAlertmanager
from harness.broker.running import RunningBroker
from harness.streaming import read_topic, settings_for
from stream.inference.alerts import AlertBook
from stream.notify.http import DeliveryError
from stream.notify.worker import NotifyWorker
from stream.pipeline.kafka_clients import connection_options, ensure_topics, make_producer, new_topic
from stream.records import CRITICAL, Alert, Cause, SeverityPolicy, Verdict, alert_record
from stream.settings import Settings

pytestmark = pytest.mark.broker

T0 = 1_733_443_200_000


def notify_settings(broker: RunningBroker, prefix: str, **notify: Any) -> Settings:
    fast_retries = {"retry_initial_s": 0.05, "retry_max_s": 0.2, "timeout_s": 5.0}
    return settings_for(broker.bootstrap, prefix, broker.supports_idempotence, notify=fast_retries | notify)


def verdict(system: str, window_id: str, score: float, templates: tuple[str, ...]) -> Verdict:
    causes = tuple(Cause(template, 0.5 / (rank + 1), (rank,)) for rank, template in enumerate(templates))
    return Verdict(
        window_id, system, "translog", f"{system}/v0001", None, True, score, 0.5, "anomalous", T0, T0, 20, causes
    )


class Incidents:
    """A real AlertBook making the records an inference worker would publish."""

    def __init__(self) -> None:
        self.book = AlertBook(ttl_ms=60_000)
        self.policy = SeverityPolicy()

    def observe(self, system: str, window_id: str, score: float, templates: tuple[str, ...], now_ms: int) -> bytes:
        v = verdict(system, window_id, score, templates)
        alert = self.book.observe(system, templates, window_id=window_id, score=score, last_event_ms=T0, now_ms=now_ms)
        assert alert is not None, "each observation in these tests publishes"
        return alert_record(alert, v, self.policy, int(time.time() * 1000))

    def resolve_all(self) -> list[tuple[Alert, bytes]]:
        resolved = self.book.expire(T0 + 10**9)
        now_ms = int(time.time() * 1000)
        return [(alert, alert_record(alert, None, self.policy, now_ms)) for alert in resolved]


async def produce(settings: Settings, values: list[bytes], keys: list[bytes] | None = None) -> None:
    topics = settings.topics
    await ensure_topics(settings, [new_topic(settings, name) for name in (topics.alerts, topics.deadletter)])
    producer = make_producer(settings)
    await producer.start()
    try:
        for index, value in enumerate(values):
            key = keys[index] if keys else (orjson.loads(value).get("alert_id", "x").encode())
            await producer.send_and_wait(topics.alerts, value, key=key)
    finally:
        await producer.stop()


async def run_notifier(
    settings: Settings, done: Callable[[NotifyWorker], bool], timeout_s: float = 60.0
) -> NotifyWorker:
    """Run a notifier until ``done`` says so (or it fails: its error is raised), then stop it."""
    stop = asyncio.Event()
    worker = NotifyWorker(settings)
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + timeout_s
    try:
        while not done(worker):
            if task.done():
                task.result()  # raises the worker's error
                raise AssertionError(f"the notifier stopped early: {dict(worker.counts)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the notifier did not get there in {timeout_s} s: {dict(worker.counts)}")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
    return worker


async def committed(settings: Settings) -> int:
    """Records committed by the notify group over all partitions of the alerts topic."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{settings.group_prefix}-notify")
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == settings.topics.alerts and meta.offset > 0)


async def stable_members(settings: Settings) -> int:
    """Members of the notify group once it is Stable (a rebalance finished); 0 while it rebalances."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([f"{settings.group_prefix}-notify"])
    finally:
        await admin.close()
    [group] = response.groups
    state, members = group[2], group[5]
    return len(members) if state == "Stable" else 0


def wait_for(check: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy (Alertmanager's dispatcher groups asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def alerts_of(am: RunningAlertmanager, alertname: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
    return am.get(f"/api/v2/alerts?{query}")


def groups_of(am: RunningAlertmanager, alertname: str) -> dict[str, list[dict[str, Any]]]:
    """system -> the alerts of the group Alertmanager made for (alertname, system)."""
    query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
    out: dict[str, list[dict[str, Any]]] = {}
    for group in am.get(f"/api/v2/alerts/groups?{query}"):
        assert set(group["labels"]) == {"alertname", "system"}, group["labels"]  # the route's group_by
        out[group["labels"]["system"]] = group["alerts"]
    return out


def test_alertmanager_groups_incidents_under_their_labels_and_ends_them_when_they_resolve(
    kafka_broker: RunningBroker, alertmanager: RunningAlertmanager, topic_prefix: str
) -> None:
    alertname = f"Adaptlog-{topic_prefix}"  # the Alertmanager is shared by the session: this test's alerts only
    settings = notify_settings(kafka_broker, topic_prefix, alertmanager_url=alertmanager.url, alertname=alertname)
    incidents = Incidents()
    kernel = ("kernel panic <*>", "machine check interrupt <*>")
    disk = ("disk <*> failed",)
    records = [
        incidents.observe("bgl", "w1", 0.95, kernel, T0),  # open, warning (score 0.95)
        incidents.observe("hdfs", "h1", 0.7, ("blk <*> lost",), T0),  # open, info
        incidents.observe("bgl", "w2", 0.995, kernel, T0 + 1),  # ongoing (count 2), escalated to critical
        incidents.observe("bgl", "w3", 0.6, disk, T0 + 2),  # a second bgl incident
    ]
    kernel_id, hdfs_id, disk_id = (orjson.loads(records[i])["alert_id"] for i in (0, 1, 3))

    async def deliver_firing() -> int:
        await produce(settings, records)
        await run_notifier(settings, lambda w: w.counts["committed"] >= len(records))
        return await committed(settings)

    assert asyncio.run(deliver_firing()) == len(records)

    def both_groups() -> dict[str, list[dict[str, Any]]] | None:
        groups = groups_of(alertmanager, alertname)
        return groups if len(groups.get("bgl", ())) == 2 and len(groups.get("hdfs", ())) == 1 else None

    groups = wait_for(both_groups)
    assert groups is not None, groups_of(alertmanager, alertname)
    bgl = {alert["labels"]["alert_id"]: alert for alert in groups["bgl"]}
    assert set(bgl) == {kernel_id, disk_id}  # two incidents of one system: one group, two alerts
    kernel_alert = bgl[kernel_id]
    assert kernel_alert["labels"] == {
        "alertname": alertname,
        "system": "bgl",
        "severity": CRITICAL,  # the warning it was first is ended, not left firing beside it
        "alert_id": kernel_id,
    }
    assert kernel_alert["status"]["state"] == "active"
    assert kernel_alert["annotations"]["summary"].startswith("bgl: 2 anomalous windows; top templates: kernel panic")
    assert kernel_alert["annotations"]["window_ids"] == "w1,w2"
    assert groups["hdfs"][0]["labels"]["alert_id"] == hdfs_id and groups["hdfs"][0]["labels"]["severity"] == "info"
    assert bgl[disk_id]["labels"]["severity"] == "info"

    # The kernel incident resolves (its TTL passes in the book): its record ends it in Alertmanager.
    resolutions = [(alert, value) for alert, value in incidents.resolve_all() if alert.alert_id == kernel_id]
    assert len(resolutions) == 1

    async def deliver_resolution() -> int:
        await produce(settings, [resolutions[0][1]])
        await run_notifier(settings, lambda w: w.counts["committed"] >= 1)  # a restarted notifier: from the commit
        return await committed(settings)

    assert asyncio.run(deliver_resolution()) == len(records) + 1

    def kernel_gone() -> list[dict[str, Any]] | None:
        listed = alerts_of(alertmanager, alertname)
        return listed if all(a["labels"]["alert_id"] != kernel_id for a in listed) else None

    remaining = wait_for(kernel_gone)  # Alertmanager lists no alert whose endsAt has passed
    assert remaining is not None, alerts_of(alertmanager, alertname)
    assert {a["labels"]["alert_id"] for a in remaining} == {hdfs_id, disk_id}  # the others still fire
    assert all(a["status"]["state"] == "active" for a in remaining)
    assert [a["labels"]["alert_id"] for a in groups_of(alertmanager, alertname)["bgl"]] == [disk_id]


def test_webhook_retries_commits_only_after_the_ack_and_loses_nothing_across_a_restart(
    kafka_broker: RunningBroker, topic_prefix: str
) -> None:
    incidents = Incidents()
    records = [incidents.observe(f"sys{i}", f"w{i}", 0.95, (f"template {i} <*>",), T0) for i in range(3)]
    ids = {orjson.loads(value)["alert_id"] for value in records}

    with http_receiver(default=503) as down:
        settings = notify_settings(kafka_broker, topic_prefix, webhook_url=down.url, max_attempts=3)

        async def first_run() -> tuple[str, int]:
            await produce(settings, records)
            with pytest.raises(DeliveryError) as failure:
                await run_notifier(settings, lambda w: False)
            return str(failure.value), await committed(settings)

        error, offsets = asyncio.run(first_run())
    assert "not acknowledged after 3 tries; last: HTTP 503" in error
    assert offsets == 0  # nothing acknowledged, nothing committed
    assert len(down.requests) == 3
    tried = {(r.body["alert_id"], r.headers["Idempotency-Key"]) for r in down.requests}
    assert len(tried) == 1  # the same record each time, recognisable by its alert_id and key

    # Restarted against a receiver that fails twice more (a 500, a 429 with Retry-After), then takes everything.
    with http_receiver(answers=[500, 429]) as flaky:
        settings = notify_settings(kafka_broker, topic_prefix, webhook_url=flaky.url, max_attempts=5)

        async def second_run() -> tuple[NotifyWorker, int]:
            worker = await run_notifier(settings, lambda w: w.counts["committed"] >= len(records))
            return worker, await committed(settings)

        worker, offsets = asyncio.run(second_run())
    assert offsets == len(records)
    assert worker.counts["retries_webhook"] == 2 and worker.counts["delivered_webhook"] == len(records)
    acknowledged = flaky.acknowledged()
    assert {body["alert_id"] for body in acknowledged} == ids  # nothing lost
    assert len(acknowledged) == len(records)
    for request in flaky.requests:  # repeats carry the same alert_id and idempotency key as the record
        body = request.body
        assert request.headers["X-Adaptlog-Alert-Id"] == body["alert_id"] == body["alert"]["alert_id"]
        assert request.headers["Idempotency-Key"] == f"{body['alert_id']}:open:1" == body["idempotency_key"]
        assert body["text"].startswith("[FIRING] [warning] sys")
    retried = [r.body["alert_id"] for r in flaky.requests[:3]]
    assert retried[0] == retried[1] == retried[2]  # 500, 429, then 200: one record, three tries


def test_refused_and_malformed_records_are_dead_lettered_and_the_stream_goes_on(
    kafka_broker: RunningBroker, topic_prefix: str
) -> None:
    incidents = Incidents()
    poison = incidents.observe("poison", "p1", 0.95, ("bad <*>",), T0)
    good = incidents.observe("bgl", "g1", 0.95, ("good <*>",), T0)
    values = [b"{not json", poison, good]
    with http_receiver(refuse=lambda body: body["alert"]["system"] == "poison") as receiver:
        settings = notify_settings(kafka_broker, topic_prefix, webhook_url=receiver.url)

        async def scenario() -> tuple[int, list[dict[str, Any]]]:
            await produce(settings, values, keys=[b"k", b"k", b"k"])  # one partition: in this order
            await run_notifier(settings, lambda w: w.counts["committed"] >= len(values))
            letters = await read_topic(settings, settings.topics.deadletter, until=2)
            return await committed(settings), letters

        offsets, letters = asyncio.run(scenario())
    assert offsets == len(values)  # a refusal is not retried forever: the stream committed past it
    by_offset = {letter["offset"]: letter for letter in letters}
    assert sorted(by_offset) == [0, 1]
    assert by_offset[0]["stage"] == "notify" and by_offset[0]["reason"].startswith("not an alert record: not JSON")
    assert by_offset[1]["reason"] == "webhook refused it: HTTP 400: scripted failure 400"
    assert by_offset[1]["system"] == "poison"
    assert [r.status for r in receiver.requests] == [400, 200]  # the refused one was sent once
    assert receiver.acknowledged()[0]["alert"]["system"] == "bgl"


def test_two_notifiers_share_the_alerts_topic_and_a_rebalance_loses_nothing(
    kafka_broker: RunningBroker, topic_prefix: str
) -> None:
    """A second replica joins while the first delivers (a rebalance mid-stream): every record is acknowledged by
    the receiver at least once, all offsets end committed, and any repeat is the same record (same key)."""
    incidents = Incidents()
    records = [incidents.observe(f"sys{i}", f"w{i}", 0.5, (f"t{i} <*>",), T0) for i in range(40)]
    ids = {orjson.loads(value)["alert_id"] for value in records}
    # a slow receiver (0.1 s an answer, and a 503 now and then) keeps the first replica busy when the second joins
    with http_receiver(answers=[200, 200, 200, 503] * 3, delay_s=0.1) as receiver:
        settings = notify_settings(kafka_broker, topic_prefix, webhook_url=receiver.url, max_batch=5)

        async def scenario() -> tuple[list[NotifyWorker], int]:
            await produce(settings, records)
            stop = asyncio.Event()
            first = NotifyWorker(settings)
            tasks = [asyncio.create_task(first.run(stop))]
            deadline = time.monotonic() + 60
            while first.counts["committed"] < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            # Hold the receiver (the first replica stays mid-delivery) until the group has rebalanced over both,
            # so the second surely takes partitions that still hold undelivered records.
            receiver.gate.clear()
            second = NotifyWorker(settings)
            tasks.append(asyncio.create_task(second.run(stop)))
            while await stable_members(settings) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            receiver.gate.set()
            while len({b["alert_id"] for b in receiver.acknowledged()}) < len(ids) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            while await committed(settings) < len(records) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            stop.set()
            for task in tasks:
                await asyncio.wait_for(task, 30)
            return [first, second], await committed(settings)

        workers, offsets = asyncio.run(scenario())
    assert offsets == len(records)
    acknowledged = receiver.acknowledged()
    assert {body["alert_id"] for body in acknowledged} == ids
    keys = [body["idempotency_key"] for body in acknowledged]
    assert all(key.startswith(body["alert_id"]) for key, body in zip(keys, acknowledged, strict=True))
    assert all(w.counts["delivered_webhook"] > 0 for w in workers), [dict(w.counts) for w in workers]
