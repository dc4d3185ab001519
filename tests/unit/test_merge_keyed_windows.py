"""Keyed mining with count and event-time windows (issue "Scale one system across workers", item 1): the system's
mined lines come from every ``lines`` partition and are merged back into source order (``stream.pipeline.merge``)
before they are windowed. Through the real ingest, parse and session stage processors, without a broker: whatever
the interleaving of the parse partitions, a restart of the session partition from its checkpoint, or a parse
partition sending its records again, every window holds the lines the whole-system pipeline puts in it, in the same
order, with the same templates. The two-worker run through a SIGKILL on a real broker is
tests/broker/test_stream_recovery.py."""

from __future__ import annotations

import logging
import random
from collections import defaultdict

import orjson
import pytest

from harness.stages import comparable_windows, one_miner_windows
from harness.streaming import DATA
from stream.decode import Decoder
from stream.errors import ConfigError
from stream.pipeline.ingest_stage import IngestPartition
from stream.pipeline.merge import SourceOrderMerge
from stream.pipeline.parse_stage import ParsePartition
from stream.pipeline.session_stage import SessionPartition
from stream.pipeline.stage import InputRecord
from stream.records import TICK, Outgoing, encode
from stream.records.batches import SessionBatch, mark_value
from stream.replay import replay_records
from stream.settings import Settings, SystemSettings, load_settings

PARTITIONS = 4
PATH = DATA / "bgl" / "BGL_2k.log"
WINDOWS = {
    "count_tumbling": {"kind": "count_tumbling", "size": 20},
    "count_sliding": {"kind": "count_sliding", "size": 20, "step": 5},
    # BGL_2k's event times span months: hour buckets, a grace that lets its few out-of-order lines in
    "event_tumbling": {"kind": "event_tumbling", "size_ms": 3_600_000, "grace_ms": 60_000, "max_future_ms": None},
}


def settings_of(window: dict, mining: str) -> Settings:
    bgl = SystemSettings(format="bgl", drain={"depth": 4, "sim_th": 0.5}, window=window, mining=mining)
    return load_settings(systems={"bgl": bgl}, internal_partitions=PARTITIONS)


def lines_by_partition(settings: Settings) -> dict[int, list[InputRecord]]:
    """BGL_2k through the ingest stage in batches of 50 input records, as each ``lines`` partition would hold it."""
    ingest = IngestPartition(settings, Decoder(settings), PARTITIONS)
    replayed = list(replay_records(PATH, "bgl", settings.systems["bgl"].line_format("bgl")))
    partitions: dict[int, list[InputRecord]] = defaultdict(list)
    for start in range(0, len(replayed), 50):
        batch = [
            InputRecord("logs", 0, start + i, b"bgl", r.value, 1_000 + start + i, r.headers)
            for i, r in enumerate(replayed[start : start + 50])
        ]
        for out in ingest.process_batch(batch):
            assert out.topic == settings.topics.lines and out.partition is not None
            held = partitions[out.partition]
            held.append(InputRecord(out.topic, out.partition, len(held), out.key, out.value, 10_000 + start))
    return partitions


def parsed_by_partition(settings: Settings) -> dict[int, list[Outgoing]]:
    """What each parse partition sends on (mined lines and passed-on marks), in its own order."""
    sent: dict[int, list[Outgoing]] = {}
    for partition, records in sorted(lines_by_partition(settings).items()):
        parse = ParsePartition(settings, session_partitions=PARTITIONS)
        sent[partition] = []
        for start in range(0, len(records), 7):  # the consumer's batches
            out = parse.process_batch(records[start : start + 7])
            assert all(o.topic == settings.topics.sessions for o in out), [o.value[:200] for o in out]
            sent[partition] += out
    return sent


def interleaved(sent: dict[int, list[Outgoing]], seed: int) -> list[Outgoing]:
    """The parse partitions' records as one ``sessions`` partition would receive them from several workers: each
    partition's in its order, the partitions interleaved at random."""
    queues = {p: list(records) for p, records in sent.items() if records}
    rng, out = random.Random(seed), []
    while queues:
        partition = rng.choice(sorted(queues))
        take = rng.randint(1, 5)
        out += queues[partition][:take]
        del queues[partition][:take]
        if not queues[partition]:
            del queues[partition]
    return out


def merged_windows(settings: Settings, arriving: list[Outgoing], restart_every: int = 0) -> list[dict]:
    """The session stage's windows of ``arriving``; with ``restart_every``, the partition restarts from its
    checkpoint (the whole state through JSON) that often."""
    records = [InputRecord(o.topic, 0, i, o.key, o.value, 20_000 + i) for i, o in enumerate(arriving)]
    records.append(InputRecord(settings.topics.sessions, 0, len(records), None, encode(TICK), 10**12))
    stage, out = SessionPartition(settings, lines_partitions=PARTITIONS), []
    for at, record in enumerate(records):
        if restart_every and at % restart_every == 0:
            stage = SessionPartition(settings, orjson.loads(orjson.dumps(stage.snapshot())), PARTITIONS)
        out += stage.process_batch([record])
    assert all(o.topic == settings.topics.windows for o in out), [o.value[:300] for o in out]
    return [orjson.loads(o.value) for o in out]


@pytest.mark.parametrize("kind", sorted(WINDOWS))
def test_merged_windows_are_the_whole_system_windows_whatever_the_interleaving(kind: str) -> None:
    expected = comparable_windows(one_miner_windows("bgl", settings_of(WINDOWS[kind], "system").systems["bgl"], PATH))
    settings = settings_of(WINDOWS[kind], "keyed")
    sent = parsed_by_partition(settings)
    assert sum(1 for records in sent.values() if any(b'"rows":[[' in o.value for o in records)) >= 2
    assert len({o.partition for records in sent.values() for o in records}) == 1  # one sessions partition a system
    assert len(expected) > 10
    for seed in range(3):
        assert comparable_windows(merged_windows(settings, interleaved(sent, seed))) == expected


def test_a_restarted_merge_and_records_sent_twice_change_no_window() -> None:
    window = WINDOWS["count_sliding"]
    expected = comparable_windows(one_miner_windows("bgl", settings_of(window, "system").systems["bgl"], PATH))
    settings = settings_of(window, "keyed")
    sent = parsed_by_partition(settings)
    # a parse partition restarted from an older checkpoint sends its last records again (the same upstream
    # positions: the session stage's dedup drops the lines, and a mark again is a mark already passed)
    again = {p: records[:-3] + records[-6:] if len(records) > 6 else records for p, records in sent.items()}
    arriving = interleaved(again, seed=7)
    assert comparable_windows(merged_windows(settings, arriving, restart_every=13)) == expected


def test_windows_wait_for_the_slowest_parse_partition() -> None:
    merge = SourceOrderMerge(partitions=2)
    row = [0, "", "logs", 0, 5, 0, 1, 1, "t", "t", 0]
    merge.add([row, [*row[:4], 3, *row[5:]]])
    assert merge.mark(0, "logs", 0, 10) == []  # partition 1 could still send a line before offset 10
    released = merge.mark(1, "logs", 0, 4)
    assert [r[4] for r in released] == [3]  # up to the lower mark, in offset order
    assert merge.waiting_count() == 1
    assert merge.mark(1, "logs", 0, 4) == []  # the same mark again releases nothing
    assert [r[4] for r in merge.mark(1, "logs", 0, 9)] == [5]


def test_a_malformed_mark_is_dead_lettered() -> None:
    settings = settings_of(WINDOWS["count_tumbling"], "keyed")
    bad = SessionBatch("bgl", "lines", 0, 3, [], ["logs", "zero", 1])
    stage = SessionPartition(settings, lines_partitions=PARTITIONS)
    (out,) = stage.process_batch([InputRecord("sessions", 0, 0, None, mark_value(bad), 1)])
    assert out.topic == settings.topics.deadletter
    assert "upto" in orjson.loads(out.value)["reason"]
    from_unknown_partition = SessionBatch("bgl", "lines", PARTITIONS, 3, [], ["logs", 0, 1])
    (out,) = stage.process_batch([InputRecord("sessions", 0, 1, None, mark_value(from_unknown_partition), 2)])
    assert out.topic == settings.topics.deadletter
    assert "partition count changed" in orjson.loads(out.value)["reason"]


def test_keyed_count_windows_need_format_2_records() -> None:
    assert settings_of(WINDOWS["count_tumbling"], "keyed").systems["bgl"].merged
    bgl = SystemSettings(format="bgl", mining="keyed", window=WINDOWS["count_tumbling"])
    with pytest.raises(ConfigError, match=r"systems.bgl.mining: keyed mining with count_tumbling windows needs"):
        load_settings(systems={"bgl": bgl}, internal_format=1)


def test_a_merged_system_set_back_to_whole_mining_drops_its_merge_with_a_log_line(caplog) -> None:
    keyed = settings_of(WINDOWS["count_tumbling"], "keyed")
    stage = SessionPartition(keyed, lines_partitions=PARTITIONS)
    arriving = interleaved(parsed_by_partition(keyed), seed=1)
    stage.process_batch([InputRecord(o.topic, 0, i, o.key, o.value, 20_000 + i) for i, o in enumerate(arriving[:40])])
    saved = orjson.loads(orjson.dumps(stage.snapshot()))
    assert set(saved["merged"]) == {"bgl"}
    with caplog.at_level(logging.ERROR, logger="stream.pipeline.stage"):
        after = SessionPartition(settings_of(WINDOWS["count_tumbling"], "system"), saved, PARTITIONS)
    assert "does not fit its settings" in caplog.text and "no longer mined by key" in caplog.text
    assert after.system_stats() == [] and "merged" not in after.snapshot()
    with caplog.at_level(logging.ERROR, logger="stream.pipeline.stage"):
        other_count = SessionPartition(keyed, saved, PARTITIONS + 1)  # the lines topic grew: the marks no longer fit
    assert "lines partitions" in caplog.text and other_count.system_stats() == []


def test_the_lines_a_merge_holds_are_reported_per_system() -> None:
    settings = settings_of(WINDOWS["count_tumbling"], "keyed")
    sent = parsed_by_partition(settings)
    slow = max(sent, key=lambda p: len(sent[p]))  # a parse partition that has sent nothing yet
    others = interleaved({p: records for p, records in sent.items() if p != slow}, seed=3)
    stage = SessionPartition(settings, lines_partitions=PARTITIONS)
    stage.process_batch([InputRecord(o.topic, 0, i, o.key, o.value, 20_000 + i) for i, o in enumerate(others)])
    ((stats),) = stage.system_stats()
    rows = sum(len(orjson.loads(o.value)["rows"]) for o in others)
    assert stats.system == "bgl" and stats.held_lines == rows > 0  # nothing can pass the silent partition's mark
    late = [InputRecord(o.topic, 0, len(others) + i, o.key, o.value, 30_000 + i) for i, o in enumerate(sent[slow])]
    stage.process_batch(late)
    assert stage.system_stats()[0].held_lines == 0
