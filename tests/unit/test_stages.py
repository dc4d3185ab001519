"""Stage processors without a broker: deterministic, resumable from a snapshot, and immune to upstream repeats.

These properties are what make the Kafka runner's recovery exact: it restores a checkpoint and replays the input
after it, so a processor must give the same outputs after restore as if it had never stopped.
"""

from __future__ import annotations

import re

import orjson
import pytest

from harness.stages import BGL, SETTINGS, lines_topic_records, to_sessions_topic
from harness.streaming import DATA, block_lines
from stream.decode import Decoder, RawRecord
from stream.pipeline.ingest_stage import IngestPartition
from stream.pipeline.parse_stage import ParsePartition, session_keys
from stream.pipeline.session_stage import SessionPartition
from stream.pipeline.stage import InputRecord
from stream.records import DeadLetter, LogLine, Outgoing
from stream.replay import replay_records
from stream.settings import SystemSettings, load_settings


def lines_in(outgoing: list[Outgoing], topic: str) -> int:
    return sum(len(orjson.loads(o.value).get("rows", ())) for o in outgoing if o.topic == topic)  # a tick: none


def run(processor_type: type, records: list[InputRecord], stop_at: int | None = None) -> list[Outgoing]:
    processor = processor_type(SETTINGS)
    out: list[Outgoing] = []
    for index, record in enumerate(records):
        if index == stop_at:
            state = orjson.loads(orjson.dumps(processor.snapshot()))  # as the checkpoint topic would keep it
            processor = processor_type(SETTINGS, state)
        out += processor.process_batch([record])
    return out


def test_parse_stage_resumes_from_a_snapshot_exactly() -> None:
    records = lines_topic_records()
    uninterrupted = run(ParsePartition, records)
    assert lines_in(records, SETTINGS.topics.lines) == 4519 + 2000 and len(records) < 300  # batched, with ticks
    for stop_at in (1, 57, 123, len(records) - 3):
        assert run(ParsePartition, records, stop_at) == uninterrupted, stop_at
    windows = [orjson.loads(o.value) for o in uninterrupted if o.topic == SETTINGS.topics.windows]
    assert {w["policy"] for w in windows} == {"count_sliding"}  # BGL windows here; HDFS goes on to sessions
    assert lines_in(uninterrupted, SETTINGS.topics.sessions) == 4519


def test_session_stage_resumes_from_a_snapshot_exactly_and_closes_every_block() -> None:
    sessions = to_sessions_topic(run(ParsePartition, lines_topic_records()))
    uninterrupted = run(SessionPartition, sessions)
    for stop_at in (7, len(sessions) // 2, len(sessions) - 1):
        assert run(SessionPartition, sessions, stop_at) == uninterrupted, stop_at
    windows = [orjson.loads(o.value) for o in uninterrupted]
    assert sum(len(w["lines"]) for w in windows) == 4519


def test_repeated_upstream_records_are_dropped() -> None:
    records = lines_topic_records()[:150]
    once = run(ParsePartition, records)
    # An upstream replay after a crash: records 50..99 arrive again (with new offsets in this topic).
    repeated = (
        records[:100]
        + [
            InputRecord(r.topic, r.partition, 100 + i, r.key, r.value, r.timestamp_ms)
            for i, r in enumerate(records[50:100])
        ]
        + records[100:]
    )
    assert run(ParsePartition, repeated) == once


def test_event_time_windows_dead_letter_late_lines_with_a_reason() -> None:
    spec = SystemSettings(format="raw", window={"kind": "event_tumbling", "size_ms": 1_000, "grace_ms": 200})
    # event times of a few ms after the epoch keep the boundaries readable: earliest admits them
    settings = load_settings(systems={"app": spec}, input_formats={"logs": {"earliest": "1970-01-01T00:00:00Z"}})
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    # (event ms, message): the 1500 ms line arrives after the watermark (2300 - 200) passed its window's end (2000).
    events = [(100, "a"), (900, "b"), (1_100, "c"), (2_300, "d"), (1_500, "late e"), (3_250, "f")]
    out: list[Outgoing] = []
    for offset, (event_ms, message) in enumerate(events):
        value = orjson.dumps({"system": "app", "message": message, "ts": event_ms})
        for line in ingest.process_batch([InputRecord("logs", 0, offset, None, value, 0)]):
            out += parse.process_batch([InputRecord(settings.topics.lines, 0, offset, line.key, line.value, 0)])
    windows = [orjson.loads(o.value) for o in out if o.topic == settings.topics.windows]
    assert [(w["start_ms"], w["end_ms"], [line["masked"] for line in w["lines"]]) for w in windows] == [
        (0, 1_000, ["a", "b"]),
        (1_000, 2_000, ["c"]),
        (2_000, 3_000, ["d"]),  # closed by f: watermark 3250 - 200 passes 3000
    ]
    (late,) = [orjson.loads(o.value) for o in out if o.topic == settings.topics.deadletter]
    assert late["stage"] == "window" and late["reason"].startswith("late") and late["offset"] == 4


def test_a_changed_or_removed_system_starts_afresh_and_the_others_keep_their_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = lines_topic_records()
    before = ParsePartition(SETTINGS)
    for record in records[:140]:  # HDFS lines and the first BGL ones
        before.process_batch([record])
    state = orjson.loads(orjson.dumps(before.snapshot()))
    changed_bgl = BGL.model_copy(update={"drain": {"depth": 5, "sim_th": 0.7}})
    after = ParsePartition(load_settings(systems={"bgl": changed_bgl}), state)
    assert "no longer configured" in caplog.text and "does not fit its settings" in caplog.text
    assert after.snapshot()["systems"] == {}  # hdfs gone, bgl restarted (nothing parsed yet)
    same = ParsePartition(SETTINGS, state)
    assert same.snapshot() == state  # unchanged settings: everything restored


THUNDERBIRD_LINES = [
    line.split(" ", 1)[1].encode()  # without Loghub's label column, as replay sends them
    for line in (DATA / "thunderbird" / "Thunderbird_2k.log").read_text().splitlines()[:3]
]


def lines_sent(outgoing: list[Outgoing], topic: str) -> list[int]:
    """The source offsets of the lines an ingest stage sent to ``topic``."""
    return [row[0] for o in outgoing if o.topic == topic for row in orjson.loads(o.value)["rows"]]


def test_ingest_dead_letters_a_line_whose_epoch_is_out_of_range_and_goes_on() -> None:
    # 20 digits of epoch seconds decoded before, then orjson refused the line and the whole batch raised.
    settings = load_settings()
    bad = THUNDERBIRD_LINES[1].replace(b"1131566461", b"99999999999999999999", 1)
    batch = [
        InputRecord("logs", 0, offset, None, value, 0, [("system", b"thunderbird")])
        for offset, value in enumerate([THUNDERBIRD_LINES[0], bad, THUNDERBIRD_LINES[2]])
    ]
    out = IngestPartition(settings, Decoder(settings)).process_batch(batch)
    assert lines_sent(out, settings.topics.lines) == [0, 2]
    (letter,) = [orjson.loads(o.value) for o in out if o.topic == settings.topics.deadletter]
    assert letter["offset"] == 1 and "out of range" in letter["reason"]


class SkewedClockDecoder(Decoder):
    """The real decoder, but a line's event time is pushed past 64 bits: a value decode lets through by mistake."""

    def decode_lines(self, record: RawRecord) -> list[LogLine | DeadLetter]:
        decoded = super().decode_lines(record)
        for line in decoded:
            if isinstance(line, LogLine) and record.offset == 1:
                line.event_ms = 2**70
        return decoded


def test_ingest_dead_letters_a_line_that_fails_to_encode_and_keeps_the_rest_of_the_batch() -> None:
    settings = load_settings()
    batch = [
        InputRecord("logs", 0, offset, None, value, 0, [("system", b"thunderbird")])
        for offset, value in enumerate(THUNDERBIRD_LINES)
    ]
    out = IngestPartition(settings, SkewedClockDecoder(settings)).process_batch(batch)
    assert lines_sent(out, settings.topics.lines) == [0, 2]
    (letter,) = [orjson.loads(o.value) for o in out if o.topic == settings.topics.deadletter]
    assert (letter["stage"], letter["offset"]) == ("ingest", 1) and "TypeError" in letter["reason"]


def test_a_stack_trace_is_mined_whole_and_its_window_keeps_every_line() -> None:
    from tests.unit.test_decode import STACK_TRACE

    settings = load_settings(
        systems={"app": SystemSettings(format="raw", window={"kind": "count_tumbling", "size": 2})}
    )
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    values = [orjson.dumps({"system": "app", "message": STACK_TRACE}), STACK_TRACE.replace("1472", "1500").encode()]
    out: list[Outgoing] = []
    for offset, value in enumerate(values):
        for line in ingest.process_batch([InputRecord("logs", 0, offset, None, value, 0, [("system", b"app")])]):
            out += parse.process_batch([InputRecord(settings.topics.lines, 0, offset, line.key, line.value, 0)])
    (window,) = [orjson.loads(o.value) for o in out if o.topic == settings.topics.windows]
    first, second = window["lines"]
    assert first["masked"].count("\n\tat ") == 2 and first["masked"].startswith("java.net.NoRouteToHostException")
    assert first["template_id"] == second["template_id"]  # the same trace: one template, whatever its line numbers
    assert "\n" not in second["template"] and second["template"].endswith("(Client.java:<NUM>)")


HDFS_LINES = (DATA / "hdfs" / "HDFS_5k.log").read_text().splitlines()[:3]


@pytest.mark.parametrize(
    ("pattern", "keys"),
    [
        (r"blk_-?\d+", ["blk_-1608999687919862906"]),  # the whole match
        (r"blk_(-?\d+)", ["-1608999687919862906"]),  # the one group
        (r"(?:blk_|dest: /)(-?\d*)", ["-1608999687919862906"]),  # an empty group ("dest: /") names no key
    ],
)
def test_session_keys_are_the_whole_match_or_the_one_group(pattern: str, keys: list[str]) -> None:
    spec = SystemSettings(format="hdfs", window={"kind": "session", "gap_ms": 1_000}, session_key_pattern=pattern)
    settings = load_settings(systems={"hdfs": spec})
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    value = HDFS_LINES[0].replace("dest: /10.250.19.102", "dest: /").encode()
    (line,) = ingest.process_batch([InputRecord("logs", 0, 0, None, value, 0, [("system", b"hdfs")])])
    out = parse.process_batch([InputRecord(settings.topics.lines, 0, 0, line.key, line.value, 0)])
    assert [o.topic for o in out] == [settings.topics.sessions]
    assert [row[1] for o in out for row in orjson.loads(o.value)["rows"]] == keys


@pytest.mark.parametrize("pattern", [r"blk_-?\d+", r"blk_(-?\d+)", r"(?:blk_|dest: /)(-?\d*)", r"\d+"])
def test_session_keys_on_real_lines_are_the_distinct_nonempty_matches_in_order(pattern: str) -> None:
    regex = re.compile(pattern)
    group = 1 if regex.groups else 0
    for line in (DATA / "hdfs" / "HDFS_5k.log").read_text().splitlines():
        content = line.partition(": ")[2].replace("dest: /10.", "dest: /")  # some lines with an empty group
        expected = list(dict.fromkeys(m.group(group) for m in regex.finditer(content) if m.group(group)))
        assert session_keys(regex, content) == expected, content


def test_a_line_whose_only_key_is_empty_is_dead_lettered() -> None:
    spec = SystemSettings(
        format="hdfs", window={"kind": "session", "gap_ms": 1_000}, session_key_pattern=r"dest: /(\d*)"
    )
    settings = load_settings(systems={"hdfs": spec})
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    value = HDFS_LINES[0].replace("dest: /10.250.19.102", "dest: /").encode()
    (line,) = ingest.process_batch([InputRecord("logs", 0, 0, None, value, 0, [("system", b"hdfs")])])
    (letter,) = parse.process_batch([InputRecord(settings.topics.lines, 0, 0, line.key, line.value, 0)])
    assert (
        letter.topic == settings.topics.deadletter
        and orjson.loads(letter.value)["reason"] == "no session key in the line"
    )


@pytest.mark.parametrize(("blocks", "sent"), [(16, True), (17, False)])
def test_a_line_naming_more_than_max_session_keys_is_dead_lettered(blocks: int, sent: bool) -> None:
    # An HDFS line as the NameSystem writes it, naming many blocks: each key would get a copy of the whole line.
    settings = load_settings()
    ids = " ".join(f"blk_{1_000_000 + i}" for i in range(blocks))
    value = f"081109 203518 143 INFO dfs.FSNamesystem: BLOCK* ask 10.250.14.224:50010 to delete {ids}".encode()
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    (line,) = ingest.process_batch([InputRecord("logs", 0, 7, None, value, 0, [("system", b"hdfs")])])
    out = parse.process_batch([InputRecord(settings.topics.lines, 0, 0, line.key, line.value, 0)])
    if sent:
        assert lines_in(out, settings.topics.sessions) == 16 and settings.systems["hdfs"].max_session_keys == 16
    else:
        (letter,) = [orjson.loads(o.value) for o in out]
        assert letter["offset"] == 7 and letter["reason"] == (
            "the line names 17 session keys, more than max_session_keys (16)"
        )


def test_envelopes_are_cut_by_their_encoded_size() -> None:
    # Control characters are escaped as \u00XX in JSON: 60,000 of them encode to 360,000 bytes. Cut by text size,
    # four such lines made one 1.4 MB record, past the broker's default record limit.
    from stream.pipeline.stage import BATCH_BYTES

    settings = load_settings()
    batch = [InputRecord("logs", 0, i, None, b"\x01" * 60_000, 0, [("system", b"raw")]) for i in range(4)]
    batch += [
        InputRecord("logs", 0, 4 + i, None, HDFS_LINES[i % 3].encode(), 0, [("system", b"raw")]) for i in range(300)
    ]
    out = IngestPartition(settings, Decoder(settings)).process_batch(batch)
    assert lines_sent(out, settings.topics.lines) == list(range(304))  # all, in order
    sizes = [(len(o.value), len(orjson.loads(o.value)["rows"])) for o in out]
    assert all(size <= BATCH_BYTES or lines == 1 for size, lines in sizes), sizes
    assert all(lines <= 200 for _, lines in sizes)


def test_a_line_from_a_broken_clock_is_dead_lettered_as_future_and_the_rest_are_windowed() -> None:
    # Before: one line stamped 2100 moved the watermark, and every later line of the system was dead-lettered late.
    spec = SystemSettings(format="raw", window={"kind": "event_tumbling", "size_ms": 60_000, "grace_ms": 10_000})
    # The window's own guard is what is tested here: decode's max_ahead_ms (tests/unit/test_inputs.py) is turned off.
    settings = load_settings(systems={"app": spec}, input_formats={"logs": {"max_ahead_ms": None}})
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    now = 1_700_000_000_000
    events = [now + i * 1_000 for i in range(200)]
    events[50] = 4_102_444_800_000  # 2100-01-01
    out: list[Outgoing] = []
    for offset, event_ms in enumerate(events):
        value = orjson.dumps({"system": "app", "message": f"request {offset} ok", "ts": event_ms})
        arrival_ms = now + offset * 1_000 + 300  # the lines record's broker timestamp, just after the event
        for line in ingest.process_batch([InputRecord("logs", 0, offset, None, value, arrival_ms)]):
            out += parse.process_batch(
                [InputRecord(settings.topics.lines, 0, offset, line.key, line.value, arrival_ms)]
            )
    (letter,) = [orjson.loads(o.value) for o in out if o.topic == settings.topics.deadletter]
    assert letter["offset"] == 50 and letter["reason"].startswith("future: event time 4102444800000")
    windowed = [
        line["offset"] for o in out if o.topic == settings.topics.windows for line in orjson.loads(o.value)["lines"]
    ]
    watermark = now + 199_000 - 10_000  # the newest ordinary line's, not 2100's
    closed = [offset for offset, e in enumerate(events) if offset != 50 and (e // 60_000 + 1) * 60_000 <= watermark]
    assert windowed == closed and len(closed) > 150


def test_session_watermark_closes_blocks_while_a_backlog_is_read_without_ticks() -> None:
    # During a backlog the runner writes no ticks (the lines would look idle), so before the watermark the sessions of
    # HDFS_5k's blocks stayed open until the stream caught up: 14 hours of log, ~4,500 lines held in one checkpoint.
    hour = 3_600_000
    spec = SystemSettings(
        format="hdfs",
        drain={"depth": 4, "sim_th": 0.5},
        window={"kind": "session", "gap_ms": hour, "watermark_grace_ms": 0},
        session_key_pattern=r"blk_-?\d+",
    )
    settings = load_settings(systems={"hdfs": spec})
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    replayed = list(replay_records(DATA / "hdfs" / "HDFS_5k.log", "hdfs", spec.line_format("hdfs")))
    sessions: list[InputRecord] = []
    for start in range(0, len(replayed), 100):
        raw = [
            InputRecord("logs", 0, start + i, None, r.value, 1_000, r.headers)
            for i, r in enumerate(replayed[start : start + 100])
        ]
        for line in ingest.process_batch(raw):
            for out in parse.process_batch([InputRecord(settings.topics.lines, 0, start, line.key, line.value, 1_000)]):
                sessions.append(InputRecord(out.topic, 0, len(sessions), out.key, out.value, 1_000))

    def run_sessions(stop_at: int | None = None) -> list[Outgoing]:
        processor, out = SessionPartition(settings), []
        for index, record in enumerate(sessions):
            if index == stop_at:
                processor = SessionPartition(settings, orjson.loads(orjson.dumps(processor.snapshot())))
            out += processor.process_batch([record])
        return out

    closed = run_sessions()
    windows = [orjson.loads(o.value) for o in closed]
    reasons = [w["reason"] for w in windows]
    assert set(reasons) == {"watermark", "gap"} and reasons.count("watermark") > 100
    assert all(run_sessions(stop_at) == closed for stop_at in (3, len(sessions) // 2))  # deterministic on resume
    by_block: dict[str, list[int]] = {}
    for w in windows:
        by_block.setdefault(w["key"], []).extend(line["offset"] for line in w["lines"])
    truth = block_lines(DATA / "hdfs" / "HDFS_5k.log")
    # what closed of a block is its first lines, in order: nothing lost, nothing split off out of order
    assert all(offsets == truth[block][: len(offsets)] for block, offsets in by_block.items())
