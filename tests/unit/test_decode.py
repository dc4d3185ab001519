"""Decoding input records: every kind of bad input becomes a dead letter with a reason; decode never raises."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.decode import Decoder, RawRecord
from stream.errors import DecodeError
from stream.formats import parse_time
from stream.records import DeadLetter, LogLine
from stream.settings import SystemSettings, load_settings

DECODER = Decoder(load_settings(default_systems={"syslog-topic": "raw"}))
HDFS_LINE = (
    b"081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906 "
    b"src: /10.250.19.102:54106"
)


def decode(value: bytes | None, headers: list[tuple[str, bytes]] | None = None, topic: str = "logs") -> object:
    return DECODER.decode(RawRecord(topic, 3, 42, value, headers or [], timestamp_ms=1_000))


def test_raw_line_takes_system_from_header_and_time_from_the_line() -> None:
    line = decode(HDFS_LINE, [("system", b"hdfs"), ("label", b"normal")])
    assert isinstance(line, LogLine)
    assert line.system == "hdfs" and line.label == "normal"
    assert line.content.startswith("Receiving block blk_-1608999687919862906")
    assert line.event_ms == 1226262918000  # 2008-11-09 20:35:18 UTC
    assert (line.source.topic, line.source.partition, line.source.offset) == ("logs", 3, 42)


def test_raw_line_falls_back_to_the_topic_default_system_and_broker_time() -> None:
    line = decode(b"anything at all", topic="syslog-topic")
    assert isinstance(line, LogLine) and line.system == "raw" and line.event_ms == 1_000


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1700000000123, 1700000000123),
        ("1700000000123", 1700000000123),
        ("2023-11-14T22:13:20Z", 1700000000000),
        ("2023-11-14T22:13:20", 1700000000000),
        ("2023-11-14T23:13:20+01:00", 1700000000000),
    ],
)
def test_json_record_ts_in_epoch_ms_or_iso8601(ts: object, expected: int) -> None:
    line = decode(orjson.dumps({"system": "raw", "message": "hello", "ts": ts, "label": "anomalous"}))
    assert isinstance(line, LogLine) and line.event_ms == expected and line.label == "anomalous"


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (None, [], "tombstone"),
        (b"\xc3\x28", [("system", b"raw")], "invalid UTF-8"),
        (b'{"system": "raw", "message": ', [], "invalid JSON"),
        (b'{"system": "raw"}', [], "has no 'message'"),
        (b'{"system": "raw", "message": 5}', [], "expected a string"),
        (b'{"system": "raw", "message": "m", "ts": true}', [], "not a timestamp"),
        (b'{"system": "raw", "message": "m", "ts": [1]}', [], "expected epoch ms"),
        (b'{"system": "raw", "message": "m", "ts": 1e300}', [], "out of range"),
        (b'{"system": "raw", "message": "m", "ts": 99999999999999999999999}', [], "out of range"),
        (b'{"system": "raw", "message": "m", "label": "maybe"}', [], "label"),
        (b"x" * (64 * 1024 + 1), [("system", b"raw")], "over the limit"),
        (b"hello", [("system", b"nosuch")], "unknown system"),
        (b"hello", [], "no system"),
        (b"hello", [("system", b"hdfs")], "does not match format 'hdfs'"),
        (b"081199 253518 143 INFO dfs.X: y", [("system", b"hdfs")], "does not parse"),
        (b"hello", [("system", b"\xff")], "not UTF-8"),
        (b"hello", [("system", b"raw"), ("key_labels", b"[1]")], "key_labels"),
    ],
)
def test_bad_records_become_dead_letters_with_a_reason(value: bytes | None, headers: list, reason: str) -> None:
    letter = decode(value, headers)
    assert isinstance(letter, DeadLetter), letter
    assert reason in letter.reason
    assert (letter.stage, letter.topic, letter.partition, letter.offset) == ("decode", "logs", 3, 42)
    assert letter.original == (value or b"")


@settings(max_examples=400, deadline=None)
@given(
    value=st.one_of(st.none(), st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
    headers=st.lists(
        st.tuples(st.sampled_from(["system", "label", "key_labels", "x"]), st.binary(max_size=20)), max_size=3
    ),
)
def test_decode_never_raises_on_arbitrary_bytes(value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
    assert isinstance(decode(value, headers), LogLine | DeadLetter)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["system", "message", "ts", "label"]), JSON_VALUES, max_size=4))
def test_decode_never_raises_on_arbitrary_json_objects(fields: dict) -> None:
    value = json.dumps(fields).encode()  # stdlib: it also writes integers beyond 64 bits, which orjson refuses
    assert isinstance(decode(value, [("system", b"raw")]), LogLine | DeadLetter)


def test_block_labels_must_be_normal_or_anomaly(tmp_path: Path) -> None:
    from stream.errors import ConfigError
    from stream.labels import read_block_labels

    good = tmp_path / "labels.csv"
    good.write_text("BlockId,Label\nblk_1,Normal\nblk_-2,Anomaly\n")
    assert read_block_labels(good) == {"blk_1": "normal", "blk_-2": "anomalous"}
    bad = tmp_path / "bad.csv"
    bad.write_text("BlockId,Label\nblk_1,Normal\nblk_2,anomaly?\n")
    with pytest.raises(ConfigError, match="line 3: label 'anomaly\\?' is neither Normal nor Anomaly"):
        read_block_labels(bad)


# Thunderbird_2k.log's first line without Loghub's label column: its timestamp group is epoch_s.
THUNDERBIRD_LINE = (
    "1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root"
)
EPOCH_SYSTEMS = load_settings(
    systems={
        "seconds": SystemSettings(format_regex=r"(?P<timestamp>\S+) (?P<content>.*)", time_format="epoch_s"),
        "millis": SystemSettings(format_regex=r"(?P<timestamp>\S+) (?P<content>.*)", time_format="epoch_ms"),
    }
)


@pytest.mark.parametrize(
    ("system", "value"),
    [
        ("thunderbird", THUNDERBIRD_LINE.replace("1131566461", "99999999999999999999", 1)),
        ("seconds", "9007199254741 session closed"),  # 2**53 ms is 9007199254740.992 s
        ("seconds", "-1e30 session closed"),
        ("seconds", "1e999999999 session closed"),  # refused before int() builds a billion-digit number
        ("millis", "123456789012345678901234 session closed"),
        ("millis", "-9007199254740993 session closed"),
    ],
)
def test_epoch_timestamps_out_of_range_are_dead_letters(system: str, value: str) -> None:
    letter = Decoder(EPOCH_SYSTEMS if system != "thunderbird" else load_settings()).decode(
        RawRecord("logs", 3, 42, value.encode(), [("system", system.encode())])
    )
    assert isinstance(letter, DeadLetter), letter
    assert "out of range for epoch milliseconds" in letter.reason


@pytest.mark.parametrize(
    ("text", "time_format", "expected"),
    [
        ("1.005", "epoch_s", 1_005),  # float: 1.005 * 1000 = 1004.9999999999999, truncated to 1004
        ("1131566461.001", "epoch_s", 1_131_566_461_001),
        ("1700000000.015", "epoch_s", 1_700_000_000_015),
        ("1.0009", "epoch_s", 1_000),  # sub-millisecond digits are floored, as %f's microseconds are
        ("-1.0005", "epoch_s", -1_001),
        ("1131566461", "epoch_s", 1_131_566_461_000),
        ("9007199254740.992", "epoch_s", 2**53),
        ("9007199254740992", "epoch_ms", 2**53),
    ],
)
def test_epoch_seconds_parse_exactly(text: str, time_format: str, expected: int) -> None:
    assert parse_time(text, time_format) == expected


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1.2.3", ""])
def test_epoch_seconds_that_are_not_numbers_do_not_parse(text: str) -> None:
    with pytest.raises(DecodeError, match="does not parse as 'epoch_s'"):
        parse_time(text, "epoch_s")


def test_iso_ts_milliseconds_are_exact() -> None:
    line = decode(orjson.dumps({"system": "raw", "message": "m", "ts": "2005-06-03T15:42:50.675999"}))
    assert isinstance(line, LogLine) and line.event_ms == 1_117_813_370_675


# A Java stack trace as a Hadoop task logs it (the exception text is from Loghub Hadoop's templates).
STACK_TRACE = (
    "java.net.NoRouteToHostException: No Route to Host from MININT-FNANLI5/127.0.0.1 to msra-sa-41:8030\n"
    "\tat org.apache.hadoop.ipc.Client.call(Client.java:1472)\n"
    "\tat org.apache.hadoop.ipc.Client.call(Client.java:1399)"
)


@pytest.mark.parametrize(
    ("system", "value", "content"),
    [
        ("raw", STACK_TRACE.encode(), STACK_TRACE),
        ("raw", STACK_TRACE.encode() + b"\r\n", STACK_TRACE),
        ("raw", orjson.dumps({"message": STACK_TRACE + "\n"}), STACK_TRACE),
        ("hdfs", b"081109 203518 143 WARN dfs.DataNode: " + STACK_TRACE.encode(), STACK_TRACE),
        ("hdfs", orjson.dumps({"message": "081109 203518 143 WARN dfs.DataNode: " + STACK_TRACE}), STACK_TRACE),
    ],
)
def test_a_multi_line_message_keeps_every_line(system: str, value: bytes, content: str) -> None:
    line = decode(value, [("system", system.encode())])
    assert isinstance(line, LogLine) and line.content == content
