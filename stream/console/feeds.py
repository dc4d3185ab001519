"""Kafka in and out for the console, on the same event loop as the pages (so the view needs no lock).

In: ``alerts``, ``windows``, ``feedback``, ``model-updates`` (and ``verdicts`` when inference publishes them) with
the console's own consumer group, ``<group_prefix>-console``. It never commits: the view lives in memory, so a
started console reads the topics from the beginning (of their retention) to rebuild it, and its group's offsets
never move anyone else's. A record that does not decode is logged with ``topic[partition]@offset`` and passed over:
the console is a reader of others' output, not the place to dead-letter it.

Out: labels leave the outbox when their undo window passes (``flush``), keyed by window id; a rollback's
announcement goes to ``model-updates`` keyed by target, as ``adaptlog-train rollback`` sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from stream.console.outbox import Outbox, PendingLabel
from stream.console.view import ConsoleView
from stream.pipeline.kafka_clients import make_consumer, make_producer
from stream.records import (
    ModelUpdate,
    RecordError,
    SeverityPolicy,
    Window,
    decode_alert_record,
    decode_model_update,
    encode,
)
from stream.settings import Settings

log = logging.getLogger(__name__)
FLUSH_INTERVAL_S = 0.5


def now_ms() -> int:
    return int(time.time() * 1000)


def severity_policy(settings: Settings) -> SeverityPolicy:
    s = settings.inference.severity
    return SeverityPolicy(s.warning_score, s.warning_count, s.critical_score, s.critical_count)


class Feeds:
    def __init__(self, settings: Settings, view: ConsoleView, outbox: Outbox) -> None:
        self.settings, self.view, self.outbox = settings, view, outbox
        self.policy = severity_policy(settings)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.records_seen = 0
        self.started = False

    def topics(self) -> tuple[str, ...]:
        t = self.settings.topics
        names = [t.alerts, t.windows, t.feedback, t.model_updates]
        if self.settings.inference.publish_verdicts:
            names.append(t.verdicts)
        return tuple(names)

    async def start(self) -> None:
        group = f"{self.settings.group_prefix}-console"
        self.consumer = make_consumer(self.settings, *self.topics(), group_id=group)
        self.producer = make_producer(self.settings)
        await self.producer.start()
        await self.consumer.start()
        self.started = True

    async def stop(self) -> None:
        """Send the labels still waiting out their undo window, then close the clients."""
        if self.producer is not None:
            try:
                await self._send(self.outbox.drain())
            finally:
                await self.producer.stop()
        if self.consumer is not None:
            await self.consumer.stop()

    async def consume(self, stop: asyncio.Event) -> None:
        if self.consumer is None:
            raise RuntimeError("Feeds.start() first")
        while not stop.is_set():
            fetched = await self.consumer.getmany(timeout_ms=200, max_records=2_000)
            for records in fetched.values():
                for record in records:
                    self.apply(record)

    def apply(self, record: ConsumerRecord) -> None:
        t = self.settings.topics
        self.records_seen += 1
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            if record.topic == t.alerts:
                self.view.apply_alert(decode_alert_record(record.value, self.policy))
                return
            if record.topic == t.model_updates:
                self.view.apply_update(decode_model_update(record.value))
                return
            document = orjson.loads(record.value or b"")
            if record.topic == t.windows:
                self.view.apply_window(Window.from_dict(document))
            elif not isinstance(document, dict):
                raise ValueError("not a JSON object")
            elif record.topic == t.feedback:
                self.view.apply_feedback(document, document.get("system"))
            elif record.topic == t.verdicts:
                self.view.apply_verdict(document)
        except (orjson.JSONDecodeError, RecordError, ValueError, KeyError, TypeError) as exc:
            log.warning("console: passed over %s: %s", where, exc)

    async def flush(self, stop: asyncio.Event) -> None:
        """Send labels whose undo window has passed, every FLUSH_INTERVAL_S, until stopped."""
        while not stop.is_set():
            due = self.outbox.due(now_ms())
            try:
                await self._send(due)
            except KafkaError as exc:  # transient: keep them and try again
                log.warning("console: %d labels not sent yet (%s); retrying", len(due), exc)
                self.outbox.requeue(due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)

    async def _send(self, labels: list[PendingLabel]) -> None:
        if not labels or self.producer is None:
            return
        topic = self.settings.topics.feedback
        sent = [
            await self.producer.send(topic, orjson.dumps(record), key=record["window_id"].encode())
            for label in labels
            for record in label.records()
        ]
        await asyncio.gather(*sent)
        for label in labels:
            log.info(
                "console: %s labeled %s as %s (%d windows)", label.by, label.what, label.verdict, len(label.window_ids)
            )

    async def announce(self, target: str, version: str, by: str, previous: str) -> None:
        """A rollback, on model-updates as the trainer's ``announce`` writes a publish (with who did it)."""
        if self.producer is None:
            raise RuntimeError("Feeds.start() first")
        record = ModelUpdate(target, version, "rollback", now_ms(), by=by, previous=previous or None)
        await self.producer.send_and_wait(self.settings.topics.model_updates, encode(record), key=target.encode())
