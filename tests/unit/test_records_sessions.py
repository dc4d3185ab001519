"""The sessions hop (parse -> session stage): SessionLine keeps the bytes the stages always wrote, and a malformed
one is refused with a reason naming the field, dead-lettered by the session stage instead of stopping it."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.streaming import DATA, hdfs_system
from stream.decode import Decoder
from stream.pipeline.ingest_stage import IngestPartition
from stream.pipeline.parse_stage import ParsePartition
from stream.pipeline.session_stage import SessionPartition
from stream.pipeline.stage import InputRecord, encode_routed, read_envelope, read_sessions
from stream.records import DeadLetter, RecordError, Routed, SessionLine, WindowLine
from stream.records.batches import session_window_line
from stream.settings import load_settings

SETTINGS = load_settings(systems={"hdfs": hdfs_system(2_000)})
# A sessions record exactly as the parse stage wrote it before SessionLine existed (an in-flight record at upgrade).
WRITTEN_BEFORE = (
    b'{"i":[["lines",0,7,0,"blk_-1608999687919862906",{"system":"hdfs","line":{"topic":"logs","partition":0,'
    b'"offset":7,"event_ms":1117838570000,"template_id":1,"template":"Receiving block <*> src: <*> dest: <*>",'
    b'"masked":"Receiving block blk_<*> src: /<*> dest: /<*>","label":"normal"}}]]}'
)


def line(**change: object) -> dict:
    fields = dict(topic="logs", partition=0, offset=7, event_ms=1_000, template_id=1, template="A <*>", masked="A 1")
    return {**WindowLine(**fields, label=None).to_dict(), **change}  # type: ignore[arg-type]


def test_a_session_line_round_trips() -> None:
    hop = SessionLine("hdfs", line(label="anomalous", index=2))
    assert SessionLine.from_dict(orjson.loads(orjson.dumps(hop.to_dict()))) == hop


def test_a_record_written_before_the_type_existed_decodes_to_the_same_bytes() -> None:
    (item,) = read_envelope(InputRecord(SETTINGS.topics.sessions, 0, 0, None, WRITTEN_BEFORE, 0)).items
    hop = SessionLine.from_dict(item.payload)
    assert (hop.system, hop.line["event_ms"], hop.line["label"]) == ("hdfs", 1_117_838_570_000, "normal")
    again = b'{"i":[' + encode_routed(Routed(item.upstream, hop.to_dict(), item.key)) + b"]}"
    assert again == WRITTEN_BEFORE


def test_the_parse_stage_writes_session_lines() -> None:
    ingest, parse = IngestPartition(SETTINGS, Decoder(SETTINGS)), ParsePartition(SETTINGS)
    value = (DATA / "hdfs" / "HDFS_5k.log").read_text().splitlines()[0].encode()
    (lines,) = ingest.process_batch([InputRecord("logs", 0, 0, None, value, 0, [("system", b"hdfs")])])
    (out,) = parse.process_batch([InputRecord(SETTINGS.topics.lines, 0, 0, lines.key, lines.value, 0)])
    (batch,) = read_sessions(InputRecord(out.topic, 0, 0, None, out.value, 0)) or ()
    (row,) = batch.rows
    assert (batch.system, batch.topic, batch.offset, row[0], row[1]) == (
        "hdfs",
        SETTINGS.topics.lines,
        0,
        0,
        "blk_-1608999687919862906",
    )
    assert WindowLine.from_dict(session_window_line(row)).template.startswith("Receiving block")


def test_the_session_stage_windows_a_record_written_before_the_batches_as_it_windows_a_batch() -> None:
    """A format-1 sessions record left on the topic by the previous version, and the same line as a batch."""
    (item,) = read_envelope(InputRecord(SETTINGS.topics.sessions, 0, 0, None, WRITTEN_BEFORE, 0)).items
    hop = SessionLine.from_dict(item.payload)
    (batch,) = read_sessions(InputRecord(SETTINGS.topics.sessions, 0, 0, None, WRITTEN_BEFORE, 0)) or ()
    assert session_window_line(batch.rows[0]) == hop.line and batch.rows[0][:2] == [0, item.key]
    as_batch = orjson.dumps({**batch.header(), "rows": batch.rows})
    tick = InputRecord(SETTINGS.topics.sessions, 0, 1, None, b'{"i":[]}', 10**15)  # closes every session
    windows = [
        SessionPartition(SETTINGS).process_batch([InputRecord(SETTINGS.topics.sessions, 0, 0, None, value, 0), tick])
        for value in (WRITTEN_BEFORE, as_batch)
    ]
    assert windows[0] == windows[1] and len(windows[0]) == 1
    assert orjson.loads(windows[0][0].value)["lines"] == [hop.line]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (["hdfs"], "must be a JSON object, not an array"),
        ({"line": line()}, "missing field 'system'"),
        ({"system": "", "line": line()}, "field 'system' is empty"),
        ({"system": 3, "line": line()}, "field 'system' must be a string, not a number"),
        ({"system": "hdfs"}, "field 'line' must be an object, not null"),
        ({"system": "hdfs", "line": "A 1"}, "field 'line' must be an object, not a string"),
        ({"system": "hdfs", "line": {"event_ms": 1}}, "line: missing fields label, masked, offset, partition,"),
        ({"system": "hdfs", "line": line(event_ms="1000")}, "line: field 'event_ms' must be an integer, not a str"),
        ({"system": "hdfs", "line": line(event_ms=1.5)}, "line: field 'event_ms' must be an integer, not 1.5"),
    ],
)
def test_a_malformed_session_line_names_its_problem(payload: object, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        SessionLine.from_dict(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@given(st.sampled_from(["system", "line", *line()]), json_values)
def test_decoding_a_session_line_raises_nothing_but_a_record_error(name: str, value: object) -> None:
    payload = {"system": "hdfs", "line": line()}
    if name in payload:
        payload[name] = value
    else:
        payload["line"][name] = value
    with contextlib.suppress(RecordError):
        SessionLine.from_dict(payload)


def test_the_session_stage_dead_letters_a_malformed_record_and_goes_on() -> None:
    bad = WRITTEN_BEFORE.replace(b'"system":"hdfs",', b"")
    stage = SessionPartition(SETTINGS)
    (out,) = stage.process_batch([InputRecord(SETTINGS.topics.sessions, 0, 0, None, bad, 0)])
    letter = DeadLetter.from_dict(orjson.loads(out.value))
    assert out.topic == SETTINGS.topics.deadletter and letter.original == bad
    assert letter.stage == "session" and "missing field 'system'" in letter.reason
    good = WRITTEN_BEFORE.replace(b'"lines",0,7,', b'"lines",0,8,')  # a later record, not a repeat of the bad one
    assert stage.process_batch([InputRecord(SETTINGS.topics.sessions, 0, 1, None, good, 0)]) == []
    assert stage.wants_ticks()  # the good line opened a session
