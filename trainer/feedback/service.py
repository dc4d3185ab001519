"""``adaptlog-train serve``: keep every labeled window, retrain a target's adapter when enough labels are new, and
publish it only when it beats the serving one.

    windows ─┐                                   ┌─> registry (adapters/<system>/vNNNN, SERVING)
    feedback ┼─> LabelStore (SQLite) ─> due? ─> retrain (one target at a time, on a worker thread)
    (extra labeled topics) ┘                     └─> model-updates ─> every inference worker swaps it in

A system that serves no adapter gets a zero-label one as soon as ``trainer.min_unlabeled`` of its unlabeled windows
are stored (``retrain.zero_label_adapter``: the base's scores, the system's own false-alarm budget), before any
label arrives; labeled retrains then compete with it like with any champion.

The consume loop is the runtime's driver (``stream.runtime.loop.ConsumeLoop``, ``Commit.EACH_BATCH``): each batch is
stored, its dead letters acknowledged, then its offsets committed; the retrain checks are its ``tick``.
Offsets are committed after the records they carried are in the store, so a restart loses no label and replays at
most a few records, which the store takes idempotently. Training runs beside consumption (labels keep arriving
while a target trains). A target's labels that a retrain has read are marked used, whether the challenger won or
not, so a restart never retrains on labels already judged. Malformed feedback (a sequence naming a system the
registry cannot name included), a window record that does not decode, and a label whose window never arrived within
``retention_s`` go to ``deadletter`` with the reason.

A retrain that fails because of its data or artifacts, or for a while (``stream.runtime.policy.RETRAIN``: a broken
serving adapter, a target name the registry refuses, labels the model cannot use, an error of the registry's volume,
out of GPU memory) is recorded in the target's history as a failed entry with the reason, its labels stay unused,
and the target is backed off (``retry_at_ms``, doubling per failure in a row) while the service goes on with the
other targets. Any other exception is a bug and stops the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter

from stream.errors import ConfigError, DecodeError
from stream.model.detector import FitOptions, WindowText
from stream.model.registry import Registry, name_problem
from stream.ops_http import BuildInfoCollector, OpsServer, ops_port
from stream.pipeline.kafka_clients import ensure_topics, make_consumer, make_producer, trainer_topic_specs
from stream.records import (
    DeadLetter,
    FeedbackError,
    LabeledSequence,
    ModelUpdate,
    Outgoing,
    RetrainReport,
    RetrainSchedule,
    Window,
    encode,
    parse_feedback,
)
from stream.runtime.dead_letters import DeadLetters, Unread
from stream.runtime.loop import Commit, ConsumeLoop, Fetched, LoopHooks, Step
from stream.runtime.policy import FEEDBACK_INTAKE, RETRAIN, Action
from stream.runtime.runtime import Runtime
from stream.settings import Settings
from trainer.feedback.retrain import (
    Decision,
    RetrainPolicy,
    due,
    failure_entry,
    next_retrain,
    retrain,
    retry_at_ms,
    zero_label_adapter,
)
from trainer.feedback.store import LabelStore
from trainer.unlabeled import DEFAULT_MAX_UNLABELED

log = logging.getLogger(__name__)
STAGE = "trainer"


def policy_of(settings: Settings) -> RetrainPolicy:
    t = settings.trainer
    return RetrainPolicy(
        min_new_labels=t.min_new_labels, max_interval_s=t.max_interval_s, min_per_class=t.min_per_class, margin=t.margin
    )


def open_registry(settings: Settings) -> tuple[Registry, str]:
    if settings.trainer.registry is None:
        raise ConfigError("trainer.registry", "not set (ADAPTLOG_TRAINER__REGISTRY=/path/to/registry)")
    registry = Registry(settings.trainer.registry)
    base = settings.trainer.base
    if not base:
        names = registry.names("base")
        if len(names) != 1:
            raise ConfigError("trainer.base", f"registry {registry.root} holds bases {names}: name one")
        base = names[0]
    return registry, base


def label_db(settings: Settings) -> Path:
    if settings.trainer.label_db is not None:
        return settings.trainer.label_db
    if settings.trainer.registry is None:
        raise ConfigError("trainer.registry", "not set (ADAPTLOG_TRAINER__REGISTRY=/path/to/registry)")
    return settings.trainer.registry / "labels.sqlite"


def now_ms() -> int:
    return int(time.time() * 1000)


class TrainerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.labels = PromCounter("adaptlog_trainer_labels", "feedback records by outcome", ["outcome"], registry=r)
        self.windows = PromCounter("adaptlog_trainer_windows", "windows stored", registry=r)
        self.retrains = PromCounter("adaptlog_trainer_retrains", "retrains by result", ["result"], registry=r)
        self.seconds = Histogram(
            "adaptlog_trainer_retrain_seconds", "one retrain", buckets=(5, 15, 30, 60, 120, 300, 600), registry=r
        )
        r.register(BuildInfoCollector("trainer"))


class FeedbackService(LoopHooks):
    def __init__(self, settings: Settings, store: LabelStore, metrics: TrainerMetrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.registry, self.base = open_registry(settings)
        self.policy = policy_of(settings)
        self.metrics = metrics or TrainerMetrics()
        self.counts: Counter[str] = Counter()
        self.decisions: list[Decision] = []
        self._training: asyncio.Task[None] | None = None
        self._announced: dict[str, tuple[str, dict[str, int]]] = {}  # target -> the schedule last sent for it
        self.started = False  # consuming and producing (readiness)
        self._producer: AIOKafkaProducer | None = None  # set by run()
        self._last_check = 0.0  # monotonic time of the last retrain check
        self.runtime = Runtime(DeadLetters(STAGE, settings.topics.deadletter, on_letter=self._count_letter))

    @property
    def input_topics(self) -> list[str]:
        t = self.settings.topics
        return [t.windows, t.feedback, *self.settings.trainer.feedback_topics]

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        await ensure_topics(self.settings, trainer_topic_specs(self.settings))
        consumer = make_consumer(
            self.settings,
            *self.input_topics,
            group_id=f"{self.settings.group_prefix}-{STAGE}",
            max_poll_records=self.settings.trainer.max_batch,
        )
        producer = make_producer(self.settings)
        self.runtime.attach(producer)
        await consumer.start()
        await producer.start()
        self._producer = producer
        self.started = True
        self._last_check = 0.0
        try:
            await ConsumeLoop(consumer, self.runtime, self, commit=Commit.EACH_BATCH, poll_ms=500).run(stop)
            if self._training is not None:
                await self._training
        finally:
            await consumer.stop()
            await producer.stop()
        return self.counts

    # ------------------------------------------------------------------------------------- the driver's hooks

    async def process(self, fetched: Fetched) -> Step:
        """Store a batch; its dead letters. The driver commits past it once they are acknowledged: only after the
        store holds its records."""
        records = [r for rs in fetched.values() for r in rs]
        return Step.past(records, await asyncio.to_thread(self._store_records, records))

    async def tick(self) -> None:
        """Every ``check_interval_s``, with traffic or without: expire, start a due retrain, announce schedules."""
        producer = self._producer
        if producer is None:
            raise RuntimeError(f"{STAGE}: the service ticked before run() started its producer")
        if time.monotonic() - self._last_check < self.settings.trainer.check_interval_s:
            return
        self._last_check = time.monotonic()
        await self.runtime.publish(await asyncio.to_thread(self._expire))
        self._maybe_start_retrain(producer)
        await self._announce_schedules(producer)

    # ------------------------------------------------------------------------------------------------ intake

    def _store_records(self, records: list[ConsumerRecord]) -> list[Outgoing]:
        letters = []
        now = now_ms()
        for record in records:
            try:
                if record.topic == self.settings.topics.windows:
                    if self.store.add_window(Window.from_dict(orjson.loads(record.value)), now):
                        self.metrics.windows.inc()
                        self.counts["windows"] += 1
                    continue
                feedback = parse_feedback(record.value or b"")
                if isinstance(feedback, LabeledSequence):
                    check_target(feedback.system)
                    outcome = self.store.add_sequence(feedback, now)
                else:
                    outcome = self.store.add_label(feedback, now)
                self.metrics.labels.labels(outcome).inc()
                self.counts[f"labels_{outcome}"] += 1
            except Exception as exc:
                if FEEDBACK_INTAKE.decide(exc) is not Action.DEAD_LETTER:
                    raise
                self.metrics.labels.labels("dead_letter").inc()
                letters.append(self.runtime.dead_letters.of(intake_reason(exc), record))
        return letters

    def _count_letter(self, letter: DeadLetter) -> None:
        self.counts["dead_letters"] += 1

    def _expire(self) -> list[Outgoing]:
        horizon = int(self.settings.trainer.retention_s * 1000)
        now = now_ms()
        self.store.expire_windows(now, horizon)
        letters = []
        for label in self.store.expire_pending(now, horizon):
            reason = f"unknown window_id {label.window_id} after the retention horizon ({horizon} ms)"
            original = orjson.dumps({"kind": label.source, "window_id": label.window_id, "label": label.label})
            letters.append(self.runtime.dead_letters.of(reason, Unread(self.settings.topics.feedback), original))
        return letters

    # ----------------------------------------------------------------------------------------------- retrain

    def next_due(self, now: int | None = None) -> tuple[str, str] | None:
        """The due target whose oldest unused label has waited longest, and why it is due. Not the first due one in
        name order: a busy target gathers ``min_new_labels`` during each of its retrains and would be picked every
        time, while a quieter one waited past ``max_interval_s`` forever."""
        now = now_ms() if now is None else now
        candidates = []
        for system in self.store.systems():
            retry_at = retry_at_ms(self.store.last_retrain(system))
            if retry_at is not None and now < retry_at:
                continue  # backing off after a failed retrain
            oldest = self.store.oldest_unused_ms(system)
            reason = due(self.policy, self.store.counts(system), oldest, now)
            if reason:
                candidates.append((oldest if oldest is not None else now, system, reason))
        if not candidates:
            return None
        _, system, reason = min(candidates)
        return system, reason

    def changed_schedules(self, now: int | None = None) -> list[RetrainSchedule]:
        """Each labeled target's next retrain (``next_retrain``), where it or the label counts differ from what was
        last sent for that target (all of them after a restart)."""
        now = now_ms() if now is None else now
        changed = []
        for system in self.store.systems():
            counts = self.store.counts(system)
            oldest = self.store.oldest_unused_ms(system)
            text = next_retrain(self.policy, counts, oldest, self.store.last_retrain(system), now)
            if self._announced.get(system) != (text, counts):
                changed.append(RetrainSchedule(system, now, text, counts))
        return changed

    async def _announce_schedules(self, producer: AIOKafkaProducer) -> None:
        """The changed schedules on model-updates, for the operator console's "next retrain"."""
        for schedule in await asyncio.to_thread(self.changed_schedules):
            key = schedule.target.encode()
            await producer.send_and_wait(self.settings.topics.model_updates, encode(schedule), key=key)
            self._announced[schedule.target] = (schedule.next_retrain, schedule.labels)

    async def _then_announce(self, work: Awaitable[None], producer: AIOKafkaProducer) -> None:
        """A retrain, then the schedules it changed, without waiting for the next check."""
        await work
        await self._announce_schedules(producer)

    def _maybe_start_retrain(self, producer: AIOKafkaProducer) -> None:
        if self._training is not None and not self._training.done():
            return
        if self._training is not None and self._training.exception() is not None:
            raise self._training.exception()  # type: ignore[misc]
        found = self.next_due()
        if found is not None:
            self._training = asyncio.create_task(self._then_announce(self._retrain(*found, producer), producer))
            return
        unlabeled = self.zero_label_due()
        if unlabeled is not None:
            self._training = asyncio.create_task(self._then_announce(self._zero_label(*unlabeled, producer), producer))

    def zero_label_due(self, now: int | None = None) -> tuple[str, int] | None:
        """The first system (by name) that serves no adapter yet and has ``trainer.min_unlabeled`` unlabeled windows
        stored, and how many it has (counted up to the minimum): it gets a zero-label adapter. Not one backing off
        after a failed attempt, nor one whose name the registry refuses."""
        needed = self.settings.trainer.min_unlabeled
        if needed == 0:
            return None
        now = now_ms() if now is None else now
        for system in self.store.window_systems():
            if name_problem(system) is not None or self.registry.pointer("adapter", system) is not None:
                continue
            retry_at = retry_at_ms(self.store.last_retrain(system))
            if retry_at is not None and now < retry_at:
                continue
            count = self.store.unlabeled_count(system, needed)
            if count >= needed:
                return system, count
        return None

    def _failed(self, system: str, why: str, exc: Exception) -> dict[str, Any]:
        """Record a failed retrain in the target's history (it backs off, ``policy.RETRAIN``) and count it; raise
        ``exc`` again when the policy says it is a bug."""
        if RETRAIN.decide(exc) is not Action.RETRY:
            raise exc
        failed = failure_entry(system, why, exc, self.store.last_retrain(system), now_ms())
        self.store.record_retrain(system, failed)
        self.metrics.retrains.labels("failed").inc()
        self.counts["failed"] += 1
        return failed

    async def _zero_label(self, system: str, count: int, producer: AIOKafkaProducer) -> None:
        windows = [WindowText(t, m) for t, m in self.store.unlabeled(system, DEFAULT_MAX_UNLABELED)]
        why = f"at least {count} unlabeled windows and no adapter"
        log.info("zero-label adapter for %s (%s): reading %d of them", system, why, len(windows))
        try:
            decision = await asyncio.to_thread(
                zero_label_adapter,
                self.registry,
                self.base,
                system,
                windows,
                budget_per_1000=self.settings.trainer.false_alarms_per_1000,
                threshold_rule=self.settings.trainer.zero_label_rule,
                device=self.settings.trainer.device,
            )
        except Exception as exc:
            failed = self._failed(system, why, exc)
            log.error("zero-label adapter for %s failed (%s)", system, failed["error"])
            return
        self.store.record_retrain(system, {"at_ms": now_ms(), "why": why, "zero_label": True, **decision.to_dict()})
        self.metrics.retrains.labels("zero_label").inc()
        self.counts["zero_label"] += 1
        self.decisions.append(decision)
        await announce(producer, self.settings, system, decision.version or "", decision.reason)

    async def _retrain(self, system: str, reason: str, producer: AIOKafkaProducer) -> None:
        examples = self.store.labeled(system)
        log.info("retraining %s (%s): %d labeled windows", system, reason, len(examples))
        try:
            decision = await asyncio.to_thread(
                retrain,
                self.registry,
                self.base,
                system,
                examples,
                self.policy,
                options=FitOptions(seed=0),
                device=self.settings.trainer.device,
            )
        except Exception as exc:
            # its labels stay unused: nothing judged them, and they should train once the cause is fixed
            failed = self._failed(system, reason, exc)
            wait_s = (failed["retry_at_ms"] - failed["at_ms"]) / 1000
            log.error("retrain %s failed (%s): retried in %.0fs at the earliest", system, failed["error"], wait_s)
            await report(producer, self.settings, system, failed, len(examples))
            return
        entry: dict[str, Any] = {"at_ms": now_ms(), "why": reason, **decision.to_dict()}
        self.store.record_retrain(system, entry)
        used_by = decision.version or f"rejected@{entry['at_ms']}"
        # exactly the labels read above: a batch stamps its labels before writing them, so one written while this
        # ran can carry an earlier time than the read, and a time cutoff would mark it used untrained
        self.store.mark_read(system, examples, used_by)
        self.metrics.seconds.observe(decision.seconds)
        self.metrics.retrains.labels("published" if decision.published else "rejected").inc()
        self.counts["published" if decision.published else "rejected"] += 1
        self.decisions.append(decision)
        await report(producer, self.settings, system, entry, len(examples))
        if decision.published:
            await announce(producer, self.settings, system, decision.version or "", decision.reason)


def intake_reason(exc: BaseException) -> str:
    """The dead letter's reason for a record the intake refused (``policy.FEEDBACK_INTAKE``)."""
    if isinstance(exc, FeedbackError):
        return exc.reason
    if isinstance(exc, DecodeError):  # Window.from_dict checks every field
        return f"not a window record: {exc.reason}"
    return f"not a window record: {type(exc).__name__}: {exc}"  # not JSON; no value at all (a tombstone)


def check_target(system: str) -> None:
    """A labeled sequence names its target outright: one the registry cannot name could never get an adapter (the
    publish would fail on every retrain), so it is refused on the way in, like any malformed feedback."""
    problem = name_problem(system)
    if problem is not None:
        raise FeedbackError(f"field 'system': {problem}, so it cannot have an adapter")


async def report(
    producer: AIOKafkaProducer, settings: Settings, target: str, entry: dict[str, Any], labels: int
) -> None:
    """Every labeled retrain's outcome on model-updates (``kind: retrain``), for the operator console: its labels,
    F1, and the failure and next try of one that failed; the trainer's history stays the record. Inference workers
    take any model-updates record as a nudge to poll the registry, which finds nothing new for this one."""
    failed = bool(entry.get("failed"))
    if failed:
        outcome = "failed"
    else:
        outcome = f"published {entry.get('version')}" if entry.get("published") else f"rejected: {entry.get('reason')}"
    record = RetrainReport(
        target=target,
        at_ms=entry.get("at_ms", now_ms()),
        outcome=outcome,
        failed=failed,
        labels=labels,
        used_labels=entry.get("used_labels"),
        f1=(entry.get("challenger") or {}).get("f1"),
        error=entry.get("error"),
        retry_at_ms=entry.get("retry_at_ms"),
    )
    await producer.send_and_wait(settings.topics.model_updates, encode(record), key=target.encode())


async def announce(producer: AIOKafkaProducer, settings: Settings, target: str, version: str, reason: str) -> None:
    """Tell every inference worker that ``target`` serves ``version`` now."""
    record = ModelUpdate(target, version, reason, now_ms())
    await producer.send_and_wait(settings.topics.model_updates, encode(record), key=target.encode())


async def serve(settings: Settings, stop: asyncio.Event) -> Counter[str]:
    if settings.trainer.threads:
        import torch

        torch.set_num_threads(settings.trainer.threads)
    metrics = TrainerMetrics()
    port = ops_port(settings, settings.trainer.metrics_port)
    ops = OpsServer(port, metrics.registry) if port else None
    with LabelStore(label_db(settings)) as store:
        service = FeedbackService(settings, store, metrics)
        if ops is not None:
            ops.watch_readiness(lambda: service.started)
        return await service.run(stop)
