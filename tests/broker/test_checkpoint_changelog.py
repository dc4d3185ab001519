"""Incremental checkpoints: the changelog's records, how they read back, and restores that stay exact.

The unit tests keep the state topic as a list of (key, value) records, the way a partition holds them; ``compacted``
keeps what Kafka's log cleaner may leave of it at the worst moment (the latest record per key, tombstones gone). The
broker tests write and read the same records through ``CheckpointStore`` on a real Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import orjson
import pytest

from harness.broker.running import RunningBroker
from harness.stages import SETTINGS, lines_topic_records, to_sessions_topic
from harness.streaming import (
    DATA,
    block_lines,
    check_sessions,
    hdfs_system,
    read_topic,
    running_worker,
    settings_for,
)
from stream.errors import StateError
from stream.pipeline.changelog import (
    CLOSED,
    Checkpoint,
    PartitionChangelog,
    Record,
    StateChanges,
    changelog_name,
    encode_value,
    encode_whole_state,
    entry_key,
    read_changelogs,
)
from stream.pipeline.checkpoint import CheckpointStore
from stream.pipeline.kafka_clients import ensure_topics, make_producer, records_to_end, topic_specs
from stream.pipeline.parse_stage import ParsePartition
from stream.pipeline.session_stage import STAGE, SessionPartition, entry_id
from stream.pipeline.stage import InputRecord, state_changes
from stream.pipeline.worker import run_worker
from stream.records import Outgoing
from stream.replay import replay, replay_records
from stream.settings import Settings, load_settings
from stream.windowing import Item, Session, SessionWindower

NAME = "session/adaptlog-sessions/0"


def compacted(log: list[Record]) -> list[Record]:
    """What compaction may leave: the latest record of each key, in log order, tombstones removed."""
    latest = {key: index for index, (key, _) in enumerate(log)}
    return [(key, value) for index, (key, value) in enumerate(log) if latest[key] == index and value is not None]


def restore(log: list[Record], name: str = NAME) -> tuple[Checkpoint | None, PartitionChangelog]:
    return read_changelogs([name], log)[name].result()


def sessions_records() -> list[InputRecord]:
    """HDFS_5k's lines as the session stage reads them (routed by block), a tick at the end."""
    parse = ParsePartition(SETTINGS)
    return to_sessions_topic([out for record in lines_topic_records() for out in parse.process_batch([record])])


@pytest.fixture(scope="module")
def sessions() -> list[InputRecord]:
    return sessions_records()


# --- the records one checkpoint writes --------------------------------------------------------------------------


def test_a_checkpoint_writes_changed_entries_before_the_head_and_retires_old_versions_after_it() -> None:
    changelog = PartitionChangelog(NAME)
    first = changelog.plan(10, StateChanges({"n": 1}, {"a": [1], "b": [2]}))
    changelog.commit(first)
    second = changelog.plan(20, StateChanges({"n": 2}, {"a": [1, 3], "b": None, "never-written": None}))
    assert [key for key, _ in first.before_head] == [entry_key(NAME, 1, "a"), entry_key(NAME, 1, "b")]
    assert first.head[0] == NAME.encode() and first.after_head == []
    # only what changed: a grows, b closes (a marker), an entry the changelog never held needs nothing
    assert second.before_head == [(entry_key(NAME, 2, "a"), encode_value([1, 3])), (entry_key(NAME, 2, "b"), CLOSED)]
    assert second.after_head == [
        (entry_key(NAME, 1, "a"), None),
        (entry_key(NAME, 1, "b"), None),  # b's old version goes before its marker, never after
        (entry_key(NAME, 2, "b"), None),
    ]
    changelog.commit(second)
    checkpoint, _ = restore(first.records + second.records)
    assert checkpoint == Checkpoint(20, {"n": 2}, {"a": [1, 3]})


def test_a_crash_anywhere_in_a_checkpoint_restores_the_old_or_the_new_one_whole() -> None:
    changelog = PartitionChangelog(NAME)
    log: list[Record] = []
    old = changelog.plan(5, StateChanges({"n": 1}, {"a": [1], "b": [2], "c": [3]}))
    changelog.commit(old)
    log += old.records
    new = changelog.plan(9, StateChanges({"n": 2}, {"a": [1, 4], "b": None, "d": [5]}))
    before = Checkpoint(5, {"n": 1}, {"a": [1], "b": [2], "c": [3]})
    after = Checkpoint(9, {"n": 2}, {"a": [1, 4], "c": [3], "d": [5]})
    head_at = len(new.before_head)
    for cut in range(len(new.records) + 1):
        written = log + new.records[:cut]
        for view in (written, compacted(written)):
            checkpoint, _ = restore(view)
            assert checkpoint == (after if cut > head_at else before), cut


def test_records_of_an_interrupted_checkpoint_are_deleted_before_the_next_head_and_never_reused() -> None:
    changelog = PartitionChangelog(NAME)
    log: list[Record] = []
    first = changelog.plan(5, StateChanges({}, {"a": [1]}))
    changelog.commit(first)
    log += first.records
    interrupted = changelog.plan(7, StateChanges({}, {"a": [1, 2], "z": [9]}))
    log += interrupted.before_head  # the worker died before the head
    checkpoint, resumed = restore(log)
    assert checkpoint is not None and checkpoint.entries == {"a": [1]}
    assert set(resumed.garbage) == {entry_key(NAME, 2, "a"), entry_key(NAME, 2, "z")}
    assert resumed.next_epoch == 3  # above the interrupted epoch, so z@2 can never read as committed
    following = resumed.plan(8, StateChanges({}, {"b": [3]}))
    assert following.before_head[:2] == [(key, None) for key in resumed.garbage]  # tombstoned before the head
    resumed.commit(following)
    log += following.records
    for view in (log, compacted(log)):
        restored, _ = restore(view)
        assert restored == Checkpoint(8, {}, {"a": [1], "b": [3]})


def test_left_overs_of_an_interrupted_clean_up_are_retired_by_the_next_checkpoint() -> None:
    changelog = PartitionChangelog(NAME)
    first = changelog.plan(1, StateChanges({}, {"a": [1], "b": [2]}))
    changelog.commit(first)
    second = changelog.plan(2, StateChanges({}, {"a": [1, 1], "b": None}))
    log = first.records + second.before_head + [second.head]  # died before its tombstones
    checkpoint, resumed = restore(log)
    assert checkpoint == Checkpoint(2, {}, {"a": [1, 1]})
    assert resumed.retired == [entry_key(NAME, 1, "a"), entry_key(NAME, 1, "b"), entry_key(NAME, 2, "b")]
    third = resumed.plan(3, StateChanges({}, {}))
    log += third.records
    assert compacted(log) == [
        (entry_key(NAME, 2, "a"), encode_value([1, 1])),
        (NAME.encode(), third.head[1]),
    ]


def test_other_partitions_records_are_not_mistaken_for_ours() -> None:
    mine, theirs = PartitionChangelog(NAME), PartitionChangelog(NAME + "0")  # ".../0" and ".../00"
    log = mine.plan(1, StateChanges({"me": 1}, {"a": [1]})).records
    log += theirs.plan(2, StateChanges({"me": 0}, {"a": [0], "b": [0]})).records
    checkpoint, changelog = restore(log)
    assert checkpoint == Checkpoint(1, {"me": 1}, {"a": [1]})
    assert changelog.next_epoch == 2 and changelog.garbage == changelog.retired == []


def test_a_lost_entry_an_unknown_format_and_a_malformed_record_are_clear_errors() -> None:
    changelog = PartitionChangelog(NAME)
    plan = changelog.plan(1, StateChanges({}, {"a": [1], "b": [2]}))
    lost = [*plan.records, (entry_key(NAME, 1, "b"), None)]
    with pytest.raises(StateError, match="counts 2 entries, the state topic holds 1"):
        restore(lost)
    future = [(NAME.encode(), encode_value({"version": 3, "offset": 1, "state": {}}))]
    with pytest.raises(StateError, match="checkpoint format 3, this build reads 1 and 2"):
        restore(future)
    with pytest.raises(StateError, match="malformed"):
        restore([(NAME.encode(), b"not zlib")])
    with pytest.raises(StateError, match="malformed key"):
        restore([(NAME.encode() + b"#x#a", encode_value([1]))])


# --- session windows: what changed, and restores from it ----------------------------------------------------------


def item(event_ms: int, n: int) -> Item:
    return Item(event_ms=event_ms, arrival_ms=event_ms, payload={"n": n})


def test_a_session_windower_reports_only_the_sessions_that_changed() -> None:
    policy = Session(gap_ms=100, idle_timeout_ms=1_000)
    windower = SessionWindower(policy)
    for key in ("a", "b", "c"):
        windower.push(item(0, 0), key)
    _, first = windower.changes()
    assert set(first) == {"a", "b", "c"}
    windower.push(item(10, 1), "b")
    windower.push(item(500, 2), "c")  # past the gap: c's session closes and a new one opens
    windower.push(item(0, 3), "d")
    windower.tick(1_010)  # a, b, d idle (newest arrivals 0-10), c's new session (500) not
    _, second = windower.changes()
    assert second == {"a": None, "b": None, "c": [3, [[500, 500, {"n": 2}]]], "d": None}
    assert windower.changes()[1] == {}  # each call starts the next set


def test_a_session_windower_rebuilt_from_its_changes_goes_on_exactly() -> None:
    """Entries written at different checkpoints keep their opening numbers: ties close in the same order."""
    policy = Session(gap_ms=100, idle_timeout_ms=1_000)
    windower = SessionWindower(policy)
    latest: dict[str, object] = {}

    def checkpoint() -> object:
        meta, changed = windower.changes()
        for key, entry in changed.items():
            if entry is None:
                latest.pop(key, None)
            else:
                latest[key] = orjson.loads(orjson.dumps(entry))
        return orjson.loads(orjson.dumps(meta))

    for n, key in enumerate(["x", "y", "z"]):
        windower.push(item(n, n), key)
    checkpoint()
    windower.push(item(50, 3), "x")  # only x is rewritten; y and z keep their first entries
    windower.push(item(200, 4), "y")  # y: gap, reopened with a new number
    meta = checkpoint()
    resumed = SessionWindower.from_changes(policy, meta, dict(latest))
    assert resumed.snapshot() == windower.snapshot()
    going_on = [item(400, 5), item(401, 6)]
    assert [resumed.push(i, "w") for i in going_on] == [windower.push(i, "w") for i in going_on]
    assert resumed.flush() == windower.flush()
    with pytest.raises(StateError, match="not the configured"):
        SessionWindower.from_changes(Session(gap_ms=99), meta, dict(latest))
    with pytest.raises(StateError, match="holds 2 open sessions, its meta record says 3"):
        SessionWindower.from_changes(policy, meta, {k: v for k, v in latest.items() if k != "z"})


def run_with_changelog(
    records: list[InputRecord], settings: Settings, every: int, restore_at: set[int]
) -> tuple[list[Outgoing], list[Record], list[int], list[int]]:
    """The session stage over ``records``, checkpointing every ``every`` records into a list as the state topic
    would hold it, and restored from that list (compacted) before each index in ``restore_at``. Returns its outputs,
    the log, and the bytes of each checkpoint, incremental and (for comparison) whole."""
    log: list[Record] = []
    processor = SessionPartition(settings)
    changelog = PartitionChangelog(NAME)
    sizes: list[int] = []
    whole: list[int] = []
    out: list[Outgoing] = []
    for index, record in enumerate(records):
        if index in restore_at:
            checkpoint, changelog = restore(compacted(log))
            assert checkpoint is not None and checkpoint.offset == index  # checkpointed just before
            processor = SessionPartition(settings, checkpoint)
        out += processor.process_batch([record])
        if (index + 1) % every == 0:
            plan = changelog.plan(index + 1, state_changes(processor) or StateChanges({}))
            log += plan.records
            changelog.commit(plan)
            sizes.append(plan.size)
            whole.append(len(encode_whole_state(index + 1, processor.snapshot())))
    return out, log, sizes, whole


def test_the_session_stage_restored_from_its_changelog_goes_on_exactly(sessions: list[InputRecord]) -> None:
    uninterrupted, _, _, _ = run_with_changelog(sessions, SETTINGS, every=5, restore_at=set())
    last = (len(sessions) - 1) // 5 * 5
    restored, log, sizes, whole = run_with_changelog(sessions, SETTINGS, every=5, restore_at={5, 40, last})
    assert restored == uninterrupted
    by_block: dict[str, list[int]] = {}
    for window in (orjson.loads(o.value) for o in uninterrupted):
        by_block.setdefault(window["key"], []).extend(line["offset"] for line in window["lines"])
    assert by_block == block_lines(DATA / "hdfs" / "HDFS_5k.log")  # every block's lines, each once, in order
    assert sum(sizes) < sum(whole) / 2
    # compaction leaves the committed state and nothing else: one record per open session and the head
    checkpoint, changelog = restore(compacted(log))
    assert checkpoint is not None and changelog.garbage == changelog.retired == []
    assert len(compacted(log)) == len(checkpoint.entries or {}) + 1


def test_a_format1_checkpoint_restores_whole_and_the_next_checkpoint_migrates_it(sessions: list[InputRecord]) -> None:
    processor = SessionPartition(SETTINGS)
    for record in sessions[:30]:
        processor.process_batch([record])
    whole = orjson.loads(orjson.dumps(processor.snapshot()))
    log: list[Record] = [(NAME.encode(), encode_whole_state(30, whole))]  # as builds before 2026-12 wrote it
    checkpoint, changelog = restore(log)
    assert checkpoint == Checkpoint(30, whole, None)
    migrated = SessionPartition(SETTINGS, checkpoint)
    assert migrated.snapshot() == whole
    plan = changelog.plan(30, migrated.state_changes())
    open_sessions = sum(len(w["state"]["sessions"]) for w in whole["windowers"].values())
    assert len(plan.before_head) == open_sessions > 10  # every session, since the changelog holds none yet
    log += plan.records
    for view in (log, compacted(log)):
        again, _ = restore(view)
        assert again is not None and again.entries is not None
        assert SessionPartition(SETTINGS, again).snapshot() == whole


def test_sessions_of_a_system_no_longer_configured_are_deleted_from_the_changelog(
    sessions: list[InputRecord],
) -> None:
    processor = SessionPartition(SETTINGS)
    for record in sessions[:30]:
        processor.process_batch([record])
    changelog = PartitionChangelog(NAME)
    plan = changelog.plan(30, processor.state_changes())
    changelog.commit(plan)
    without_hdfs = load_settings(systems={"bgl": SETTINGS.systems["bgl"]})
    checkpoint, changelog = restore(plan.records)
    assert checkpoint is not None and checkpoint.entries
    after = SessionPartition(without_hdfs, checkpoint)
    changes = after.state_changes()
    assert set(changes.entries) == set(checkpoint.entries) and set(changes.entries.values()) == {None}
    log = plan.records + changelog.plan(31, changes).records
    assert restore(compacted(log))[0] == Checkpoint(31, {"upstream": changes.head["upstream"], "windowers": {}}, {})


def test_a_line_of_a_system_not_windowed_by_sessions_is_dead_lettered(sessions: list[InputRecord]) -> None:
    """Settings changed between the parse stage routing the line and this stage reading it."""
    batch = orjson.loads(sessions[0].value or b"")
    value = orjson.dumps({**batch, "system": "bgl", "rows": batch["rows"][:1]})
    (out,) = SessionPartition(SETTINGS).process_batch([InputRecord("sessions", 0, 0, b"k", value, 1)])
    assert out.topic == SETTINGS.topics.deadletter and b"not by sessions" in out.value
    assert entry_id("bgl", "k") == '["bgl","k"]'


# --- through a real broker ---------------------------------------------------------------------------------------


def checkpoints_of(processor: SessionPartition, records: list[InputRecord], every: int) -> Iterator[int]:
    for index, record in enumerate(records):
        processor.process_batch([record])
        if (index + 1) % every == 0:
            yield index + 1


def test_the_store_restores_exactly_through_kafka_and_writes_only_what_changed(
    kafka_broker: RunningBroker, topic_prefix: str, sessions: list[InputRecord]
) -> None:
    settings = settings_for(
        kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence, systems=dict(SETTINGS.systems)
    )
    stage, topic = "session", settings.topics.sessions

    async def scenario() -> None:
        await ensure_topics(settings, topic_specs(settings))
        producer = make_producer(settings)
        await producer.start()
        try:
            store = CheckpointStore(settings, producer)
            assert await store.load(stage, topic, [1]) == {}
            processor = SessionPartition(settings)
            written: list[tuple[int, int]] = []  # (sessions written, sessions open) per checkpoint
            for offset in checkpoints_of(processor, sessions[:60], every=20):
                changes = processor.state_changes()
                await store.save(stage, topic, 1, offset, changes)
                written.append((len(changes.entries), processor.system_stats()[0].open_windows))
                restored = (await CheckpointStore(settings, producer).load(stage, topic, [1]))[1]
                assert restored.offset == offset
                assert SessionPartition(settings, restored).snapshot() == processor.snapshot()
            assert written[0][0] == written[0][1]  # the first writes every open session
            assert all(changed < open_sessions for changed, open_sessions in written[1:])  # later ones what changed

            # A worker dies mid-checkpoint: its entries reached the topic, its head did not.
            before = processor.snapshot()
            for record in sessions[60:80]:
                processor.process_batch([record])
            changelog = await _changelog(settings, f"{stage}/{topic}/1", 1)
            interrupted = changelog.plan(80, processor.state_changes())
            for key, value in interrupted.before_head:
                await producer.send_and_wait(settings.topics.state, value, key=key, partition=1)
            fresh = CheckpointStore(settings, producer)
            restored = (await fresh.load(stage, topic, [1]))[1]
            assert restored.offset == 60 and SessionPartition(settings, restored).snapshot() == before

            # Its successor replays from 60 and checkpoints; the interrupted records never come back.
            successor = SessionPartition(settings, restored)
            for record in sessions[60:80]:
                successor.process_batch([record])
            await fresh.save(stage, topic, 1, 80, successor.state_changes())
            final = (await CheckpointStore(settings, producer).load(stage, topic, [1]))[1]
            assert final.offset == 80 and SessionPartition(settings, final).snapshot() == processor.snapshot()

            # A format-1 checkpoint of another partition migrates on its first checkpoint.
            await producer.send_and_wait(
                settings.topics.state, encode_whole_state(60, before), key=b"session/%s/2" % topic.encode(), partition=2
            )
            old = (await store.load(stage, topic, [2]))[2]
            assert old.entries is None
            migrating = SessionPartition(settings, old)
            await store.save(stage, topic, 2, 60, migrating.state_changes())
            new = (await CheckpointStore(settings, producer).load(stage, topic, [2]))[2]
            assert new.entries is not None and SessionPartition(settings, new).snapshot() == before
        finally:
            await producer.stop()

    asyncio.run(scenario())


async def _changelog(settings: Settings, name: str, state_partition: int) -> PartitionChangelog:
    """A changelog as a worker restoring it learns it from the state topic."""
    records = [(r.key, r.value) async for r in records_to_end(settings, settings.topics.state, {state_partition})]
    return read_changelogs([name], records)[name].result()[1]


async def _open_session_lines(settings: Settings, partitions: int) -> int:
    """Lines in the sessions the session stage has checkpointed, over all its partitions."""
    producer = make_producer(settings)  # never started: load reads with its own consumer
    found = await CheckpointStore(settings, producer).load(STAGE, settings.topics.sessions, list(range(partitions)))
    return sum(
        len(session[1])
        for checkpoint in found.values()
        for windower in SessionPartition(settings, checkpoint).snapshot()["windowers"].values()
        for session in windower["state"]["sessions"]
    )


async def _rewrite_as_format1(settings: Settings, partitions: int) -> int:
    """Each session partition's checkpoint as builds before the changelog wrote it; returns how many there were."""
    producer = make_producer(settings)
    await producer.start()
    try:
        store = CheckpointStore(settings, producer)
        found = await store.load(STAGE, settings.topics.sessions, list(range(partitions)))
        for partition, checkpoint in found.items():
            whole = SessionPartition(settings, checkpoint).snapshot()
            key = changelog_name(STAGE, settings.topics.sessions, partition).encode()
            value = encode_whole_state(checkpoint.offset, whole)
            await producer.send_and_wait(settings.topics.state, value, key=key, partition=partition % partitions)
        again = await CheckpointStore(settings, producer).load(STAGE, settings.topics.sessions, list(found))
        assert all(checkpoint.entries is None for checkpoint in again.values())
        return len(found)
    finally:
        await producer.stop()


@pytest.mark.slow
def test_a_worker_restores_format1_checkpoints_and_every_block_stays_complete(
    kafka_broker: RunningBroker, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Half of HDFS_5k read by a worker, its session checkpoints rewritten in the old format, the rest read by a
    new worker: every block's window holds exactly its lines."""
    settings = settings_for(
        kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence, systems={"hdfs": hdfs_system(30_000)}
    )
    path = DATA / "hdfs" / "HDFS_5k.log"
    truth = block_lines(path)
    records = list(replay_records(path, "hdfs", settings.systems["hdfs"].line_format("hdfs")))
    half = 2_000
    first_half_lines = sum(1 for lines in truth.values() for line in lines if line < half)
    partitions = settings.internal_partitions

    async def scenario() -> list[dict]:
        await ensure_topics(settings, topic_specs(settings))
        await replay(settings, iter(records[:half]), "hdfs")
        async with running_worker(settings):  # idle timeout 30 s: nothing closes before it stops
            deadline = time.monotonic() + 90
            while await _open_session_lines(settings, partitions) < first_half_lines:
                assert time.monotonic() < deadline, "the first worker never checkpointed the first half"
                await asyncio.sleep(0.5)
        assert await _rewrite_as_format1(settings, partitions) > 0
        await replay(settings, iter(records[half:]), "hdfs")
        with caplog.at_level(logging.WARNING, logger="stream.pipeline.checkpoint"):
            async with running_worker(settings):
                return await read_topic(settings, settings.topics.windows, until=len(truth), timeout_s=150)

    windows = asyncio.run(scenario())
    assert "restoring a format-1 (whole-state) checkpoint" in caplog.text
    check_sessions(windows, truth)


def test_a_checkpoint_that_does_not_read_back_stops_the_worker_loudly(
    kafka_broker: RunningBroker, topic_prefix: str
) -> None:
    """aiokafka swallows what a rebalance listener raises: the partition used to sit unprocessed without a word."""
    settings = settings_for(
        kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence, systems={"hdfs": hdfs_system(30_000)}
    )
    partitions = settings.internal_partitions

    async def scenario() -> None:
        await ensure_topics(settings, topic_specs(settings))
        producer = make_producer(settings)
        await producer.start()
        try:
            for partition in range(partitions):
                key = changelog_name(STAGE, settings.topics.sessions, partition).encode()
                await producer.send_and_wait(settings.topics.state, b"not a checkpoint", key=key, partition=partition)
        finally:
            await producer.stop()
        with pytest.raises(StateError, match="checkpoint record is malformed"):
            await asyncio.wait_for(run_worker(settings, asyncio.Event(), report_every_s=60), 90)

    asyncio.run(scenario())


def test_after_a_checkpoint_failed_part_way_the_store_refuses_to_write_an_incomplete_one(
    kafka_broker: RunningBroker, topic_prefix: str
) -> None:
    """The processor handed its changes to the failed save: a later save would commit a head without them."""
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence)

    async def scenario() -> None:
        await ensure_topics(settings, topic_specs(settings))
        producer = make_producer(settings)
        await producer.start()
        store = CheckpointStore(settings, producer)
        await store.load(STAGE, settings.topics.sessions, [0])
        await store.save(STAGE, settings.topics.sessions, 0, 1, StateChanges({}, {"a": [1]}))
        await producer.stop()  # the broker connection is gone mid-run
        with pytest.raises(Exception) as failed:
            await store.save(STAGE, settings.topics.sessions, 0, 2, StateChanges({}, {"b": [2]}))
        assert not isinstance(failed.value, StateError)
        with pytest.raises(StateError, match="an earlier checkpoint failed part-way"):
            await store.save(STAGE, settings.topics.sessions, 0, 3, StateChanges({}, {}))
        reader = CheckpointStore(settings, make_producer(settings))
        assert (await reader.load(STAGE, settings.topics.sessions, [0]))[0] == Checkpoint(1, {}, {"a": [1]})

    asyncio.run(scenario())
