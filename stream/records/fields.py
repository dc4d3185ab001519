"""What every wire record's decoder shares: the error it raises, the JSON field checks, the label words."""

from __future__ import annotations

from typing import Any

import orjson

from stream.errors import DecodeError

ANOMALOUS = "anomalous"
NORMAL = "normal"
# SQLite integers (the trainer's label store) and Kafka's int64 fields: a larger number is not a time or an offset
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class RecordError(DecodeError, ValueError):
    """A wire record whose fields are missing, of the wrong JSON type or out of range; ``reason`` names the field.

    A DecodeError, so it is dead-lettered like any record that does not decode, and a ValueError, so callers that
    catch ValueError around ``from_dict`` (the inference worker) keep dead-lettering it too."""

    def __init__(self, reason: str) -> None:
        super().__init__("record", reason)


def field_value(d: dict[str, Any], name: str, where: str = "") -> Any:
    if name not in d:
        raise RecordError(f"{where}missing field {name!r}")
    return d[name]


def text_field(d: dict[str, Any], name: str, where: str = "", *, empty: bool = True) -> str:
    value = field_value(d, name, where)
    if not isinstance(value, str):
        raise RecordError(f"{where}field {name!r} must be a string, not {json_type(value)}")
    if not empty and not value:
        raise RecordError(f"{where}field {name!r} is empty")
    return value


def int64_field(d: dict[str, Any], name: str, where: str = "") -> int:
    value = field_value(d, name, where)
    if isinstance(value, float):  # JSON has one number type: say which number (5.5, or 2**64 read as a float)
        raise RecordError(f"{where}field {name!r} must be an integer, not {value!r}")
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int in Python, never one in a record
        raise RecordError(f"{where}field {name!r} must be an integer, not {json_type(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise RecordError(f"{where}field {name!r} is out of the 64-bit integer range: {value}")
    return value


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons a sender can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def optional_text(d: dict[str, Any], name: str, where: str = "") -> str | None:
    """A string field that may be null or absent."""
    value = d.get(name)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{where}field {name!r} must be a string or null, not {json_type(value)}")
    return value


def optional_int64(d: dict[str, Any], name: str, where: str = "") -> int | None:
    """An integer field that may be null or absent."""
    return None if d.get(name) is None else int64_field(d, name, where)


def optional_number(d: dict[str, Any], name: str, where: str = "") -> float | None:
    """A number field that may be null or absent (orjson writes a NaN as null)."""
    value = d.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{where}field {name!r} must be a number or null, not {json_type(value)}")
    return float(value)


def boolean_field(d: dict[str, Any], name: str, where: str = "") -> bool:
    value = field_value(d, name, where)
    if not isinstance(value, bool):
        raise RecordError(f"{where}field {name!r} must be a boolean, not {json_type(value)}")
    return value


def json_object(value: bytes | None, what: str) -> dict[str, Any]:
    """A record's bytes as a JSON object; RecordError saying why for anything else (an empty record, bad JSON)."""
    if not value:
        raise RecordError(f"an empty record is not {what}")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"{what} must be JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RecordError(f"{what} must be a JSON object, not {json_type(document)}")
    return document
