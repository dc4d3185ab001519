"""The internal topics' two record formats (stream.records.batches): format 2 (a header and a row per line) is what
the stages write; format 1 (an Envelope of one JSON object per line) is what versions before it read and wrote. Any
mix of writers gives the same windows, and ``internal_format: 1`` writes what such a version reads (the first step of
a rolling upgrade)."""

from __future__ import annotations

import re

import orjson
import pytest

from harness.stages import SETTINGS, lines_topic_records, to_sessions_topic
from stream.errors import ConfigError
from stream.pipeline.parse_stage import ParsePartition
from stream.pipeline.session_stage import SessionPartition
from stream.pipeline.stage import InputRecord, internal_values, read_sessions
from stream.records import Envelope, LogLine, Outgoing, SessionLine
from stream.settings import Settings, load_settings

FORMAT_1 = SETTINGS.model_copy(update={"internal_format": 1})
# A sessions record as the parse stage wrote it in format 1 (tests/unit/test_records_sessions.py keeps its history).
WRITTEN_IN_FORMAT_1 = (
    b'{"i":[["lines",0,7,0,"blk_-1608999687919862906",{"system":"hdfs","line":{"topic":"logs","partition":0,'
    b'"offset":7,"event_ms":1117838570000,"template_id":1,"template":"Receiving block <*> src: <*> dest: <*>",'
    b'"masked":"Receiving block blk_<*> src: /<*> dest: /<*>","label":"normal"}}]]}'
)


def through_parse(lines: list[InputRecord], settings: Settings) -> list[Outgoing]:
    parse = ParsePartition(settings)
    return [out for record in lines for out in parse.process_batch([record])]


def windows_of(parsed: list[Outgoing], settings: Settings) -> list[bytes]:
    """The windows the parse stage closed (BGL's) and those the session stage closes (HDFS's blocks)."""
    session = SessionPartition(settings)
    windows = [o.value for o in parsed if o.topic == settings.topics.windows]
    windows += [o.value for record in to_sessions_topic(parsed) for o in session.process_batch([record])]
    return windows


def test_any_mix_of_format_1_and_format_2_writers_gives_the_same_windows() -> None:
    lines = {2: lines_topic_records(), 1: lines_topic_records(FORMAT_1)}
    expected = windows_of(through_parse(lines[2], SETTINGS), SETTINGS)
    assert sum(len(orjson.loads(w)["lines"]) for w in expected) > 6_000  # HDFS_5k's block lines and BGL's windows
    for ingest_format, parse_settings in ((1, SETTINGS), (2, FORMAT_1), (1, FORMAT_1)):
        assert windows_of(through_parse(lines[ingest_format], parse_settings), SETTINGS) == expected, ingest_format


def test_format_1_is_written_as_a_version_that_reads_only_format_1_reads_it() -> None:
    lines = lines_topic_records(FORMAT_1)
    for record in lines:
        document = orjson.loads(record.value or b"")
        assert set(document) == {"i"}
        for item in Envelope.from_dict(document).items:  # the reader of the versions before format 2
            assert LogLine.from_dict(item.payload).source.as_tuple() == item.upstream[:3]
    to_sessions = [o for o in through_parse(lines, FORMAT_1) if o.topic == SETTINGS.topics.sessions]
    assert to_sessions
    for out in to_sessions:
        for item in Envelope.from_dict(orjson.loads(out.value)).items:
            SessionLine.from_dict(item.payload)
    (batch,) = read_sessions(InputRecord(SETTINGS.topics.sessions, 0, 0, None, WRITTEN_IN_FORMAT_1, 0)) or ()
    assert list(internal_values(batch, 1)) == [WRITTEN_IN_FORMAT_1]  # byte for byte


def test_format_2_records_are_smaller() -> None:
    sizes = {fmt: sum(len(r.value or b"") for r in lines_topic_records(s)) for fmt, s in ((1, FORMAT_1), (2, SETTINGS))}
    assert sizes[2] < 0.8 * sizes[1], sizes


def test_the_format_is_set_as_the_chart_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTLOG_INTERNAL_FORMAT", "1")  # --set stream.settings.internal_format=1
    assert load_settings().internal_format == 1
    monkeypatch.setenv("ADAPTLOG_INTERNAL_FORMAT", "3")
    with pytest.raises(ConfigError, match="internal_format"):
        load_settings()


def a_batch(**change: object) -> dict:
    (batch,) = read_sessions(InputRecord(SETTINGS.topics.sessions, 0, 0, None, WRITTEN_IN_FORMAT_1, 0)) or ()
    return {**batch.header(), "rows": batch.rows, **change}


ROW = a_batch()["rows"][0]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (a_batch(rows=None), "field 'rows' must be an array, not null"),
        (a_batch(system=""), "field 'system' is empty"),
        (a_batch(offset="7"), "field 'offset' must be an integer"),
        (a_batch(rows=[ROW[:-1]]), r"rows\[0\]: a sessions row is an array of 11"),
        (a_batch(rows=[ROW, {"sub": 1}]), r"rows\[1\]: a sessions row is an array of 11"),
        (a_batch(rows=[[*ROW[:6], "1117838570000", *ROW[7:]]]), r"rows\[0\]: event_ms must be an integer, not a str"),
        ([], "an internal record must be a JSON object, not an array"),
    ],
)
def test_the_session_stage_dead_letters_a_malformed_batch_whole_and_goes_on(document: object, reason: str) -> None:
    """Nothing of a malformed record is windowed (every row is checked before the first is pushed)."""
    stage = SessionPartition(SETTINGS)
    bad = orjson.dumps(document)
    (out,) = stage.process_batch([InputRecord(SETTINGS.topics.sessions, 0, 0, None, bad, 0)])
    letter = orjson.loads(out.value)
    assert out.topic == SETTINGS.topics.deadletter and letter["stage"] == "session"
    assert re.search(reason, letter["reason"]), letter["reason"]
    assert not stage.wants_ticks()  # no session opened
    good = orjson.dumps(a_batch(offset=8))  # a later record, not a repeat of the bad one
    assert stage.process_batch([InputRecord(SETTINGS.topics.sessions, 0, 1, None, good, 0)]) == []
    assert stage.wants_ticks()


def test_the_parse_stage_dead_letters_a_malformed_batch_whole_and_goes_on() -> None:
    first = next(r for r in lines_topic_records() if b'"rows"' in (r.value or b""))
    document = orjson.loads(first.value or b"")
    stage = ParsePartition(SETTINGS)
    bad = orjson.dumps({**document, "rows": [*document["rows"][:3], document["rows"][3][:4]]})
    (out,) = stage.process_batch([InputRecord(SETTINGS.topics.lines, 0, 0, None, bad, 0)])
    letter = orjson.loads(out.value)
    reason = "RecordError: record: rows[3]: a lines row is an array of 6 or 8"
    assert (letter["stage"], letter["reason"]) == ("parse", reason)
    assert stage.system_stats() == []  # nothing of it was mined
    routed = stage.process_batch([first])
    assert routed and {o.topic for o in routed} == {SETTINGS.topics.sessions}
