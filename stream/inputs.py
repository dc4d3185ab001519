"""Input formats at run time: where a JSON record keeps its message, time, system and label, and how to read its time.

The presets are what each shipper writes to Kafka (docs/inputs.md has the shipper configs)::

    preset      message        time           a number in it is   system, label
    json        message        ts             epoch ms            system, label    (adaptlog's own, as before)
    fluent-bit  log, MESSAGE   @timestamp     epoch s (float)     -, -
    vector      message        timestamp      refused: RFC 3339   -, -
    zap         msg            ts             epoch s (float)     -, -
    pino        msg            time           epoch ms            -, -
    otel        body           timeUnixNano   epoch ns            resource attribute service.name, -

A ``-`` means the record is not read for it: the ``system`` / ``label`` headers and the topic's default system give
it (a shipper's record rarely has such a field, and an unrelated ``label`` field would dead-letter every line).
Under every unit a string that is not a number is read as ISO 8601, which no unit could be meant for; a number is
read in the preset's (or the setting's) unit and never guessed from its size. What guessing would have caught is
caught by the range check instead: a time before ``earliest`` or too far after the record's broker timestamp is a
dead letter naming the field, the value and the unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from stream.errors import DecodeError
from stream.formats import MAX_EPOCH_MS, iso8601_ms, parse_iso_or_epoch_ms
from stream.settings import InputFormat

Path = tuple[str, ...]
OTEL = "otel"

# preset -> (message paths, time paths, time unit, system paths, label paths); for otel, system and label name
# attributes, and message and time are OTLP's body and timeUnixNano (stream.otlp).
PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, tuple[str, ...], tuple[str, ...]]] = {
    "json": (("message",), ("ts",), "ms", ("system",), ("label",)),
    "fluent-bit": (("log", "MESSAGE"), ("@timestamp",), "s", (), ()),
    "vector": (("message",), ("timestamp",), "iso8601", (), ()),
    "zap": (("msg",), ("ts",), "s", (), ()),
    "pino": (("msg",), ("time",), "ms", (), ()),
    OTEL: ((), (), "ns", ("service.name",), ()),
}
# What one unit is in milliseconds, as a fraction (numerator, denominator): exact integer arithmetic.
_UNIT_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", re.ASCII)
_PATH_SPLIT = re.compile(r"(?<!\\)\.")


@dataclass(frozen=True, slots=True)
class FieldMap:
    """One input format, compiled: paths split into keys, bounds in epoch ms."""

    preset: str
    message: tuple[Path, ...]
    time: tuple[Path, ...]
    time_unit: str
    system: tuple[Path, ...]  # for otel: resource attribute keys, each a 1-tuple
    label: tuple[Path, ...]  # for otel: log record attribute keys, each a 1-tuple
    earliest_ms: int
    max_ahead_ms: int | None
    fans_out: bool  # one record holds many lines (OTLP batches); a field, not a property: read once a record
    plain_json: bool  # the json preset as it is: read by name (stream.decode), not by walking paths

    def read_time(self, path: Path, value: object, arrival_ms: int) -> int:
        """A time field's value as epoch ms, range-checked. Raises DecodeError naming the field."""
        if self.preset == "json" and self.time_unit == "ms":
            event_ms = parse_iso_or_epoch_ms(value)  # the json preset's ts, read exactly as it always was
        else:
            event_ms = parse_time_value(path, value, self.time_unit)
        return self.check_range(path, value, event_ms, arrival_ms)

    def check_range(self, path: Path, value: object, event_ms: int, arrival_ms: int) -> int:
        ahead = self.max_ahead_ms
        if event_ms >= self.earliest_ms and (ahead is None or event_ms - arrival_ms <= ahead):
            return event_ms  # the common case, in one test
        name = path_name(path)
        if event_ms < self.earliest_ms:
            raise DecodeError(
                "decode",
                f"time {name!r} = {value!r:.40} is {_iso(event_ms)}, before {_iso(self.earliest_ms)} (the input "
                f"format's earliest): read as {_UNIT_NAMES[self.time_unit]}; is it in another unit? (time_unit)",
            )
        # Against the record's broker timestamp, not the wall clock: decoding the same record again (a replay after
        # a restart) must give the same answer. A record stamped before earliest has no clock to check against
        # (producers that send 0 or -1, test harnesses that count from 0).
        ahead = self.max_ahead_ms
        if ahead is not None and arrival_ms >= self.earliest_ms and event_ms - arrival_ms > ahead:
            raise DecodeError(
                "decode",
                f"time {name!r} = {value!r:.40} is {_iso(event_ms)}, {(event_ms - arrival_ms) // 1000} s after the "
                f"record's timestamp {_iso(arrival_ms)} (more than max_ahead_ms {self.max_ahead_ms})",
            )
        return event_ms


_UNIT_NAMES = {
    "s": "epoch seconds",
    "ms": "epoch milliseconds",
    "us": "epoch microseconds",
    "ns": "epoch nanoseconds",
    "iso8601": "ISO 8601",
}


def field_map(spec: InputFormat) -> FieldMap:
    message, time, unit, system, label = PRESETS[spec.preset]
    otel = spec.preset == OTEL

    def paths(given: tuple[str, ...] | None, preset: tuple[str, ...]) -> tuple[Path, ...]:
        names = given if given is not None else preset
        return tuple((name,) if otel else split_path(name) for name in names)

    return FieldMap(
        preset=spec.preset,
        message=paths(spec.message, message),
        time=paths(spec.time, time),
        time_unit=spec.time_unit or unit,
        system=paths(spec.system, system),
        label=paths(spec.label, label),
        earliest_ms=(spec.earliest - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1),
        max_ahead_ms=spec.max_ahead_ms,
        fans_out=otel,
        plain_json=(spec.preset, spec.message, spec.time, spec.time_unit, spec.system, spec.label)
        == ("json", None, None, None, None, None),
    )


def split_path(dotted: str) -> Path:
    """``a.b`` -> ("a", "b"); ``service\\.name`` is one key with a dot in it."""
    return tuple(part.replace("\\.", ".") for part in _PATH_SPLIT.split(dotted))


def path_name(path: Path) -> str:
    return ".".join(key.replace(".", "\\.") for key in path)


def first_present(fields: dict[str, object], paths: tuple[Path, ...]) -> tuple[Path, object] | None:
    """The first path whose value is present and not null, with that value."""
    for path in paths:
        if len(path) == 1:  # the presets' paths: one dict lookup, a third of the walk's cost per record
            value = fields.get(path[0])
        else:
            value = fields
            for key in path:
                if not isinstance(value, dict):
                    value = None
                    break
                value = value.get(key)
        if value is not None:
            return path, value
    return None


def parse_time_value(path: Path, value: object, unit: str) -> int:
    """A time field's JSON value in epoch ms: numbers (or numeric strings) in ``unit``, other strings ISO 8601."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        kind = type(value).__name__
        raise DecodeError("decode", f"time {path_name(path)!r} is a {kind}, expected a number or ISO 8601 text")
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        try:
            return _in_range(iso8601_ms(value), value)
        except ValueError:
            reason = f"time {path_name(path)!r} = {value[:64]!r} is neither a number nor ISO 8601"
            raise DecodeError("decode", reason) from None
    if unit == "iso8601":
        raise DecodeError(
            "decode",
            f"time {path_name(path)!r} = {value!r:.40} is a number; this input format reads ISO 8601 / RFC 3339 text "
            "(set time_unit to read epoch numbers)",
        )
    numerator, denominator = _UNIT_MS[unit]
    if isinstance(value, int):  # exact and the common case: floor division, as %f floors microseconds
        return _in_range(value * numerator // denominator, value)
    # Decimal of the shortest repr, not float arithmetic: 1733443200.123 * 1000 is 1733443200122.9998 as a float.
    try:
        number = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise DecodeError("decode", f"time {path_name(path)!r} = {value!r:.40} is not a number") from None
    if not number.is_finite() or number.adjusted() > 30:  # checked before arithmetic: 1e999999 stays cheap
        raise _out_of_range(value)
    return _in_range(int((number * numerator / denominator).to_integral_value(rounding=ROUND_FLOOR)), value)


def _in_range(event_ms: int, value: object) -> int:
    if not -MAX_EPOCH_MS <= event_ms <= MAX_EPOCH_MS:
        raise _out_of_range(value)
    return event_ms


def _out_of_range(value: object) -> DecodeError:
    return DecodeError("decode", f"timestamp {value!r:.40} is out of range for epoch milliseconds")


def _iso(event_ms: int) -> str:
    try:
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=event_ms)).isoformat(timespec="milliseconds")
    except OverflowError:  # beyond year 9999: say it in milliseconds
        return f"{event_ms} ms"


JSON = field_map(InputFormat())  # what a topic and system with no input format read
