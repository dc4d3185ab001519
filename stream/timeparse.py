"""Fast parsing of log timestamps for the common strptime directives.

``datetime.strptime`` costs ~25 µs a call (a regex built per format, then much Python per field), which was a
sixth of a stream worker's per-line CPU. A format made only of ``%Y %y %m %d %H %M %S %f`` and literal text is
compiled here once into a regex, and a match becomes epoch milliseconds with integer arithmetic (UTC). Any other
format falls back to strptime, so behaviour stays strptime's: a test compares both on real and random input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# CPython's own _strptime patterns: their alternatives encode each field's range, so a regex match backtracks
# exactly as strptime's does ("00110 000" as %y%m%d %H%M%S is month 1, day 10; plain \d{1,2} took month 11, day 0).
_FIELDS = {
    "Y": r"(?P<Y>\d\d\d\d)",
    "y": r"(?P<y>\d\d)",
    "m": r"(?P<m>1[0-2]|0[1-9]|[1-9])",
    "d": r"(?P<d>3[01]|[12]\d|0[1-9]|[1-9]| [1-9])",
    "H": r"(?P<H>2[0-3]|[0-1]\d|\d)",
    "M": r"(?P<M>[0-5]\d|\d)",
    "S": r"(?P<S>6[0-1]|[0-5]\d|\d)",
    "f": r"(?P<f>[0-9]{1,6})",
}

Parser = Callable[[str], int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()


@lru_cache(maxsize=64)
def compile_time_format(time_format: str) -> Parser:
    """A function from text to epoch ms (UTC when the text has no zone) that raises ValueError like strptime."""
    pattern = _fast_pattern(time_format)
    if pattern is None:
        return lambda text: _strptime_ms(text, time_format)
    regex = re.compile(pattern)
    # Each directive's place among the groups (the pattern's only groups), read with one groups() call: a dict of
    # the groups and a get per field cost half of a parse (BGL's microsecond times miss the cache below every line)
    at = {name: number - 1 for name, number in regex.groupindex.items()}
    year_at, short_year_at, fraction_at = at.get("Y"), at.get("y"), at.get("f")
    month_at, day_at = at.get("m"), at.get("d")
    hour_at, minute_at, second_at = at.get("H"), at.get("M"), at.get("S")

    def parse(text: str) -> int:
        match = regex.match(text)  # match, then a length check, as strptime: not fullmatch, which backtracks further
        if match is None or match.end() != len(text):
            raise ValueError(f"time data {text!r} does not match format {time_format!r}")
        found = match.groups()
        if year_at is not None:
            year = int(found[year_at])
        else:
            year = _two_digit_year(found[short_year_at] if short_year_at is not None else None)
        month = int(found[month_at]) if month_at is not None else 1
        day = int(found[day_at]) if day_at is not None else 1
        hour = int(found[hour_at]) if hour_at is not None else 0
        minute = int(found[minute_at]) if minute_at is not None else 0
        second = int(found[second_at]) if second_at is not None else 0
        micros = int(found[fraction_at].ljust(6, "0")) if fraction_at is not None else 0
        # Range checks as strptime does them (datetime raises ValueError for a day not in the month); the date's
        # ordinal is calendar.timegm's day count without its Python-level arithmetic.
        days = datetime(year, month, day, hour, minute, second).toordinal() - _EPOCH_ORDINAL
        return (days * 86_400 + hour * 3600 + minute * 60 + second) * 1000 + micros // 1000

    if fraction_at is not None:
        # Times with fractions (BGL's microseconds) hardly ever repeat: a cache would only cost (0.3 us a line)
        return parse
    # Consecutive lines often share a timestamp (HDFS has second resolution): a small cache skips the arithmetic.
    return lru_cache(maxsize=1024)(parse)


def _fast_pattern(time_format: str) -> str | None:
    parts: list[str] = []
    seen: set[str] = set()
    index = 0
    while index < len(time_format):
        char = time_format[index]
        if char.isspace():  # strptime reads a run of whitespace in the format as \s+
            while index < len(time_format) and time_format[index].isspace():
                index += 1
            parts.append(r"\s+")
            continue
        if char != "%":
            parts.append(re.escape(char))
            index += 1
            continue
        directive = time_format[index + 1 : index + 2]
        if directive not in _FIELDS or directive in seen:
            return None  # anything else (names, zones, %%) is strptime's job
        seen.add(directive)
        parts.append(_FIELDS[directive])
        index += 2
    if "Y" in seen and "y" in seen:
        return None
    return "".join(parts)


def _two_digit_year(text: str | None) -> int:
    if text is None:
        return 1900  # strptime's default year
    year = int(text)
    return 2000 + year if year < 69 else 1900 + year  # POSIX pivot, as strptime


def _strptime_ms(text: str, time_format: str) -> int:
    parsed = datetime.strptime(text, time_format)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)  # integer arithmetic: timestamp() * 1000 rounds badly
