"""What every wire record's decoder shares: the error it raises, the JSON field checks, the label words."""

from __future__ import annotations

from typing import Any

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
