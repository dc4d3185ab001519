"""The runtime's loop driver (stream.runtime.loop.ConsumeLoop) on a real broker: each batch published then committed;
sent records confirmed before ``before_commit`` and the commit; a refused record stops the loop uncommitted;
``StopLoop`` leaves its batch uncommitted; a revocation commits the revoked partitions' pending offsets before the
partitions move, so their next owner does not replay what was processed. Pipelined (``stream.runtime.pipeline``):
micro-batches of at most ``max_records``, each committed once its records are acknowledged, ``tick`` when idle.
(The pipelined hand-over at a revocation is tested through the inference worker, test_inference_rebalance.py.)"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from harness.streaming import settings_for
from stream.errors import BrokerError, ConfigError
from stream.pipeline.kafka_clients import ensure_topics, make_consumer, make_producer, new_topic
from stream.records import DeadLetter, Outgoing
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.loop import Commit, ConsumeLoop, Fetched, LoopHooks, Step, StopLoop
from stream.runtime.pipeline import Pipeline
from stream.runtime.runtime import Runtime
from stream.settings import Settings

pytestmark = pytest.mark.broker


class Echo(LoopHooks):
    """Each record's value to ``out`` (b"bad" dead-lettered; b"stop" raises StopLoop), and a journal of the hooks."""

    def __init__(self, runtime: Runtime, out: str, stop: asyncio.Event, expect: int) -> None:
        self.runtime = runtime
        self.out = out
        self.stop = stop
        self.expect = expect
        self.seen: list[tuple[int, int]] = []  # (partition, offset) of every record processed
        self.batches: list[int] = []  # each batch's size
        self.journal: list[tuple] = []

    async def process(self, fetched: Fetched) -> Step:
        records = [r for rs in fetched.values() for r in rs]
        if any(r.value == b"stop" for r in records):
            raise StopLoop
        out = []
        self.batches.append(len(records))
        for r in records:
            self.seen.append((r.partition, r.offset))
            if r.value == b"bad":
                out.append(self.runtime.dead_letters.of("bad on purpose", r))
            else:
                out.append(Outgoing(self.out, r.value or b""))
        if len(self.seen) >= self.expect:
            self.stop.set()
        return Step.past(records, out)

    async def before_commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.journal.append(("before_commit", dict(offsets), self.runtime.deliveries.unflushed))

    async def after_commit(self, offsets: dict[TopicPartition, int], committed: bool, seconds: float) -> None:
        self.journal.append(("after_commit", dict(offsets), committed))

    async def after_publish(self, fetched: Fetched) -> None:
        self.journal.append(("after_publish", sum(map(len, fetched.values())), self.runtime.deliveries.unflushed))

    async def on_revoke(self, revoked: set[TopicPartition]) -> None:
        self.journal.append(("revoke", frozenset(tp.partition for tp in revoked)))

    async def on_assign(self, assigned: set[TopicPartition]) -> None:
        self.journal.append(("assign", frozenset(tp.partition for tp in assigned)))


async def produce(settings: Settings, topic: str, values: list[bytes], partition: int | None = None) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for n, value in enumerate(values):
            await producer.send(topic, value, partition=n % 2 if partition is None else partition)
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str, at_least: int, timeout_s: float = 30) -> list[ConsumerRecord]:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    got: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < at_least and time.monotonic() < deadline:
            got += [r for rs in (await consumer.getmany(timeout_ms=200)).values() for r in rs]
    finally:
        await consumer.stop()
    return got


async def committed(settings: Settings, group: str, topic: str) -> dict[int, int | None]:
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    finally:
        await consumer.stop()


@pytest.fixture
def settings(kafka_broker, topic_prefix: str) -> Settings:
    # two partitions to a topic: the revocation test splits them between two members
    return settings_for(
        kafka_broker.bootstrap, topic_prefix, idempotent=kafka_broker.supports_idempotence, internal_partitions=2
    )


class StopWhenIdle(Echo):
    """Echo that never stops on a batch: its ``tick`` (which a pipelined loop runs when idle) stops the loop once
    every record was seen."""

    async def process(self, fetched: Fetched) -> Step:
        step = await super().process(fetched)
        self.stop.clear()
        return step

    async def tick(self) -> None:
        self.journal.append(("tick", len(self.seen)))
        if len(self.seen) >= self.expect:
            self.stop.set()


async def run_loop(
    settings: Settings,
    source: str,
    group: str,
    out: str,
    expect: int,
    mode: Commit,
    pipeline: Pipeline | None = None,
) -> Echo:
    """Echo's hooks driven until they have seen ``expect`` records (or a StopLoop), within 60 s; the producer and
    the consumer are stopped whatever the loop raised."""
    producer = make_producer(settings)
    await producer.start()
    stop = asyncio.Event()
    consumer, hooks, loop = loop_of(settings, source, group, producer, out, stop, expect, mode, pipeline)
    await consumer.start()
    try:
        await asyncio.wait_for(loop.run(stop), 60)
    finally:
        await consumer.stop()
        await producer.stop()
    return hooks


def loop_of(
    settings: Settings,
    topic: str,
    group: str,
    producer,
    out: str,
    stop: asyncio.Event,
    expect: int,
    commit: Commit,
    pipeline: Pipeline | None = None,
) -> tuple:
    """A consumer in ``group`` subscribed to ``topic`` with the driver's listener, Echo's hooks (pipelined:
    StopWhenIdle's), and the loop."""
    consumer = make_consumer(settings, group_id=group)
    runtime = Runtime(DeadLetters("looptest", settings.topics.deadletter), producer)
    hooks = (Echo if pipeline is None else StopWhenIdle)(runtime, out, stop, expect)
    loop = ConsumeLoop(consumer, runtime, hooks, commit=commit, poll_ms=100, max_records=5, pipeline=pipeline)
    consumer.subscribe([topic], listener=loop.listener())
    return consumer, hooks, loop


def echo_run(
    settings: Settings, topic_prefix: str, values: list[bytes], mode: Commit, pipeline: Pipeline | None = None
) -> tuple[Echo, list[ConsumerRecord], list[ConsumerRecord], dict[int, int | None]]:
    """``values`` (one b"bad") through Echo's loop: its hooks, the records produced, the dead letters and the group's
    committed offsets afterwards."""
    source, out, group = f"{topic_prefix}-in", f"{topic_prefix}-out", f"{topic_prefix}-g"

    async def scenario() -> tuple[Echo, list, list, dict]:
        await ensure_topics(settings, [new_topic(settings, t) for t in (source, out, settings.topics.deadletter)])
        await produce(settings, source, values)
        hooks = await run_loop(settings, source, group, out, len(values), mode, pipeline)
        outs = await read_all(settings, out, len(values) - 1)
        letters = await read_all(settings, settings.topics.deadletter, 1)
        return hooks, outs, letters, await committed(settings, group, source)

    return asyncio.run(scenario())


@pytest.mark.parametrize("mode", [Commit.EACH_BATCH, Commit.AT_CHECKPOINT])
def test_the_loop_produces_every_record_and_commits_past_them(settings: Settings, topic_prefix: str, mode) -> None:
    source = f"{topic_prefix}-in"
    values = [b"%d" % n for n in range(20)]
    values[7] = b"bad"
    hooks, outs, letters, offsets = echo_run(settings, topic_prefix, values, mode)
    assert sorted(r.value for r in outs) == sorted(v for v in values if v != b"bad")
    [letter] = [DeadLetter.from_dict(orjson.loads(r.value)) for r in letters]
    assert (letter.stage, letter.reason, letter.original) == ("looptest", "bad on purpose", b"bad")
    assert offsets == {0: 10, 1: 10}  # past every record, and no further
    commits = [entry for entry in hooks.journal if entry[0] == "before_commit"]
    assert all(not unflushed for _, _, unflushed in commits)  # every delivery confirmed before any commit
    if mode is Commit.EACH_BATCH:
        assert len(commits) >= 4  # one per batch (at most 5 records each)
    else:
        # nothing committed until the loop stopped: one commit, past everything
        assert [offsets for _, offsets, _ in commits] == [
            {TopicPartition(source, 0): 10, TopicPartition(source, 1): 10}
        ]


def test_a_refused_record_stops_the_loop_and_stop_loop_leaves_the_batch_uncommitted(
    settings: Settings, topic_prefix: str
) -> None:
    source, small, group = f"{topic_prefix}-in", f"{topic_prefix}-small", f"{topic_prefix}-g"

    async def run_once(values: list[bytes], mode: Commit) -> BaseException | None:
        await produce(settings, source, values, partition=0)
        try:
            await run_loop(settings, source, group, small, len(values), mode)
        except BrokerError as exc:
            return exc
        return None

    async def scenario() -> list:
        specs = [new_topic(settings, source), new_topic(settings, small, {"max.message.bytes": "1024"})]
        await ensure_topics(settings, [*specs, new_topic(settings, settings.topics.deadletter)])
        results = [await run_once([b"x" * 10, b"x" * 4096], mode) for mode in Commit]
        after_refusals = await committed(settings, group, source)
        stopped = await run_once([b"stop"], Commit.EACH_BATCH)
        return [results, after_refusals, stopped, await committed(settings, group, source)]

    (results, after_refusals, stopped, after_stop) = asyncio.run(scenario())
    assert all(isinstance(r, BrokerError) for r in results)  # published or sent: the refusal stops the loop
    assert after_refusals[0] is None  # and nothing was committed past the refused record, in either mode
    assert stopped is None  # StopLoop ends run() quietly
    assert after_stop[0] is None  # its batch (and the refused ones before it) left to be read again


def test_a_revocation_commits_the_revoked_partitions_before_they_move(settings: Settings, topic_prefix: str) -> None:
    source, out, group = f"{topic_prefix}-in", f"{topic_prefix}-out", f"{topic_prefix}-g"
    first = [b"a%d" % n for n in range(10)]
    second = [b"b%d" % n for n in range(10)]

    async def scenario() -> tuple[Echo, Echo]:
        await ensure_topics(settings, [new_topic(settings, t) for t in (source, out, settings.topics.deadletter)])
        await produce(settings, source, first)
        producer = make_producer(settings)
        await producer.start()
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        # AT_CHECKPOINT and no tick: A commits only when partitions are revoked (or when it stops)
        never = 10**6  # records to see before the hook stops the loop itself: it never does here
        consumer_a, a, loop_a = loop_of(settings, source, group, producer, out, stop_a, never, Commit.AT_CHECKPOINT)
        consumer_b, b, loop_b = loop_of(settings, source, group, producer, out, stop_b, never, Commit.AT_CHECKPOINT)
        await consumer_a.start()
        task_a = asyncio.create_task(loop_a.run(stop_a))
        try:
            deadline = time.monotonic() + 60
            while len(a.seen) < len(first):
                assert time.monotonic() < deadline, "A never read the first records"
                await asyncio.sleep(0.1)
            assert loop_a.pending  # processed, not committed
            await consumer_b.start()
            task_b = asyncio.create_task(loop_b.run(stop_b))
            while not any(e[0] == "assign" and e[1] for e in b.journal):
                assert time.monotonic() < deadline, "B was never given a partition"
                await asyncio.sleep(0.1)
            await produce(settings, source, second)
            while len(a.seen) + len(b.seen) < len(first) + len(second):
                assert time.monotonic() < deadline + 30, "the second records were not all read"
                await asyncio.sleep(0.1)
            stop_a.set()
            stop_b.set()
            await asyncio.wait_for(asyncio.gather(task_a, task_b), 60)
        finally:
            await consumer_a.stop()
            await consumer_b.stop()
            await producer.stop()
        return a, b

    a, b = asyncio.run(scenario())
    # A's revocation committed its pending offsets first, then told A: B started after them, replaying nothing
    revoke = next(i for i, e in enumerate(a.journal) if e[0] == "revoke" and e[1])
    before = [e for e in a.journal[:revoke] if e[0] == "after_commit"]
    assert before and before[-1][2] is True
    assert {tp.partition for tp in before[-1][1]} >= a.journal[revoke][1]
    everything = a.seen + b.seen
    assert len(everything) == len(set(everything)) == len(first) + len(second)  # none twice, none lost
    b_partitions = {p for p, _ in b.seen}
    assert b_partitions and all(offset >= 5 for _, offset in b.seen)  # B began where A's commit left off


PIPELINE = Pipeline(max_records=4, max_wait_ms=300, depth=2, tick_s=0.5, handover_wait_s=5.0)


def test_a_pipelined_loop_commits_each_micro_batch_after_its_records_and_ticks_when_idle(
    settings: Settings, topic_prefix: str
) -> None:
    values = [b"%d" % n for n in range(23)]
    values[9] = b"bad"
    hooks, outs, letters, offsets = echo_run(settings, topic_prefix, values, Commit.EACH_BATCH, PIPELINE)
    assert sorted(r.value for r in outs) == sorted(v for v in values if v != b"bad")
    assert len(letters) == 1
    assert offsets == {0: 12, 1: 11}  # past every record, and no further
    assert sum(hooks.batches) == len(values) and max(hooks.batches) <= PIPELINE.max_records
    assert sorted(hooks.seen) == sorted(set(hooks.seen))  # no record processed twice
    for partition in (0, 1):  # each partition's records processed in order
        offsets_seen = [o for p, o in hooks.seen if p == partition]
        assert offsets_seen == sorted(offsets_seen)
    events = [e[0] for e in hooks.journal if e[0] in ("after_publish", "before_commit", "after_commit")]
    # each batch: its records acknowledged, then its commit confirmed (before_commit / after_commit)
    assert events == ["after_publish", "before_commit", "after_commit"] * len(hooks.batches)
    assert not any(e[2] for e in hooks.journal if e[0] == "after_publish")  # nothing unacknowledged there
    assert ("tick", len(values)) in hooks.journal  # idle once every record was seen: the tick stopped the loop


def test_a_pipelined_loop_ends_quietly_on_stop_loop_with_its_batch_uncommitted(
    settings: Settings, topic_prefix: str
) -> None:
    source, out, group = f"{topic_prefix}-in", f"{topic_prefix}-out", f"{topic_prefix}-g"

    async def scenario() -> dict:
        await ensure_topics(settings, [new_topic(settings, t) for t in (source, out, settings.topics.deadletter)])
        await produce(settings, source, [b"stop"], partition=0)
        await run_loop(settings, source, group, out, 1, Commit.EACH_BATCH, PIPELINE)
        return await committed(settings, group, source)

    assert asyncio.run(scenario()) == {0: None, 1: None}


def test_a_pipelined_loop_commits_each_batch(settings: Settings) -> None:
    async def build() -> None:
        consumer = make_consumer(settings, group_id="unused")  # not started: the loop refuses before it would poll
        runtime = Runtime(DeadLetters("looptest", settings.topics.deadletter))
        hooks = Echo(runtime, "out", asyncio.Event(), 1)
        ConsumeLoop(consumer, runtime, hooks, commit=Commit.AT_CHECKPOINT, poll_ms=100, pipeline=PIPELINE)

    with pytest.raises(ConfigError, match="pipeline"):
        asyncio.run(build())
