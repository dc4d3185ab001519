"""Input formats: shipper presets, field paths, explicit time units, the time range, and OTLP records of many lines.

Everything here goes through the real Decoder (and, for fan-out, the real ingest and parse stages); the shipper
records are built from real HDFS and BGL lines by harness/shippers.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import shippers
from harness.shippers import bgl_lines
from stream.decode import Decoder, RawRecord
from stream.errors import ConfigError
from stream.pipeline.ingest_stage import IngestPartition
from stream.pipeline.parse_stage import ParsePartition
from stream.pipeline.stage import InputRecord
from stream.records import DeadLetter, LogLine, Window
from stream.settings import INPUT_PRESETS, InputFormat, SystemSettings, load_settings

HDFS_LINE = (
    "081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906 "
    "src: /10.250.19.102:54106 dest: /10.250.19.102:50010"
)
HDFS_CONTENT = HDFS_LINE.split(": ", 1)[1]
HDFS_MS = 1_226_262_918_000  # 2008-11-09 20:35:18 UTC, the line's own time
NOW_MS = 1_765_000_000_000  # a broker timestamp in December 2025


def decoder(preset: str | None = None, **fields: object) -> Decoder:
    formats = {"logs": InputFormat(preset=preset or "json", **fields)} if preset or fields else {}
    return Decoder(load_settings(input_formats=formats, default_systems={"logs": "hdfs"}))


def decode_all(dec: Decoder, value: bytes, timestamp_ms: int = NOW_MS, headers: list | None = None) -> list:
    return dec.decode_lines(RawRecord("logs", 2, 77, value, headers or [], timestamp_ms))


def one(dec: Decoder, record: dict | bytes, timestamp_ms: int = NOW_MS) -> LogLine | DeadLetter:
    value = record if isinstance(record, bytes) else orjson.dumps(record)
    (decoded,) = decode_all(dec, value, timestamp_ms)
    return decoded


def line(decoded: object) -> LogLine:
    assert isinstance(decoded, LogLine), decoded
    return decoded


def dead(decoded: object, reason: str) -> DeadLetter:
    assert isinstance(decoded, DeadLetter), decoded
    assert reason in decoded.reason, decoded.reason
    return decoded


@pytest.mark.parametrize(
    ("preset", "record", "event_ms"),
    [
        ("fluent-bit", {"@timestamp": 1226262918.123, "log": HDFS_LINE}, HDFS_MS + 123),
        ("fluent-bit", {"@timestamp": 1226262918.123, "MESSAGE": HDFS_LINE, "_PID": "143"}, HDFS_MS + 123),
        ("vector", {"message": HDFS_LINE, "timestamp": "2008-11-09T20:35:18.123456789Z", "host": "dn"}, HDFS_MS + 123),
        ("zap", {"level": "info", "ts": 1226262918.5, "msg": HDFS_LINE}, HDFS_MS + 500),
        ("pino", {"level": 30, "time": HDFS_MS + 7, "msg": HDFS_LINE}, HDFS_MS + 7),
        ("json", {"message": HDFS_LINE, "ts": HDFS_MS + 9}, HDFS_MS + 9),
        # no time field: the line's own time, as for raw lines
        ("fluent-bit", {"log": HDFS_LINE}, HDFS_MS),
        ("vector", {"message": HDFS_LINE}, HDFS_MS),
    ],
)
def test_each_preset_reads_its_shippers_record(preset: str, record: dict, event_ms: int) -> None:
    decoded = line(one(decoder(preset), record))
    assert (decoded.system, decoded.content, decoded.event_ms) == ("hdfs", HDFS_CONTENT, event_ms)
    assert (decoded.source.topic, decoded.source.partition, decoded.source.offset, decoded.source.index) == (
        "logs",
        2,
        77,
        0,
    )


def test_epoch_seconds_are_read_as_seconds_by_their_preset_and_refused_as_milliseconds() -> None:
    # The record: zap's ts in seconds. Read as json's milliseconds it was January 1970, silently.
    record = {"message": "GET /healthz 200", "msg": "GET /healthz 200", "ts": 1733443200.5, "system": "raw"}
    assert line(one(decoder("zap", system="system"), record)).event_ms == 1_733_443_200_500
    letter = dead(one(decoder(), record), "before 2000-01-01T00:00:00.000+00:00")
    assert "1970-01-21" in letter.reason and "epoch milliseconds" in letter.reason and "time_unit" in letter.reason


@pytest.mark.parametrize(
    ("unit", "value", "event_ms"),
    [
        ("s", 1733443200, 1_733_443_200_000),
        ("s", "1733443200.015", 1_733_443_200_015),
        ("ms", 1733443200015.9, 1_733_443_200_015),  # sub-millisecond digits are floored
        ("us", "1733443200015999", 1_733_443_200_015),
        ("ns", 1733443200015999999, 1_733_443_200_015),
        ("ns", "1733443200015999999", 1_733_443_200_015),
        ("s", "2024-12-06T00:00:00.015+01:00", 1_733_439_600_015),  # text is ISO 8601 under every unit
    ],
)
def test_an_explicit_unit_reads_numbers_exactly(unit: str, value: object, event_ms: int) -> None:
    dec = decoder("pino", time_unit=unit)
    assert line(one(dec, {"msg": HDFS_LINE, "time": value})).event_ms == event_ms


@pytest.mark.parametrize(
    ("preset", "record", "reason"),
    [
        ("fluent-bit", {"@timestamp": 1.0, "message": HDFS_LINE}, "has no 'log' or 'MESSAGE'"),
        ("fluent-bit", {"@timestamp": 1.0, "message": HDFS_LINE}, "the record's keys: '@timestamp', 'message'"),
        ("zap", {"ts": 1733443200.5, "log": HDFS_LINE}, "has no 'msg' (input format zap"),
        ("vector", {"message": HDFS_LINE, "timestamp": 1733443200}, "is a number; this input format reads ISO 8601"),
        ("vector", {"message": HDFS_LINE, "timestamp": "yesterday"}, "neither a number nor ISO 8601"),
        ("vector", {"message": HDFS_LINE, "timestamp": [1]}, "is a list, expected a number or ISO 8601"),
        ("pino", {"msg": HDFS_LINE, "time": True}, "is a bool"),
        ("pino", {"msg": HDFS_LINE, "time": 1733443200}, "before 2000"),  # seconds sent as pino's milliseconds
        ("zap", {"msg": HDFS_LINE, "ts": 1e300}, "out of range"),
        ("zap", {"msg": HDFS_LINE, "ts": "1e999999999"}, "out of range"),
        ("zap", {"msg": HDFS_LINE, "ts": NOW_MS / 1000 + 2 * 86400}, "s after the record's timestamp"),
        ("fluent-bit", {"@timestamp": 1.0, "log": 5}, "JSON field 'log' is a int"),
        ("json", {"message": HDFS_LINE, "ts": 4_102_444_800_000}, "more than max_ahead_ms 86400000"),  # 2100
    ],
)
def test_bad_preset_records_are_dead_letters_with_a_reason(preset: str, record: dict, reason: str) -> None:
    letter = dead(one(decoder(preset), record), reason)
    assert (letter.stage, letter.topic, letter.offset, letter.index) == ("decode", "logs", 77, None)
    assert letter.original == orjson.dumps(record)


def test_the_time_range_is_set_per_input_format() -> None:
    old = {"msg": HDFS_LINE, "ts": 946_684_799.999}  # a millisecond before 2000
    dead(one(decoder("zap"), old), "before 2000")
    assert line(one(decoder("zap", earliest="1990-01-01T00:00:00Z"), old)).event_ms == 946_684_799_999
    ahead = {"msg": HDFS_LINE, "ts": NOW_MS / 1000 + 86_400.001}
    dead(one(decoder("zap"), ahead), "more than max_ahead_ms")
    assert line(one(decoder("zap", max_ahead_ms=None), ahead)).event_ms == NOW_MS + 86_400_001
    assert line(one(decoder("zap"), {"msg": HDFS_LINE, "ts": NOW_MS / 1000 + 86_400})).event_ms == NOW_MS + 86_400_000
    # A record with no broker clock (0, or a harness counting from 0) is not checked against it.
    assert line(one(decoder("zap"), ahead, timestamp_ms=0)).event_ms == NOW_MS + 86_400_001


def test_dotted_paths_map_a_custom_record() -> None:
    dec = decoder(
        "json",
        message=["kubernetes.log", "event.original"],
        time="event.created",
        time_unit="ns",
        system="labels.app\\.name",  # a key with a dot in it
        label="truth.label",
    )
    record = {
        "event": {"original": HDFS_LINE, "created": str(HDFS_MS * 1_000_000)},
        "labels": {"app.name": "hdfs"},
        "truth": {"label": "anomalous"},
    }
    decoded = line(one(dec, record))
    assert (decoded.system, decoded.content, decoded.event_ms, decoded.label) == (
        "hdfs",
        HDFS_CONTENT,
        HDFS_MS,
        "anomalous",
    )
    dead(one(decoder("json", message="kubernetes.log"), {"kubernetes": "flat"}), "has no 'kubernetes.log'")


def test_a_topics_format_wins_over_a_systems_and_a_system_known_by_header_picks_its_own() -> None:
    settings = load_settings(
        systems={
            "app": SystemSettings(format="raw", input=InputFormat(preset="pino")),
            "raw": SystemSettings(format="raw"),
        },
        input_formats={"fluent": InputFormat(preset="fluent-bit")},
        default_systems={"fluent": "app"},
    )
    dec = Decoder(settings)
    pino = orjson.dumps({"time": NOW_MS, "msg": "started"})
    by_header = dec.decode_lines(RawRecord("logs", 0, 0, pino, [("system", b"app")], NOW_MS))
    assert line(by_header[0]).content == "started"
    dead(dec.decode_lines(RawRecord("logs", 0, 0, pino, [("system", b"raw")], NOW_MS))[0], "has no 'message'")
    fluent = orjson.dumps({"@timestamp": NOW_MS / 1000, "log": "started"})
    assert line(dec.decode_lines(RawRecord("fluent", 0, 0, fluent, [], NOW_MS))[0]).system == "app"
    # raw text lines are read as before under every preset but otel
    assert line(dec.decode_lines(RawRecord("fluent", 0, 0, b"plain text", [], NOW_MS))[0]).content == "plain text"


# --- OpenTelemetry: one record, many lines ---------------------------------------------------------------------


def test_an_otlp_record_fans_out_to_lines_that_keep_their_index() -> None:
    lines = bgl_lines(5)
    record = shippers.otel_record(lines, "bgl")
    decoded = [line(d) for d in decode_all(decoder("otel"), record)]
    fmt = load_settings().systems["bgl"].line_format("bgl")
    assert [d.content for d in decoded] == [fmt.split(text)[0] for text, _ in lines]
    assert [d.event_ms for d in decoded] == [ms for _, ms in lines]
    assert [(d.source.offset, d.source.index) for d in decoded] == [(77, i) for i in range(5)]
    assert {d.system for d in decoded} == {"bgl"}  # service.name, over the topic's default system (hdfs)
    assert decoded[3].to_dict()["source"] == ["logs", 2, 77, 3]
    assert LogLine.from_dict(orjson.loads(orjson.dumps(decoded[3].to_dict()))) == decoded[3]


def test_one_bad_log_record_is_one_dead_letter_naming_its_index() -> None:
    lines = bgl_lines(4)
    bad = [
        {"timeUnixNano": "1733443200000000000", "body": {"kvlistValue": {"values": []}}},
        {"timeUnixNano": "1733443200", "body": {"stringValue": lines[0][0]}},  # seconds where OTLP has nanoseconds
        "not an object",
    ]
    record = shippers.otel_record(lines, "bgl", log_records=bad)
    decoded = decode_all(decoder("otel"), record)
    assert [d.source.index for d in decoded if isinstance(d, LogLine)] == [0, 1, 2, 3]
    letters = [d for d in decoded if isinstance(d, DeadLetter)]
    assert [d.index for d in letters] == [4, 5, 6]
    assert "body is kvlistValue, expected stringValue" in letters[0].reason
    assert "before 2000" in letters[1].reason and "epoch nanoseconds" in letters[1].reason
    assert "OTLP log record is a string" in letters[2].reason
    assert orjson.loads(letters[1].original) == bad[1] and letters[1].offset == 77
    assert letters[1].to_dict()["index"] == 5


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"resourceLogs": []}, "holds no log records"),
        ({"resourceLogs": [{"scopeLogs": [{"logRecords": []}]}]}, "holds no log records"),
        ({"resourceSpans": []}, "no 'resourceLogs' (is the exporter's encoding otlp_json)"),
        ({"resourceLogs": {"a": 1}}, "resourceLogs is an object, expected an array"),
        ({"resourceLogs": [{"scopeLogs": [7]}]}, "resourceLogs[0].scopeLogs[0] is a number"),
        ({"resourceLogs": [{"scopeLogs": [{"logRecords": "x"}]}]}, "logRecords is a string, expected an array"),
    ],
)
def test_an_otlp_record_of_the_wrong_shape_is_refused_whole(document: dict, reason: str) -> None:
    letter = dead(one(decoder("otel"), document), reason)
    assert letter.index is None and letter.original == orjson.dumps(document)


def test_otlp_time_system_and_label_fall_back_as_documented() -> None:
    text, ms = bgl_lines(1)[0]
    base = {"body": {"stringValue": text}}
    observed = {**base, "timeUnixNano": "0", "observedTimeUnixNano": str((ms + 5) * 1_000_000)}
    labelled = {**base, "attributes": [{"key": "truth", "value": {"stringValue": "anomalous"}}]}
    record = orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [observed, base, labelled]}]}]})
    dec = decoder("otel", label="truth")
    first, second, third = (line(d) for d in decode_all(dec, record, headers=[("system", b"bgl")]))
    assert first.event_ms == ms + 5  # timeUnixNano 0 is "unknown": the collector's observed time
    assert second.event_ms == ms  # neither: the line's own time
    assert (first.system, third.label, first.label) == ("bgl", "anomalous", None)  # no service.name: the header
    dead(decode_all(decoder("otel"), b"a raw text line")[0], "not an OTLP JSON object")
    unknown = shippers.otel_record([(text, ms)], "checkout")
    dead(decode_all(decoder("otel"), unknown)[0], "unknown system 'checkout'")


def test_otlp_records_are_held_to_max_record_bytes_and_each_body_to_max_line_bytes() -> None:
    settings = load_settings(input_formats={"logs": InputFormat(preset="otel")}, max_line_bytes=1000)
    dec = Decoder(settings)
    lines = bgl_lines(40)
    record = shippers.otel_record([*lines, ("x" * 1001, lines[0][1])], "bgl")
    assert len(record) > 1000  # a batch larger than one line may be
    decoded = decode_all(dec, record)
    assert sum(isinstance(d, LogLine) for d in decoded) == 40
    dead(decoded[-1], "OTLP body of 1001 bytes is over the limit of 1000")
    small = Decoder(settings.model_copy(update={"max_record_bytes": 2000}))
    dead(decode_all(small, record)[0], "over the limit of 2000")


def test_the_lines_of_one_otlp_record_are_all_windowed_with_distinct_window_ids() -> None:
    # 45 lines in one record, windows of 20: two windows hold only lines of offset 0. Without the index in the
    # upstream position the parse stage dropped lines 1..44 as repeats, and the two windows shared one id.
    bgl = SystemSettings(format="bgl", window={"kind": "count_tumbling", "size": 20})
    settings = load_settings(systems={"bgl": bgl}, input_formats={"logs": InputFormat(preset="otel")})
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    record = shippers.otel_record(bgl_lines(45), "bgl")
    out = []
    for replay in range(2):  # the second time, as after an upstream crash: dropped as repeats
        lines_out = ingest.process_batch([InputRecord("logs", 0, 0, None, record, NOW_MS)])
        for i, o in enumerate(lines_out):
            out += parse.process_batch([InputRecord(settings.topics.lines, 0, replay * 10 + i, o.key, o.value, 0)])
    windows = [Window.from_dict(orjson.loads(o.value)) for o in out if o.topic == settings.topics.windows]
    assert [[(w.offset, w.index) for w in window.lines] for window in windows] == [
        [(0, i) for i in range(20)],
        [(0, i) for i in range(20, 40)],
    ]
    assert len({w.window_id for w in windows}) == 2
    # on the wire, a line's index is written only when not 0 (windows of one-line records are as they were)
    first = orjson.loads(next(o.value for o in out if o.topic == settings.topics.windows))
    assert "index" not in first["lines"][0] and first["lines"][1]["index"] == 1


# --- settings -----------------------------------------------------------------------------------------------------


def test_input_formats_load_from_the_environment_and_the_systems_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "ADAPTLOG_INPUT_FORMATS", '{"fluent": "fluent-bit", "apps": {"preset": "zap", "time_unit": "ms"}}'
    )
    settings = load_settings()
    assert settings.input_formats["fluent"] == InputFormat(preset="fluent-bit")
    assert settings.input_formats["apps"].time_unit == "ms"
    monkeypatch.delenv("ADAPTLOG_INPUT_FORMATS")
    systems = tmp_path / "systems.yaml"
    systems.write_text(
        "systems:\n  app: {format: raw, input: {preset: pino}}\n"
        "input_formats:\n  otlp-logs: otel\n  vector-logs: {preset: vector, system: kubernetes.labels.app}\n"
    )
    settings = load_settings(systems_file=systems)
    assert settings.input_formats["otlp-logs"].preset == "otel"
    assert settings.input_formats["vector-logs"].system == ("kubernetes.labels.app",)
    assert settings.systems["app"].input == InputFormat(preset="pino")


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ("systems: {}\ninput_formats: {logs: graylog}\n", "input_formats.logs.preset"),
        ("systems: {}\ninput_formats: {logs: {preset: otel, message: log}}\n", "message, time, time_unit"),
        ("systems: {}\ninput_formats: {logs: {time_unit: minutes}}\n", "input_formats.logs.time_unit"),
        ("systems: {}\ninput_formats: {logs: {message: []}}\n", "input_formats.logs.message"),
        ("systems: {}\ninput_formats: {logs: 5}\n", "input_formats.logs"),
        ("systems: {}\ninput_formats: [logs]\n", "input_formats must map"),
    ],
)
def test_a_wrong_input_format_fails_at_start_naming_it(tmp_path: Path, document: str, named: str) -> None:
    path = tmp_path / "systems.yaml"
    path.write_text(document)
    with pytest.raises(ConfigError, match=named.replace("[", "\\[").replace(".", "\\.")):
        load_settings(systems_file=path)


# --- decode never raises --------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=8,
)
PRESET_KEYS = ["log", "MESSAGE", "@timestamp", "message", "timestamp", "msg", "ts", "time", "system", "label"]
DECODERS = {preset: decoder(preset) for preset in INPUT_PRESETS}


@settings(max_examples=300, deadline=None)
@given(
    preset=st.sampled_from(INPUT_PRESETS),
    fields=st.dictionaries(st.sampled_from(PRESET_KEYS), JSON_VALUES, max_size=5),
    timestamp_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_decode_never_raises_on_arbitrary_records_under_any_preset(
    preset: str, fields: dict, timestamp_ms: int
) -> None:
    value = json.dumps(fields).encode()  # stdlib: it also writes NaN and integers beyond 64 bits
    decoded = DECODERS[preset].decode_lines(RawRecord("logs", 0, 1, value, [("system", b"raw")], timestamp_ms))
    assert decoded and all(isinstance(d, LogLine | DeadLetter) for d in decoded)
    for d in decoded:
        if isinstance(d, LogLine):
            orjson.dumps(d.to_dict())  # what decode accepts, ingest can encode


OTLP_VALUE = (
    st.dictionaries(st.sampled_from(["stringValue", "intValue", "kvlistValue"]), JSON_VALUES, max_size=2) | JSON_VALUES
)
LOG_RECORD = st.dictionaries(
    st.sampled_from(["timeUnixNano", "observedTimeUnixNano", "body", "attributes"]),
    OTLP_VALUE | st.lists(st.fixed_dictionaries({"key": st.sampled_from(["service.name", "x"]), "value": OTLP_VALUE})),
    max_size=4,
)
ATTRIBUTES = st.lists(st.fixed_dictionaries({"key": st.just("service.name"), "value": OTLP_VALUE}))
SCOPE_LOGS = st.lists(st.fixed_dictionaries({"logRecords": st.lists(LOG_RECORD | JSON_VALUES)})) | JSON_VALUES
RESOURCE_LOGS = st.fixed_dictionaries(
    {"resource": st.fixed_dictionaries({"attributes": ATTRIBUTES}) | JSON_VALUES, "scopeLogs": SCOPE_LOGS}
)
OTLP = st.fixed_dictionaries({"resourceLogs": st.lists(RESOURCE_LOGS | JSON_VALUES, max_size=3)})


@settings(max_examples=300, deadline=None)
@given(document=OTLP)
def test_decode_never_raises_on_arbitrary_otlp_records(document: dict) -> None:
    value = json.dumps(document).encode()
    decoded = DECODERS["otel"].decode_lines(RawRecord("logs", 0, 1, value, [("system", b"raw")], NOW_MS))
    assert decoded and all(isinstance(d, LogLine | DeadLetter) for d in decoded)
    indexes = [d.source.index if isinstance(d, LogLine) else d.index for d in decoded]
    assert indexes == [None] or indexes == list(range(len(decoded)))  # refused whole, or one result per log record


def test_the_docs_input_formats_example_loads_and_reads_its_k8s_record(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "inputs.md").read_text()
    path = tmp_path / "systems.yaml"
    path.write_text(docs.split("```yaml\n", 1)[1].split("```", 1)[0])
    settings = load_settings(systems_file=path)
    assert {t: f.preset for t, f in settings.input_formats.items()} == {
        "fluent-logs": "fluent-bit",
        "vector-logs": "vector",
        "otlp-logs": "otel",
        "k8s-logs": "vector",
    }
    record = {
        "message": HDFS_LINE,
        "kubernetes": {"labels": {"app.kubernetes.io/name": "hdfs"}},
        "event": {"created": HDFS_MS * 1_000_000},
    }
    decoded = Decoder(settings).decode_lines(RawRecord("k8s-logs", 0, 0, orjson.dumps(record), [], NOW_MS))
    assert (line(decoded[0]).system, decoded[0].event_ms) == ("hdfs", HDFS_MS)
