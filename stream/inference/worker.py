"""``adaptlog infer``: windows in, verdicts and alerts out, at least once.

    fetch loop ──(bounded queue of micro-batches)──> model loop ──> producer ──(acks)──> offset commit

* **Micro-batches**: the fetch loop gathers windows until ``inference.max_batch`` of them or ``max_wait_ms`` after the
  first, whichever comes first.
* **Backpressure**: the queue holds at most ``max_pending_batches``; when the model falls behind, the fetch loop waits
  on the queue and stops polling, so memory is bounded by the queue plus the client's fetch buffer.
* **Model work off the event loop**: scoring and registry refreshes run on one worker thread, in order, so an
  adapter swap always falls between two batches and the event loop keeps heartbeats and fetches going.
* **At-least-once**: a batch's offsets are committed only after every record it produced is acknowledged by the
  broker. A crash replays from the last commit; a repeated verdict carries the same key (its window_id).
* **Model versions**: at start, on every ``model-updates`` record, and every ``refresh_interval_s`` the registry's
  serving pointers are read again (``ModelHost.refresh``).
* **Alerts on a timer**: when no batch comes for a tick, the model loop resolves incidents past ``alert_ttl_s`` and
  publishes them (acknowledged before it goes on), so resolutions do not wait for traffic. The model loop is the
  only writer of the alert book, so ticks and batches never interleave.
* **Rebalances**: when the group takes partitions away, the batch in flight is finished first (published and
  committed) and the rest fetched under the old assignment is left to be fetched again by the partitions' owners,
  so the next owner's alert book sees every alert this worker published (``stream.runtime.pipeline.Assignment``).
* **Alerts across restarts**: the alerts topic is the alert book's state. When the group hands this worker windows
  partitions, it resumes the open incidents of their systems from the latest alert records (``_sync_alerts``), so a
  restarted worker continues an incident (same alert_id, growing count) instead of opening it again. An incident
  whose latest record is older than two TTLs (its worker was down longer) is published ``resolved`` instead, as far
  back as ``alert_recovery_s``.
* **On the runtime's loop driver**, pipelined (``stream.runtime.loop.ConsumeLoop`` with a
  ``stream.runtime.pipeline.Pipeline``): the driver owns fetching, micro-batching, the queue, the hand-over at
  revocations, publishing and committing; this worker gives it hooks (``process`` scores a batch, ``tick`` resolves
  incidents, ``before_batch`` refreshes the models), as the stream stages and the feedback service do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from stream.errors import BrokerError, ConfigError
from stream.inference.alerts import AlertBook
from stream.inference.metrics import InferenceMetrics
from stream.inference.model_host import ModelHost
from stream.model.registry import Registry
from stream.ops_http import OpsServer, ops_port
from stream.pipeline.kafka_clients import (
    CachedPartitioner,
    assign_from_beginning,
    ensure_topics,
    inference_topic_specs,
    make_consumer,
    make_producer,
)
from stream.records import (
    ANOMALOUS,
    Alert,
    DeadLetter,
    Outgoing,
    RecordError,
    RetrainSchedule,
    SeverityPolicy,
    Verdict,
    Window,
    alert_record,
    decode_model_update,
    encode,
)
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.loop import Commit, ConsumeLoop, Fetched, LoopHooks, Step
from stream.runtime.pipeline import Pipeline
from stream.runtime.policy import SCORING, WINDOW_INTAKE, Action, ErrorPolicy
from stream.runtime.retry import retrying
from stream.runtime.runtime import Runtime
from stream.settings import Settings

log = logging.getLogger(__name__)
STAGE = "infer"
ALERT_TICK_S = 1.0  # resolutions come at most this late without traffic (a quarter of the TTL if that is shorter)
# Alert records are stamped by the clock of the worker that wrote them: allow for skew between workers' clocks.
CLOCK_SKEW_MS = 60_000
# How long a revocation waits for the batch in flight; within the group's rebalance timeout (below).
HANDOVER_WAIT_S = 60.0
# How long the group waits for this worker to rejoin at a rebalance, the revocation included. aiokafka's default is
# session_timeout_ms (10 s), not max.poll.interval as in the Java client: a batch in flight for longer would be cut
# off by the broker and its commit refused, so the group is told to wait out the hand-over, with room to rejoin.
REBALANCE_TIMEOUT_MS = int(HANDOVER_WAIT_S * 1000) + 30_000

Decoded = tuple[ConsumerRecord, Window]
Scored = tuple[ConsumerRecord, Verdict]  # a verdict, and the record of its window (to dead-letter it if need be)


def open_host(settings: Settings) -> ModelHost:
    if settings.inference.registry is None:
        raise ConfigError("inference.registry", "not set (ADAPTLOG_INFERENCE__REGISTRY=/path/to/registry)")
    registry = Registry(settings.inference.registry)
    inference = settings.inference
    return ModelHost(
        registry,
        inference.base,
        explain_top=inference.explain_top,
        explain_saliency=inference.explain_saliency,
        device=inference.device,
        precision=inference.precision,
        score_cache_size=inference.score_cache_size,
    )


class InferenceWorker(LoopHooks):
    def __init__(
        self,
        settings: Settings,
        host: ModelHost,
        metrics: InferenceMetrics | None = None,
        *,
        scoring: ErrorPolicy = SCORING,
    ) -> None:
        self.settings = settings
        self.scoring = scoring  # what a scoring error gets (``policy.SCORING``; a test shortens its backoff)
        self.config = settings.inference
        self.host = host
        self.metrics = metrics or InferenceMetrics()
        self.metrics.watch_serving(host.serving_versions)
        self.alerts = AlertBook(ttl_ms=int(self.config.alert_ttl_s * 1000))
        self.severity = SeverityPolicy(**self.config.severity.model_dump())
        self.counts: Counter[str] = Counter()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adaptlog-model")
        self._refresh_wanted = asyncio.Event()
        self._last_refresh = time.monotonic()
        self.loop: ConsumeLoop | None = None  # the windows consumer's loop (``run`` builds it with the consumer)
        self._consumer: AIOKafkaConsumer | None = None
        self._served: frozenset[int] = frozenset()  # windows partitions whose systems' incidents the book holds
        self._partitioner = CachedPartitioner()
        # b"": the key dead letters have always been sent with from here
        self.runtime = Runtime(DeadLetters(STAGE, settings.topics.deadletter, key=b"", on_letter=self._count_letter))

    @property
    def partitions(self) -> frozenset[int] | None:
        """The windows partitions the group gave this worker last (None before its first assignment)."""
        return self.loop.assignment.partitions if self.loop is not None else None

    def pipeline(self) -> Pipeline:
        config = self.config
        return Pipeline(
            max_records=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            depth=config.max_pending_batches,
            tick_s=min(ALERT_TICK_S, config.alert_ttl_s / 4),
            handover_wait_s=HANDOVER_WAIT_S,
        )

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        await ensure_topics(self.settings, inference_topic_specs(self.settings))
        await self._in_thread(self._refresh)
        producer = make_producer(self.settings)
        self.runtime.attach(producer)
        consumer = make_consumer(
            self.settings,
            group_id=f"{self.settings.group_prefix}-{STAGE}",
            max_poll_records=self.config.max_batch,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        )
        loop = self.loop = ConsumeLoop(
            consumer,
            self.runtime,
            self,
            commit=Commit.EACH_BATCH,
            poll_ms=self.config.max_wait_ms,
            pipeline=self.pipeline(),
            counts=self.counts,
        )
        self.metrics.queue_depth.set_function(loop.queue.qsize)
        consumer.subscribe([self.settings.topics.windows], listener=loop.listener())
        self._consumer = consumer
        updates = make_consumer(
            self.settings, self.settings.topics.model_updates, group_id=None, auto_offset_reset="latest"
        )
        await producer.start()
        await consumer.start()
        await updates.start()
        watch = asyncio.create_task(self._watch_updates(updates, stop), name="model-updates")
        self._last_refresh = time.monotonic()
        try:
            await loop.run(stop)
        finally:
            stop.set()
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await updates.stop()
            await consumer.stop()
            await producer.stop()
            self._executor.shutdown(wait=True)
        return self.counts

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ------------------------------------------------------------------------------------------ the loop's hooks

    async def before_batch(self) -> None:
        """The registry's serving pointers read again when due or announced, between two batches (see ``run``)."""
        due = time.monotonic() - self._last_refresh >= self.config.refresh_interval_s
        if due or self._refresh_wanted.is_set():
            self._refresh_wanted.clear()
            self._last_refresh = time.monotonic()
            await self._in_thread(self._refresh)

    async def tick(self) -> None:
        """No traffic for a tick: incidents still resolve on time, and assignments are still followed (never during
        a revocation: the book is about to be handed over, and the next owner resolves what is due)."""
        await self._sync_alerts()
        expired = self.alerts.expire(int(time.time() * 1000))
        await self.runtime.publish([self._alert(alert, None) for alert in expired])

    async def process(self, fetched: Fetched) -> Step:
        """A batch's verdicts, alerts and dead letters; the driver publishes them and then commits past the batch."""
        await self._sync_alerts()
        records = [record for records in fetched.values() for record in records]
        decoded, outgoing = self._decode(records)
        self.metrics.windows_in.inc(len(records))
        self.counts["windows_in"] += len(records)
        if decoded:
            self.metrics.batch_size.observe(len(decoded))
            started = time.perf_counter()
            scored, reused = self.host.counts["windows_scored"], self.host.counts["windows_reused"]
            verdicts, letters = await self._score(decoded)
            self.metrics.model_seconds.observe(time.perf_counter() - started)
            self.metrics.scored.inc(self.host.counts["windows_scored"] - scored)
            self.metrics.reused.inc(self.host.counts["windows_reused"] - reused)
            outgoing += letters
            outgoing += self._publications(verdicts)
        return Step.past(records, outgoing)

    async def after_publish(self, fetched: Fetched) -> None:
        now_ms = time.time() * 1000
        for records in fetched.values():
            for record in records:
                self.metrics.latency.observe(max(0.0, (now_ms - record.timestamp) / 1000))

    async def on_handed_over(self, records: Sequence[ConsumerRecord]) -> None:
        self.counts["windows_handed_over"] += len(records)

    # ----------------------------------------------------------------------------------------------------- model

    def _refresh(self) -> None:
        before = self.host.counts["artifacts_refused"]
        changes = self.host.refresh()
        self.metrics.swaps.inc(len(changes))
        self.metrics.refused.inc(self.host.counts["artifacts_refused"] - before)
        self.counts["adapter_swaps"] += len(changes)

    def _decode(self, records: Sequence[ConsumerRecord]) -> tuple[list[Decoded], list[Outgoing]]:
        windows, letters = [], []
        for record in records:
            try:
                window = Window.from_dict(orjson.loads(record.value))
            except Exception as exc:
                if WINDOW_INTAKE.decide(exc) is not Action.DEAD_LETTER:
                    raise
                letters.append(self._dead_letter(record, f"not a window record: {type(exc).__name__}: {exc}"))
                continue
            if not window.lines:  # no stage closes an empty window: there is nothing for a model to judge
                letters.append(self._dead_letter(record, "a window with no lines: nothing to score", window.system))
                continue
            windows.append((record, window))
        return windows, letters

    async def _score(self, decoded: Sequence[Decoded]) -> tuple[list[Scored], list[Outgoing]]:
        """Verdicts for the decoded windows, and dead letters for the windows no model can score.

        A transient failure (``policy.SCORING``: out of device memory) is retried in process, the same windows
        after the policy's backoff; when its attempts are used up it is raised: the batch is not committed, and the
        restarted worker scores it again. Nothing is committed while it is retried (the commit follows this).

        One window the model cannot score (a window built wrongly upstream) must not fail its whole batch on every
        restart. So when a batch fails for any other reason, its windows are scored one at a time
        and those that fail are dead-lettered with the error. When none of them scores, the model may be broken
        rather than the windows: ``ModelHost.probe`` scores a plain window with each of their models and raises if
        the model fails it too, so a broken model crashes the worker instead of dead-lettering the whole stream.
        """
        try:
            verdicts = await self._scored([window for _, window in decoded])
            return list(zip((record for record, _ in decoded), verdicts, strict=True)), []
        except Exception as exc:
            if self.scoring.decide(exc) is not Action.DEAD_LETTER:
                raise  # retried and still out of device memory: not committed, the restart scores it again
            log.error(
                "%s: a batch of %d windows failed in the model (%r); scoring them one at a time",
                STAGE,
                len(decoded),
                exc,
            )
        scored: list[Scored] = []
        failed: list[tuple[ConsumerRecord, str, Exception]] = []
        for record, window in decoded:
            try:
                scored.append((record, (await self._scored([window]))[0]))
            except Exception as exc:
                if self.scoring.decide(exc) is not Action.DEAD_LETTER:
                    raise
                failed.append((record, window.system, exc))
        if not scored:
            await self._in_thread(self.host.probe, sorted({window.system for _, window in decoded}))
        return scored, [
            self._dead_letter(record, f"the model cannot score this window: {type(exc).__name__}: {exc}", system)
            for record, system, exc in failed
        ]

    async def _scored(self, windows: list[Window]) -> list[Verdict]:
        """The model's verdicts for ``windows`` (on the model thread), retried as ``self.scoring`` says."""
        return await retrying(
            lambda: self._in_thread(self.host.score, windows),
            self.scoring,
            f"{STAGE}: scoring {len(windows)} windows",
            on_retry=self._count_retry,
        )

    def _count_retry(self, exc: BaseException, failures: int) -> None:
        self.metrics.scoring_retries.inc()
        self.counts["scoring_retries"] += 1

    def _dead_letter(self, record: ConsumerRecord, reason: str, system: str | None = None) -> Outgoing:
        return self.runtime.dead_letters.of(reason, record, system=system)

    def _count_letter(self, letter: DeadLetter) -> None:
        self.metrics.dead_letters.inc()
        self.counts["dead_letters"] += 1

    def _publications(self, scored: Sequence[Scored]) -> list[Outgoing]:
        topics = self.settings.topics
        out: list[Outgoing] = []
        now_ms = int(time.time() * 1000)
        for record, verdict in scored:
            alert = None
            if verdict.label == ANOMALOUS:
                try:
                    alert = self.alerts.observe(
                        system=verdict.system,
                        templates=tuple(cause.template for cause in verdict.explanation),
                        window_id=verdict.window_id,
                        score=verdict.score,
                        last_event_ms=verdict.last_event_ms,
                        now_ms=now_ms,
                    )
                except ValueError as exc:  # the book checks what the window carried before it changes anything
                    reason = f"its verdict cannot enter the alert book: {exc}"
                    out.append(self._dead_letter(record, reason, verdict.system))
                    continue
            self.metrics.verdicts.labels(verdict.system, verdict.label).inc()
            self.counts[f"verdicts_{verdict.label}"] += 1
            if self.config.publish_verdicts:
                out.append(Outgoing(topics.verdicts, encode(verdict), key=verdict.window_id.encode()))
            if alert is not None:
                out.append(self._alert(alert, verdict))
        out += [self._alert(alert, None) for alert in self.alerts.expire(now_ms)]
        return out

    def _alert(self, alert: Alert, verdict: Verdict | None) -> Outgoing:
        """An alert record to publish, counted by its system, severity and status."""
        severity = self.severity.severity(alert.max_score, alert.count)
        self.metrics.alerts.labels(alert.system, severity, alert.status).inc()
        self.counts["alerts"] += 1
        record = alert_record(alert, verdict, self.severity, int(time.time() * 1000))
        return Outgoing(self.settings.topics.alerts, record, key=alert.alert_id.encode())

    # ------------------------------------------------------------------------------------------ alert ownership

    async def _sync_alerts(self) -> None:
        """Keep the alert book to the systems whose windows this worker now reads.

        Windows are keyed by system, so all of a system's windows, and so all of its incidents, go through one
        windows partition, which one worker of the group owns. A worker resumes only the incidents of its own
        partitions' systems, not every open one on the alerts topic: another worker's would never be observed here
        and would be resolved a TTL later while their owner continues them. Incidents of partitions it lost are
        forgotten without a resolution (the new owner resumes them); those of partitions it keeps stay as they are,
        silent updates included, so a rebalance that gives a worker its partitions back changes nothing.
        """
        assert self.loop is not None and self._consumer is not None  # a hook: ``run`` built both
        assigned = self.loop.assignment.partitions
        if assigned is None or self.loop.assignment.revoking or assigned == self._served:
            return
        partitions = sorted(self._consumer.partitions_for_topic(self.settings.topics.windows) or ())
        if not partitions:
            return  # no metadata yet: the next batch or tick tries again

        def served(system: str, among: frozenset[int]) -> bool:
            return self._partitioner(system.encode(), partitions, partitions) in among  # as the windows producer

        forgotten = self.alerts.hand_over(lambda system: served(system, assigned))
        gained = assigned - self._served
        now_ms = int(time.time() * 1000)
        resumed = orphans = 0
        if gained:
            # Two TTLs: a live incident was published within them (see stream.inference.alerts); plus clock skew.
            # Older ones still open were left by a worker stopped for longer: resolved now, not left open forever.
            live_since_ms = now_ms - 2 * self.alerts.ttl_ms - CLOCK_SKEW_MS
            since_ms = max(0, min(live_since_ms, now_ms - int(self.config.alert_recovery_s * 1000)))
            for alert, published_ms in (await latest_alerts(self.settings, since_ms)).values():
                if not served(alert.system, gained):
                    continue
                if published_ms >= live_since_ms:
                    resumed += int(self.alerts.resume(alert, published_ms=published_ms, now_ms=now_ms))
                else:
                    orphans += int(self.alerts.resolve_orphan(alert))
        self._served = assigned
        self.counts["alerts_resumed"] += resumed
        self.counts["alerts_orphans_resolved"] += orphans
        log.info(
            "%s: windows partitions %s: %d open alerts resumed, %d left open by a long outage resolved, %d handed over",
            STAGE,
            sorted(assigned),
            resumed,
            orphans,
            len(forgotten),
        )

    # --------------------------------------------------------------------------------------------- model updates

    async def _watch_updates(self, updates: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            fetched = await updates.getmany(timeout_ms=500)
            if any(changes_serving(record.value) for records in fetched.values() for record in records):
                self._refresh_wanted.set()


def changes_serving(value: bytes | None) -> bool:
    """Whether a model-updates record may mean a new serving version: any but the trainer's retrain schedules (sent
    as label counts change, they would have every worker poll the registry for nothing). A record that does not
    decode (a newer trainer's kind, say) may mean one: a poll costs a registry read, a missed one a stale model."""
    try:
        update = decode_model_update(value)
    except RecordError:
        return True
    return not isinstance(update, RetrainSchedule)


async def latest_alerts(settings: Settings, since_ms: int, timeout_s: float = 30.0) -> dict[str, tuple[Alert, int]]:
    """alert_id -> its latest record (the Alert, and the record's timestamp) among those written since ``since_ms``.

    Alerts are keyed by alert_id, so all of an incident's records are in one partition, in publication order. A
    record that is not an alert is logged and passed over: it is our own output, not data to dead-letter.
    BrokerError when the topic cannot be read back within ``timeout_s``: the worker stops rather than run on an
    alert book that would reopen every incident.
    """
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    latest: dict[str, tuple[Alert, int]] = {}
    try:
        tps = await assign_from_beginning(consumer, settings.topics.alerts, timeout_s)
        if not tps:
            return latest
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        end = await consumer.end_offsets(tps)
        for tp in tps:
            found = starts[tp]
            consumer.seek(tp, found.offset if found is not None else end[tp])
        remaining = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise BrokerError(f"{STAGE}: the alerts topic was not read back within {timeout_s} s")
            fetched = await consumer.getmany(*remaining, timeout_ms=500)
            for record in (record for records in fetched.values() for record in records):
                try:
                    alert = Alert.from_dict(orjson.loads(record.value))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    log.warning("not an alert %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
                    continue
                latest[alert.alert_id] = (alert, record.timestamp)
            remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()
    return latest


async def run_inference(settings: Settings, stop: asyncio.Event) -> Counter[str]:
    if settings.inference.threads:
        import torch

        torch.set_num_threads(settings.inference.threads)
    metrics = InferenceMetrics()
    port = ops_port(settings, settings.inference.metrics_port)
    ops = OpsServer(port, metrics.registry) if port else None  # /healthz answers while the model loads
    worker = InferenceWorker(settings, open_host(settings), metrics)
    if ops is not None:
        ops.watch_readiness(lambda: worker.partitions is not None)  # model loaded, windows group joined
    return await worker.run(stop)
