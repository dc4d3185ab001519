"""Decode an input record into its log lines (:class:`LogLine`), or dead letters saying why not. Never raises.

A record is either a raw text line (system from the ``system`` header, else the input topic's default system) or a
JSON object. Where a JSON record keeps its message, time, system and label is its *input format*
(``stream.inputs``): the topic's (``input_formats``), else its system's when the header or the topic names the
system, else the ``json`` preset: ``{"system", "message", "ts", "label"}`` (ts in epoch ms or ISO 8601). A value
that starts with ``{`` is taken as JSON: a log line that itself starts with ``{`` should be sent wrapped in a JSON
object. Under the ``otel`` format a record is an OTLP batch of many lines (``stream.otlp``); raw text is refused there.

Headers that replay writes: ``system``, ``label`` (normal / anomalous) and ``key_labels`` (a JSON object giving the
label of each session key the line names, e.g. HDFS block ids, because HDFS labels blocks, not lines). They hold for
every line of a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from stream import otlp
from stream.errors import DecodeError
from stream.formats import LineFormat, parse_iso_or_epoch_ms
from stream.inputs import JSON, FieldMap, Path, field_map, first_present, path_name
from stream.records import ANOMALOUS, NORMAL, DeadLetter, LogLine, SourceRef, json_type
from stream.runtime.dead_letters import letter
from stream.settings import Settings

Headers = Sequence[tuple[str, bytes]]
LABELS = {NORMAL, ANOMALOUS}
TS = ("ts",)
Decoded = LogLine | DeadLetter


# Not frozen, though never changed after construction: built several times per log line, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs 4x a plain one; unfrozen, the stream stages use 20% less CPU.
@dataclass(slots=True)
class RawRecord:
    """A record as it came off the input topic."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int = 0  # broker timestamp, the event time of last resort


class Decoder:
    def __init__(self, settings: Settings) -> None:
        self._formats: dict[str, LineFormat] = {
            name: system.line_format(name) for name, system in settings.systems.items()
        }
        self._default_systems = dict(settings.default_systems)
        self._max_bytes = settings.max_line_bytes
        self._max_record_bytes = max(settings.max_record_bytes, settings.max_line_bytes)
        self._by_topic = {topic: field_map(spec) for topic, spec in settings.input_formats.items()}
        self._by_system = {
            name: field_map(system.input) for name, system in settings.systems.items() if system.input is not None
        }

    def decode(self, record: RawRecord) -> Decoded:
        """The one line of a record that holds one (every input format but otel); see :meth:`decode_lines`."""
        decoded = self.decode_lines(record)
        if len(decoded) == 1:
            return decoded[0]
        return self._dead(record, "decode", f"the record holds {len(decoded)} lines; decode it with decode_lines")

    def decode_lines(self, record: RawRecord) -> list[Decoded]:
        """Every line of the record, in order, each a LogLine or a DeadLetter. Never raises."""
        try:
            return self._decode(record)
        except DecodeError as exc:
            return [self._dead(record, exc.stage, exc.reason)]
        except Exception as exc:  # a bug must not lose the record: dead-letter it with the exception, then go on
            return [self._dead(record, "decode", f"unexpected {type(exc).__name__}: {exc}")]

    def input_format(self, topic: str, headers: dict[str, str]) -> FieldMap:
        """The topic's input format, else the system's when the header or the topic names it, else json."""
        by_topic = self._by_topic.get(topic)
        if by_topic is not None:
            return by_topic
        return self._system_format(topic, headers) if self._by_system else JSON

    def _system_format(self, topic: str, headers: dict[str, str]) -> FieldMap:
        system = headers.get("system") or self._default_systems.get(topic)
        return self._by_system.get(system, JSON) if system is not None else JSON

    def _decode(self, record: RawRecord) -> list[Decoded]:
        value = record.value
        if value is None:
            raise DecodeError("decode", "record has no value (tombstone)")
        headers = _header_map(record.headers)
        # input_format() spelled out, and skipped when no input format is set: a call per record is a tenth of a raw
        # line's decode (bench/decode_bench.py)
        if self._by_topic or self._by_system:
            fmt = self._by_topic.get(record.topic) or self._system_format(record.topic, headers)
        else:
            fmt = JSON
        if len(value) > self._max_bytes and (not fmt.fans_out or len(value) > self._max_record_bytes):
            limit = self._max_record_bytes if fmt.fans_out else self._max_bytes
            raise DecodeError("decode", f"record of {len(value)} bytes is over the limit of {limit}")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("decode", f"invalid UTF-8 at byte {exc.start}") from None
        if text.lstrip().startswith("{"):
            fields = _json_fields(text)
            if fmt.fans_out:
                return self._otlp_lines(record, fields, headers, fmt)
            return [self._json_line(record, fields, headers, fmt)]
        if fmt.fans_out:
            raise DecodeError("decode", "not an OTLP JSON object (the otel input format reads encoding otlp_json)")
        # A trailing newline is the line's end, not part of it; inner ones are kept.
        message = text.rstrip("\r\n")
        return [self._line(record, headers.get("system"), message, None, headers.get("label"), headers)]

    def _json_line(
        self, record: RawRecord, fields: dict[str, object], headers: dict[str, str], fmt: FieldMap
    ) -> LogLine:
        if fmt.plain_json:
            # adaptlog's own record read by name, as before input formats: the generic walk below costs a quarter
            # more per line (bench/decode_bench.py), and this is the default input
            system = _text_field(fields, "system") or headers.get("system")
            message = _text_field(fields, "message")
            if message is None:
                raise DecodeError("decode", _no_message(fields, fmt))
            ts = fields.get("ts")
            event_ms = None if ts is None else parse_iso_or_epoch_ms(ts)
            # the range test inline (FieldMap.check_range only on a miss, to say which bound): no call per line
            ahead = fmt.max_ahead_ms
            if event_ms is not None and (
                event_ms < fmt.earliest_ms or (ahead is not None and event_ms - record.timestamp_ms > ahead)
            ):
                event_ms = fmt.check_range(TS, ts, event_ms, record.timestamp_ms)
            label = _text_field(fields, "label") or headers.get("label")
        else:
            system = _text_at(fields, fmt.system) or headers.get("system")
            found = first_present(fields, fmt.message)
            if found is None:
                raise DecodeError("decode", _no_message(fields, fmt))
            message = _text(found)
            when = first_present(fields, fmt.time)
            event_ms = None if when is None else fmt.read_time(when[0], when[1], record.timestamp_ms)
            label = _text_at(fields, fmt.label) or headers.get("label")
        # A trailing newline ends the line; inner ones are kept.
        return self._line(record, system, message.rstrip("\r\n"), event_ms, label, headers)

    def _otlp_lines(
        self, record: RawRecord, document: dict[str, object], headers: dict[str, str], fmt: FieldMap
    ) -> list[Decoded]:
        out: list[Decoded] = []
        for line in otlp.log_records(document):  # raises for a record of the wrong shape: it is refused whole
            try:
                out.append(self._otlp_line(record, line, headers, fmt))
            except DecodeError as exc:  # one bad log record is one dead letter; its batch goes on
                out.append(letter(exc.stage, exc.reason, record, orjson.dumps(line.log_record), index=line.index))
        return out

    def _otlp_line(self, record: RawRecord, line: otlp.OtlpLine, headers: dict[str, str], fmt: FieldMap) -> LogLine:
        log_record = line.log_record
        if not isinstance(log_record, dict):
            raise DecodeError("decode", f"OTLP log record is {json_type(log_record)}, expected an object")
        message = otlp.body_text(log_record)
        # Encoded only when it could be over: a character is at most 4 bytes of UTF-8.
        if len(message) > self._max_bytes // 4 and (size := len(message.encode())) > self._max_bytes:
            raise DecodeError("decode", f"OTLP body of {size} bytes is over the limit of {self._max_bytes}")
        when = otlp.time_field(log_record)
        event_ms = fmt.read_time((when[0],), when[1], record.timestamp_ms) if when is not None else None
        system = otlp.string_attribute(line.resource_attributes, fmt.system, "resource") or headers.get("system")
        label = otlp.string_attribute(log_record.get("attributes"), fmt.label, "log record") or headers.get("label")
        return self._line(record, system, message.rstrip("\r\n"), event_ms, label, headers, line.index)

    def _line(
        self,
        record: RawRecord,
        system: str | None,
        message: str,
        event_ms: int | None,
        label: str | None,
        headers: dict[str, str],
        index: int = 0,
    ) -> LogLine:
        system = system or self._default_systems.get(record.topic)
        if system is None:
            raise DecodeError("decode", "no system: set the 'system' header or field, or a default for the topic")
        line_format = self._formats.get(system)
        if line_format is None:
            raise DecodeError("decode", f"unknown system {system!r}")
        content, line_ms = line_format.split(message)
        event_ms = event_ms if event_ms is not None else line_ms if line_ms is not None else record.timestamp_ms
        return LogLine(
            system=system,
            content=content,
            event_ms=event_ms,
            source=SourceRef(record.topic, record.partition, record.offset, index),
            label=_check_label(label),
            key_labels=_key_labels(headers.get("key_labels")),
        )

    @staticmethod
    def _dead(record: RawRecord, stage: str, reason: str) -> DeadLetter:
        return letter(stage, reason, record)


def _header_map(headers: Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, raw in headers:
        try:
            out[name] = raw.decode("utf-8") if raw is not None else ""
        except UnicodeDecodeError:
            raise DecodeError("decode", f"header {name!r} is not UTF-8") from None
    return out


def _json_fields(text: str) -> dict[str, object]:
    try:
        fields = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("decode", f"invalid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise DecodeError("decode", f"JSON record is a {type(fields).__name__}, expected an object")
    return fields


def _text(found: tuple[Path, object]) -> str:
    path, value = found
    if not isinstance(value, str):
        raise DecodeError("decode", f"JSON field {path_name(path)!r} is a {type(value).__name__}, expected a string")
    return value


def _text_field(fields: dict[str, object], name: str) -> str | None:
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    raise DecodeError("decode", f"JSON field {name!r} is a {type(value).__name__}, expected a string")


def _text_at(fields: dict[str, object], paths: tuple[Path, ...]) -> str | None:
    found = first_present(fields, paths)
    return _text(found) if found is not None else None


def _no_message(fields: dict[str, object], fmt: FieldMap) -> str:
    wanted = " or ".join(repr(path_name(path)) for path in fmt.message)
    # The record's own keys tell a user which shipper wrote it (log / MESSAGE: Fluent Bit; msg: zap or pino).
    keys = ", ".join(repr(key) for key in list(fields)[:8])
    return f"JSON record has no {wanted} (input format {fmt.preset}; the record's keys: {keys or 'none'})"


def _check_label(label: str | None) -> str | None:
    if label is not None and label not in LABELS:
        raise DecodeError("decode", f"label {label[:32]!r} is not one of {sorted(LABELS)}")
    return label


def _key_labels(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        labels = orjson.loads(raw)
    except orjson.JSONDecodeError:
        labels = None
    if not isinstance(labels, dict) or not all(isinstance(v, str) and v in LABELS for v in labels.values()):
        raise DecodeError("decode", f"header key_labels must map keys to {sorted(LABELS)}")
    return labels
