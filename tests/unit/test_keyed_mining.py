"""One system mined by Drain key across ``lines`` partitions (``mining: keyed``, issue "Scale one system across
workers"), through the real ingest, parse and session stage processors without a broker: lines spread over every
partition in input order, each partition's miner gives every line the template and id one ``KeyedParser`` gives it,
every session window comes out whole and in source order, and the settings refuse what keyed mining cannot window.
The two-worker run with a SIGKILL on a real broker is tests/broker/test_stream_recovery.py."""

from __future__ import annotations

import logging
from collections import defaultdict
from itertools import zip_longest

import orjson

from harness.streaming import DATA, block_lines, hdfs_system
from stream.decode import Decoder
from stream.parsing.sharding import KeyedParser
from stream.pipeline.ingest_stage import IngestPartition
from stream.pipeline.parse_stage import ParsePartition
from stream.pipeline.session_stage import SessionPartition
from stream.pipeline.stage import InputRecord, read_lines
from stream.records import TICK, Outgoing, encode
from stream.replay import open_text, replay_records
from stream.settings import load_settings

PARTITIONS = 4
# an idle timeout longer than the test's arrival clock spans: only the final tick closes sessions
HDFS = hdfs_system(600_000).model_copy(update={"mining": "keyed"})
SETTINGS = load_settings(systems={"hdfs": HDFS}, internal_partitions=PARTITIONS)
PATH = DATA / "hdfs" / "HDFS_5k.log"


def lines_by_partition() -> dict[int, list[InputRecord]]:
    """HDFS_5k through the ingest stage in batches of 50, as each ``lines`` partition would hold it."""
    ingest = IngestPartition(SETTINGS, Decoder(SETTINGS), PARTITIONS)
    replayed = list(replay_records(PATH, "hdfs", HDFS.line_format("hdfs")))
    partitions: dict[int, list[InputRecord]] = defaultdict(list)
    for start in range(0, len(replayed), 50):
        batch = [
            InputRecord("logs", 0, start + i, None, r.value, 1_000 + start + i, r.headers)
            for i, r in enumerate(replayed[start : start + 50])
        ]
        for out in ingest.process_batch(batch):
            assert out.topic == SETTINGS.topics.lines and out.partition is not None and out.key == b"hdfs\x1f"
            held = partitions[out.partition]
            held.append(InputRecord(out.topic, out.partition, len(held), out.key, out.value, 10_000 + start))
    return partitions


def test_a_keyed_system_spreads_over_the_partitions_in_input_order() -> None:
    partitions = lines_by_partition()
    assert len(partitions) >= 2  # HDFS_5k's keys land on several of the 4 partitions
    total = 0
    for records in partitions.values():
        offsets = [row[0] for r in records for batch in read_lines(r) or () for row in batch.rows]
        assert offsets == sorted(offsets)  # the parse stage drops a line not past the last one of its input
        total += len(offsets)
    assert total == sum(1 for line in open_text(PATH) if line)


def test_each_partitions_miner_gives_what_one_keyed_miner_gives_and_sessions_come_out_whole() -> None:
    one_miner = KeyedParser(HDFS.drain_params("hdfs"), HDFS.mask_rules("hdfs"))
    fmt = HDFS.line_format("hdfs")
    expected = [one_miner.parse(fmt.split(line)[0]) for line in open_text(PATH) if line]
    # sessions partition -> what each parse partition routed there, in its order
    sessions: dict[int, dict[int, list[Outgoing]]] = defaultdict(dict)
    for partition, records in sorted(lines_by_partition().items()):
        routed = ParsePartition(SETTINGS, session_partitions=PARTITIONS).process_batch(records)
        assert all(out.topic == SETTINGS.topics.sessions for out in routed)  # no dead letter
        for out in routed:
            assert out.partition is not None
            sessions[out.partition].setdefault(partition, []).append(out)
    windows = []
    for by_parse_partition in sessions.values():
        # the parse partitions' records interleaved as two workers' would arrive: each in its own order, the
        # partitions taken in turn, so a session's lines come out of source order
        interleaved = [out for group in zip_longest(*by_parse_partition.values()) for out in group if out]
        records = [InputRecord(o.topic, 0, i, o.key, o.value, 20_000 + i) for i, o in enumerate(interleaved)]
        tick = InputRecord(SETTINGS.topics.sessions, 0, len(records), None, encode(TICK), 10**9)
        out = SessionPartition(SETTINGS).process_batch([*records, tick])
        windows += [o for o in out if o.topic == SETTINGS.topics.windows]
    decoded = [orjson.loads(out.value) for out in windows]
    truth = block_lines(PATH)
    assert {w["key"] for w in decoded} == set(truth)
    for window in decoded:
        assert [line["offset"] for line in window["lines"]] == truth[window["key"]]  # whole, in source order
        for line in window["lines"]:
            parsed = expected[line["offset"]]
            assert (line["template_id"], line["template"]) == (parsed.template_id, parsed.template)


def test_a_checkpoint_of_whole_system_mining_starts_a_keyed_system_afresh(caplog) -> None:
    whole = load_settings(systems={"hdfs": hdfs_system(600_000)}, internal_partitions=PARTITIONS)
    before = ParsePartition(whole, session_partitions=PARTITIONS)
    records = lines_by_partition()
    for records_of_partition in records.values():
        before.process_batch(records_of_partition[:3])
    saved = before.snapshot()
    with caplog.at_level(logging.ERROR, logger="stream.pipeline.stage"):
        after = ParsePartition(SETTINGS, saved, session_partitions=PARTITIONS)
    assert "does not fit its settings" in caplog.text and "starting it afresh" in caplog.text
    assert after.system_stats() == []  # no HDFS state carried over: its keyed miner starts empty
