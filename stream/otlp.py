"""OTLP JSON log records, as the OpenTelemetry Collector's kafka exporter writes them (``encoding: otlp_json``).

One Kafka record is an ``ExportLogsServiceRequest``::

    {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "hdfs"}}]},
                       "scopeLogs": [{"scope": {...}, "logRecords": [{"timeUnixNano": "1733443200123000000",
                                                                      "body": {"stringValue": "..."}, ...}]}]}]}

and holds many log lines. Each line is numbered in record order (its ``index``, 0-based across every resource and
scope), which with the record's offset names where it came from in windows and dead letters. The record's structure
is checked as a whole (a wrong shape refuses the record); a log record is checked alone, so one bad line among
hundreds is one dead letter, not the loss of its batch. OTLP's JSON writes 64-bit integers as decimal strings;
numbers are accepted too. A ``timeUnixNano`` of 0 or none means "unknown" in OTLP: ``observedTimeUnixNano`` (when the
collector saw the line) is used then.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from stream.errors import DecodeError
from stream.records import json_type


@dataclass(slots=True)
class OtlpLine:
    index: int
    log_record: object  # the logRecords entry as decoded; checked by the accessors below
    resource_attributes: object


def log_records(document: dict[str, object]) -> Iterator[OtlpLine]:
    """Every log record of an ``ExportLogsServiceRequest``, numbered. Raises DecodeError for a wrong shape."""
    index = 0
    for resource_at, resource_logs in enumerate(_array(document, "resourceLogs", "")):
        where = f"resourceLogs[{resource_at}]"
        if not isinstance(resource_logs, dict):
            raise DecodeError("decode", f"OTLP {where} is {json_type(resource_logs)}, expected an object")
        resource = resource_logs.get("resource") or {}
        attributes = resource.get("attributes") if isinstance(resource, dict) else None
        for scope_at, scope_logs in enumerate(_array(resource_logs, "scopeLogs", where, required=False)):
            scope_where = f"{where}.scopeLogs[{scope_at}]"
            if not isinstance(scope_logs, dict):
                raise DecodeError("decode", f"OTLP {scope_where} is {json_type(scope_logs)}, expected an object")
            for log_record in _array(scope_logs, "logRecords", scope_where, required=False):
                yield OtlpLine(index, log_record, attributes)
                index += 1
    if index == 0:
        # An exporter does not send empty batches; saying so beats losing a record that looked like one silently.
        raise DecodeError("decode", "OTLP record holds no log records (resourceLogs[].scopeLogs[].logRecords[])")


def _array(parent: dict[str, object], name: str, where: str, *, required: bool = True) -> list[object]:
    value = parent.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        place = f"{where}.{name}" if where else name
        if value is None:
            raise DecodeError("decode", f"not an OTLP logs record: no {place!r} (is the exporter's encoding otlp_json)")
        raise DecodeError("decode", f"OTLP {place} is {json_type(value)}, expected an array")
    return value


def body_text(log_record: dict[str, object]) -> str:
    """The line: the body's ``stringValue``. Structured bodies are refused, not flattened into some text."""
    body = log_record.get("body")
    if not isinstance(body, dict) or not body:
        raise DecodeError("decode", "OTLP log record has no body")
    text = body.get("stringValue")
    if not isinstance(text, str):
        kinds = ", ".join(sorted(body)) if isinstance(body, dict) else json_type(body)
        raise DecodeError("decode", f"OTLP log record body is {kinds}, expected stringValue")
    return text


def time_field(log_record: dict[str, object]) -> tuple[str, object] | None:
    """(field name, value) of the line's time in nanoseconds: timeUnixNano, else observedTimeUnixNano; None when
    neither is set (0 is OTLP's "unknown")."""
    for name in ("timeUnixNano", "observedTimeUnixNano"):
        value = log_record.get(name)
        if value is not None and value not in (0, "0", ""):
            return name, value
    return None


def string_attribute(attributes: object, keys: tuple[tuple[str, ...], ...], what: str) -> str | None:
    """The first of ``keys`` present in an OTLP attribute list, as text; None when none is present."""
    if not isinstance(attributes, list):
        return None
    by_key = {a.get("key"): a.get("value") for a in attributes if isinstance(a, dict)}
    for (key,) in keys:
        if key not in by_key:
            continue
        value = by_key[key]
        text = value.get("stringValue") if isinstance(value, dict) else None
        if not isinstance(text, str):
            raise DecodeError("decode", f"OTLP {what} attribute {key!r} is not a stringValue")
        return text
    return None
