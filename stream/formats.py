"""Line formats: how to cut a raw log line into its timestamp and its message content.

A format is a regex with named groups: ``content`` (required, what Drain mines) and optionally ``timestamp`` with a
``time_format`` (a strptime format, or ``epoch_s`` / ``epoch_ms``). It is compiled with DOTALL, so ``.`` crosses the
newlines of a multi-line message (a stack trace) and the content keeps all of it. Ready formats cover the Loghub
layouts that our data uses. Timestamps without a zone are taken as UTC: Loghub's logs carry no zone, and using the
machine's zone would make window ids depend on where the worker runs.

Loghub's BGL and Thunderbird files put a ground-truth column in front of each line (``-`` for normal, else the alert
category). That column is not part of a real log: ``replay`` strips it into a record header (``label_column``), and
the formats below describe the line without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from functools import lru_cache

from stream.errors import ConfigError, DecodeError
from stream.timeparse import compile_time_format

EPOCH_S = "epoch_s"
EPOCH_MS = "epoch_ms"


@dataclass(frozen=True)
class LineFormat:
    name: str
    pattern: str
    time_format: str | None = None
    label_column: bool = False  # Loghub files of this format lead with a label column (replay strips it)
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    read_time: Callable[[str], int] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            # DOTALL: a record may hold a multi-line message (a stack trace); without it ``.*`` stopped at the first
            # newline and the rest of the message was silently dropped. Drain splits tokens on any whitespace, so
            # the newlines do not change templates; the masked content keeps them.
            regex = re.compile(self.pattern, re.DOTALL)
        except re.error as exc:
            raise ConfigError(f"format {self.name}.pattern", f"not a valid regex: {exc}") from exc
        if "content" not in regex.groupindex:
            raise ConfigError(f"format {self.name}.pattern", "needs a named group 'content'")
        if ("timestamp" in regex.groupindex) != (self.time_format is not None):
            raise ConfigError(
                f"format {self.name}.time_format", "a 'timestamp' group and a time_format go together (both or neither)"
            )
        object.__setattr__(self, "regex", regex)
        # Chosen once here: parse_time chose the parser per line (a branch and an lru_cache lookup)
        object.__setattr__(self, "read_time", time_reader(self.time_format) if self.time_format else None)

    def split(self, line: str) -> tuple[str, int | None]:
        """Return (content, event_ms or None when the format has no timestamp). Raises DecodeError."""
        # The regex, not str.split: CPython's re matches these anchored layouts in one C call, and a cut with str
        # methods that gave exactly the regex's groups on every real line was 1.2-1.8x slower (docs/stream-results.md)
        match = self.regex.match(line)
        if match is None:
            raise DecodeError("decode", f"line does not match format {self.name!r}")
        if self.read_time is None:
            return match.group("content"), None
        content, timestamp = match.group("content", "timestamp")
        return content, self.read_time(timestamp)


def parse_time(text: str, time_format: str) -> int:
    """Parse a timestamp into epoch milliseconds (UTC when the text carries no zone). Raises DecodeError.

    Every format is range-checked like the JSON ``ts``: an epoch of 20 digits decodes to an int that orjson cannot
    encode, which used to crash the ingest stage after decode had accepted the line.
    """
    return time_reader(time_format)(text)


@lru_cache(maxsize=64)
def time_reader(time_format: str) -> Callable[[str], int]:
    """``parse_time`` for one format, the format's parser looked up once."""
    if time_format == EPOCH_S:
        convert: Callable[[str], int] = _epoch_s_to_ms
    elif time_format == EPOCH_MS:
        convert = int
    else:
        convert = compile_time_format(time_format)

    def read(text: str) -> int:
        try:
            event_ms = convert(text)
        except (ValueError, ArithmeticError) as exc:  # ArithmeticError: OverflowError and decimal's signals
            raise DecodeError("decode", f"timestamp {text[:64]!r} does not parse as {time_format!r}") from exc
        return _in_range(event_ms, text)

    return read


# Epoch ms beyond +-2**53 are not times anyone logs, and would not survive JSON readers that use doubles.
MAX_EPOCH_MS = 2**53
_MAX_EPOCH_S = Decimal(MAX_EPOCH_MS).scaleb(-3)  # exact: 9007199254740.992
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _epoch_s_to_ms(text: str) -> int:
    # Whole ASCII seconds (every Thunderbird line) skip Decimal: 0.4 instead of 1.8 us. The length bound keeps
    # int() far below its digit limit, where Decimal would still read a long run of leading zeros; the caller's
    # range check refuses too large a value with the same reason as the check below.
    if len(text) < 19 and text.isascii() and text.isdigit():
        return int(text) * 1000
    # Decimal, not float: float("1.005") * 1000 is 1004.999..., which truncated to 1004 ms. Sub-millisecond digits
    # are floored, as %f's microseconds are: the millisecond an instant falls in.
    seconds = Decimal(text)
    if not seconds.is_finite():
        raise ValueError(f"{text[:64]!r} is not a finite number")
    # Checked before any arithmetic: "1e999999" would overflow the multiplication or become a huge integer.
    if seconds.copy_abs() > _MAX_EPOCH_S:  # copy_abs: abs() rounds to the context and can overflow
        raise _out_of_range(text)
    return int((seconds * 1000).to_integral_value(rounding=ROUND_FLOOR))


def _in_range(event_ms: int, value: object) -> int:
    if not -MAX_EPOCH_MS <= event_ms <= MAX_EPOCH_MS:
        raise _out_of_range(value)
    return event_ms


def _out_of_range(value: object) -> DecodeError:
    return DecodeError("decode", f"timestamp {value!r:.40} is out of range for epoch milliseconds")


def parse_iso_or_epoch_ms(value: object) -> int:
    """A JSON ``ts``: epoch milliseconds (number or digit string) or ISO 8601. Raises DecodeError."""
    return _in_range(_iso_or_epoch_ms(value), value)


def _iso_or_epoch_ms(value: object) -> int:
    if isinstance(value, bool):  # bool is an int subclass; true/false is not a time
        raise DecodeError("decode", f"ts {value!r} is not a timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not abs(value) <= MAX_EPOCH_MS:  # also NaN and infinities, which int() refuses
            raise _out_of_range(value)
        return int(value)
    if isinstance(value, str):
        if value.isascii() and value.isdigit():  # isdigit alone admits "²", which int() refuses
            try:
                return int(value)
            except ValueError as exc:  # more digits than int() converts
                raise _out_of_range(value) from exc
        try:
            return iso8601_ms(value)
        except ValueError as exc:
            raise DecodeError("decode", f"ts {value[:64]!r} is neither epoch ms nor ISO 8601") from exc
    raise DecodeError("decode", f"ts has type {type(value).__name__}, expected epoch ms or ISO 8601 string")


def iso8601_ms(text: str) -> int:
    """ISO 8601 / RFC 3339 text to epoch ms (UTC when it has no zone); more than 6 fraction digits (Vector writes
    nanoseconds) are cut to microseconds by fromisoformat. Raises ValueError."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Integer arithmetic: timestamp() * 1000 goes through a float and can land a millisecond early.
    return (parsed - _EPOCH) // _ONE_MS


READY_FORMATS: dict[str, LineFormat] = {
    f.name: f
    for f in (
        LineFormat("raw", r"(?P<content>.*)"),
        # 081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-16 src: /10.250.19.102:54106 ...
        LineFormat(
            "hdfs",
            r"(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<component>[^:]*): (?P<content>.*)",
            "%y%m%d %H%M%S",
        ),
        # 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO ...
        LineFormat(
            "bgl",
            r"(?P<epoch>\d+) (?P<date>\S+) (?P<node>\S+) (?P<timestamp>\d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.\d+) "
            r"(?P<noderepeat>\S+) (?P<type>\S+) (?P<component>\S+) (?P<level>\S+) ?(?P<content>.*)",
            "%Y-%m-%d-%H.%M.%S.%f",
            label_column=True,
        ),
        # 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root
        LineFormat(
            "thunderbird",
            r"(?P<timestamp>\d+) (?P<date>\S+) (?P<user>\S+) (?P<month>\S+) +(?P<day>\d+) (?P<time>\S+) "
            r"(?P<location>\S+) ?(?:(?P<component>[\w\-.()/@]+)(?:\[(?P<pid>\d+)\])?: )?(?P<content>.*)",
            EPOCH_S,
            label_column=True,
        ),
    )
}


def ready_format(name: str, setting: str) -> LineFormat:
    try:
        return READY_FORMATS[name]
    except KeyError:
        raise ConfigError(
            setting, f"unknown format {name!r}; ready formats: {', '.join(sorted(READY_FORMATS))}"
        ) from None
