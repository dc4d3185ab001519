"""``adaptlog notify``: the alerts topic to Alertmanager and/or a webhook, at least once.

    alerts topic ──(group <prefix>-notify)──> decode ──> each sink: deliver, retrying ──> dead letters acked ──> commit

* **Scaling**: one consumer group; run as many replicas as the alerts topic has partitions. Alert records are keyed
  by alert_id, so all records of one incident are in one partition and reach the receivers in publication order.
* **At least once**: a fetched batch's offsets are committed only after every sink acknowledged (2xx) or refused
  each record and the refused ones' dead letters are acknowledged by the broker. A crash, a stop during a retry, or a
  rebalance (the commit is refused: ``CommitFailedError``) leaves the batch uncommitted, and it is delivered again
  from the last commit, to whichever worker owns the partition then. Repeats carry the same alert_id (and
  ``Idempotency-Key``: alert_id:status:count).
* **Failures**: a receiver's 5xx, 408, 429 or no answer is retried with exponential backoff (stream.notify.http);
  after ``notify.max_attempts`` tries (0: never) the worker stops with DeliveryError, uncommitted. Any other 4xx is
  the record's fault: dead-lettered with the receiver's answer, and the stream goes on. A record that is not an
  alert is dead-lettered too (stage ``notify``).
* **The loop** is the runtime's driver (``stream.runtime.loop.ConsumeLoop``, ``Commit.EACH_BATCH``): it polls,
  has ``process`` deliver a batch to the sinks, publishes the batch's dead letters and awaits their acks, then
  commits past the batch. A stop during a retry ends it with the batch uncommitted (``StopLoop``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from stream.errors import ConfigError
from stream.notify.alertmanager import AlertmanagerSink
from stream.notify.http import DeliveryStopped, Outcome, RetryPolicy
from stream.notify.notice import Notice, Sink
from stream.notify.webhook import WebhookSink
from stream.ops_http import BuildInfoCollector
from stream.pipeline.kafka_clients import ensure_topics, make_consumer, make_producer, new_topic
from stream.records import DeadLetter, RecordError, SeverityPolicy, decode_alert_record
from stream.runtime.dead_letters import DeadLetters, letter
from stream.runtime.loop import Commit, ConsumeLoop, Fetched, LoopHooks, Step, StopLoop
from stream.runtime.runtime import Runtime
from stream.settings import Settings

log = logging.getLogger(__name__)
STAGE = "notify"
POLL_MS = 500
HOLD_MARGIN_S = 60.0


class NotifyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = PromCounter("adaptlog_notify_records", "alert records consumed", registry=r)
        self.delivered = PromCounter(
            "adaptlog_notify_delivered", "alert records a receiver acknowledged", ["sink"], registry=r
        )
        self.retries = PromCounter(
            "adaptlog_notify_retries", "deliveries tried again after a failure", ["sink"], registry=r
        )
        self.dead_letters = PromCounter(
            "adaptlog_notify_dead_letters", "records dead-lettered (not an alert, or refused)", ["cause"], registry=r
        )
        r.register(BuildInfoCollector("notify"))


def hold_ms(settings: Settings) -> int:
    """How long a firing alert lasts in Alertmanager without a re-post (see stream.notify.alertmanager)."""
    hold_s = settings.notify.firing_hold_s or 2 * settings.inference.alert_ttl_s + HOLD_MARGIN_S
    return int(hold_s * 1000)


class NotifyWorker(LoopHooks):
    def __init__(self, settings: Settings, metrics: NotifyMetrics | None = None) -> None:
        self.settings = settings
        self.config = settings.notify
        self.metrics = metrics or NotifyMetrics()
        self.severity = SeverityPolicy(**settings.inference.severity.model_dump())
        self.counts: Counter[str] = Counter()
        self.stop = asyncio.Event()
        self.sinks = self._sinks()
        self.started = False  # consumer and producer up (readiness)
        self.runtime = Runtime(DeadLetters(STAGE, settings.topics.deadletter))
        self._batch_records = 0  # records of the batch the driver commits next

    def _sinks(self) -> list[Sink]:
        c = self.config
        if not c.alertmanager_url and not c.webhook_url:
            raise ConfigError("notify", "no receiver: set notify.alertmanager_url and/or notify.webhook_url")
        retry = RetryPolicy(c.retry_initial_s, c.retry_max_s, c.max_attempts)
        sinks: list[Sink] = []
        if c.alertmanager_url:
            sinks.append(
                AlertmanagerSink(
                    c.alertmanager_url,
                    timeout_s=c.timeout_s,
                    retry=retry,
                    stop=self.stop,
                    alertname=c.alertname,
                    hold_ms=hold_ms(self.settings),
                    clock_ms=lambda: int(time.time() * 1000),
                    on_retry=self._retried("alertmanager"),
                )
            )
        if c.webhook_url:
            sinks.append(
                WebhookSink(
                    c.webhook_url, timeout_s=c.timeout_s, retry=retry, stop=self.stop, on_retry=self._retried("webhook")
                )
            )
        return sinks

    def _retried(self, sink: str) -> Callable[[Outcome], None]:
        def count(_: Outcome) -> None:
            self.metrics.retries.labels(sink).inc()
            self.counts[f"retries_{sink}"] += 1

        return count

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Deliver until ``stop``. A batch waiting to retry when it is set is left uncommitted (delivered again by the
        next run); one being delivered finishes and is committed first."""
        topics = self.settings.topics
        specs = [new_topic(self.settings, name) for name in (topics.alerts, topics.deadletter)]
        await ensure_topics(self.settings, specs)
        group = f"{self.settings.group_prefix}-{STAGE}"
        consumer = make_consumer(self.settings, topics.alerts, group_id=group, max_poll_records=self.config.max_batch)
        producer = make_producer(self.settings)
        self.runtime.attach(producer)
        await producer.start()
        await consumer.start()
        relay = asyncio.create_task(self._relay_stop(stop))
        self.started = True
        loop = ConsumeLoop(
            consumer, self.runtime, self, commit=Commit.EACH_BATCH, poll_ms=POLL_MS, max_records=self.config.max_batch
        )
        try:
            await loop.run(self.stop)
        finally:
            relay.cancel()
            await consumer.stop()
            await producer.stop()
        return self.counts

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        # The sinks wait on self.stop between retries; the caller's event is relayed so a stop ends a backoff early.
        await stop.wait()
        self.stop.set()

    async def process(self, fetched: Fetched) -> Step:
        """Deliver a batch to every sink; its dead letters, which the driver publishes (a dead letter not
        acknowledged: never commit past its record) before it commits past the batch."""
        records = [record for batch in fetched.values() for record in batch]
        try:
            letters = await self._handle(records)
        except DeliveryStopped:
            log.info("%s: stopped while retrying; %d records left uncommitted", STAGE, len(records))
            raise StopLoop from None
        self._batch_records = len(records)
        return Step.past(records, (self.runtime.dead_letters.outgoing(dead) for dead in letters))

    async def after_commit(self, offsets: dict[TopicPartition, int], committed: bool, seconds: float) -> None:
        if not committed:
            # The group rebalanced meanwhile: the partition's owner delivers these again (at least once, same ids).
            self.counts["commits_skipped"] += 1
            return
        self.counts["committed"] += self._batch_records

    async def _handle(self, records: Sequence[ConsumerRecord]) -> list[DeadLetter]:
        notices: list[Notice] = []
        origins: list[ConsumerRecord] = []
        letters: list[DeadLetter] = []
        for record in records:
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            try:
                decoded = decode_alert_record(record.value, self.severity)
            except RecordError as exc:
                letters.append(self._dead_letter(record, f"not an alert record: {exc.reason}", None, "decode"))
                continue
            published_ms = decoded.published_ms if decoded.published_ms is not None else record.timestamp
            notices.append(Notice(decoded, published_ms, where))
            origins.append(record)
        self.metrics.records.inc(len(records))
        self.counts["records"] += len(records)
        for sink in self.sinks:
            refused = await sink.deliver(notices)
            delivered = len(notices) - len(refused)
            self.metrics.delivered.labels(sink.name).inc(delivered)
            self.counts[f"delivered_{sink.name}"] += delivered
            for index, reason in sorted(refused.items()):
                system = notices[index].record.alert.system
                why = f"{sink.name} refused it: {reason}"
                letters.append(self._dead_letter(origins[index], why, system, sink.name))
        return letters

    def _dead_letter(self, record: ConsumerRecord, reason: str, system: str | None, cause: str) -> DeadLetter:
        self.metrics.dead_letters.labels(cause).inc()
        self.counts["dead_letters"] += 1
        return letter(STAGE, reason, record, system=system)


async def run_notify(settings: Settings, stop: asyncio.Event) -> Counter[str]:
    """`adaptlog notify`: the worker, with /metrics and /healthz on notify.metrics_port (or metrics_port)."""
    from stream.ops_http import OpsServer, ops_port

    worker = NotifyWorker(settings)
    port = ops_port(settings, settings.notify.metrics_port)
    ops = OpsServer(port, worker.metrics.registry) if port else None
    if ops is not None:
        ops.watch_readiness(lambda: worker.started)
    try:
        return await worker.run(stop)
    finally:
        if ops is not None:
            ops.close()
