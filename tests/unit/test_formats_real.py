"""The ready line formats on real logs: every line decodes to what the format's regex and plain strptime / Decimal
give (the reference the faster time paths must keep), and malformed lines give the dead letters they always gave."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.streaming import DATA
from stream.decode import Decoder, RawRecord
from stream.errors import DecodeError
from stream.formats import EPOCH_S, MAX_EPOCH_MS, READY_FORMATS, LineFormat, parse_time
from stream.records import DeadLetter
from stream.replay import open_text
from stream.settings import load_settings

SAMPLES = Path(__file__).resolve().parents[2] / "stream" / "samples"
REAL = [
    ("hdfs", SAMPLES / "HDFS_5k.log.gz"),
    ("hdfs", SAMPLES / "HDFS_source_2500.log.gz"),
    ("hdfs", DATA / "hdfs" / "HDFS_2pct_blocks.log.gz"),
    ("hdfs", DATA / "parsing" / "HDFS" / "HDFS_2k.log"),
    ("bgl", SAMPLES / "BGL_6.8k.log.gz"),
    ("bgl", SAMPLES / "BGL_2k.log.gz"),
    ("bgl", DATA / "bgl" / "BGL_raw_labeled_6.8k.log"),
    ("bgl", DATA / "parsing" / "BGL" / "BGL_2k.log"),
    ("thunderbird", DATA / "thunderbird" / "Thunderbird_19k.log.gz"),
    ("thunderbird", DATA / "thunderbird" / "Thunderbird_2k.log"),
    ("thunderbird", DATA / "parsing" / "Thunderbird" / "Thunderbird_2k.log"),
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def reference_time(text: str, time_format: str) -> int:
    """The timestamp as the standard library reads it: Decimal for epoch seconds, else strptime (UTC)."""
    if time_format == EPOCH_S:
        return int((Decimal(text) * 1000).to_integral_value(rounding=ROUND_FLOOR))
    parsed = datetime.strptime(text, time_format).replace(tzinfo=UTC)
    return (parsed - EPOCH) // timedelta(milliseconds=1)


def reference_split(fmt: LineFormat, line: str) -> tuple[str, int]:
    match = re.compile(fmt.pattern, re.DOTALL).match(line)
    assert match is not None and fmt.time_format is not None
    return match.group("content"), reference_time(match.group("timestamp"), fmt.time_format)


@pytest.mark.parametrize(("system", "path"), REAL, ids=[f"{system}-{path.name}" for system, path in REAL])
def test_every_real_line_splits_as_the_regex_and_strptime_do(system: str, path: Path) -> None:
    fmt = READY_FORMATS[system]
    lines = 0
    for line in open_text(path):
        if fmt.label_column:  # replay strips Loghub's label column before the line is decoded
            line = line.partition(" ")[2]
        assert fmt.split(line) == reference_split(fmt, line), line
        lines += 1
    assert lines >= 2000


# Each reason as the decoder gave it before its time paths were sped up (checked against that code).
MALFORMED = [
    ("hdfs", "081109 203518 143 INFO dfs.DataNode$PacketResponder no colon", "line does not match format 'hdfs'"),
    ("hdfs", "081109 203518 143 INFO dfs.DataNode:no space after the colon", "line does not match format 'hdfs'"),
    ("hdfs", "081109 2035 143 INFO dfs.DataNode: short time", "line does not match format 'hdfs'"),
    ("hdfs", "081109 203518 14x INFO dfs.DataNode: pid with a letter", "line does not match format 'hdfs'"),
    ("hdfs", "081399 203518 143 INFO dfs.DataNode: m", "timestamp '081399 203518' does not parse as '%y%m%d %H%M%S'"),
    ("hdfs", "081131 203518 143 INFO dfs.DataNode: d", "timestamp '081131 203518' does not parse as '%y%m%d %H%M%S'"),
    ("hdfs", "081109 203561 143 INFO dfs.DataNode: s", "timestamp '081109 203561' does not parse as '%y%m%d %H%M%S'"),
    (
        "bgl",
        "1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-02-30-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO x",
        "timestamp '2005-02-30-15.42.50.675872' does not parse as '%Y-%m-%d-%H.%M.%S.%f'",
    ),
    (
        "bgl",
        "1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03 15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO x",
        "line does not match format 'bgl'",
    ),
    (
        "bgl",
        "1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS",
        "line does not match format 'bgl'",
    ),
    ("thunderbird", "1131566461 2005.11.09 dn228 Nov 9 12:01:01", "line does not match format 'thunderbird'"),
    (
        "thunderbird",
        "x1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond[2916]: x",
        "line does not match format 'thunderbird'",
    ),
    (
        "thunderbird",
        "99999999999999 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond[2916]: x",
        "timestamp '99999999999999' is out of range for epoch milliseconds",
    ),
]


@pytest.mark.parametrize(("system", "line", "reason"), MALFORMED)
def test_malformed_lines_are_dead_letters_with_the_reason_they_always_had(system: str, line: str, reason: str) -> None:
    letter = Decoder(load_settings()).decode(RawRecord("logs", 2, 7, line.encode(), [("system", system.encode())]))
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.reason, letter.offset, letter.original) == ("decode", reason, 7, line.encode())


def reference_epoch_s(text: str) -> int | str:
    """The Decimal path alone, its refusals as their reason text."""
    try:
        seconds = Decimal(text)
    except ArithmeticError:
        return f"timestamp {text[:64]!r} does not parse as 'epoch_s'"
    if not seconds.is_finite():
        return f"timestamp {text[:64]!r} does not parse as 'epoch_s'"
    if seconds.copy_abs() > Decimal(MAX_EPOCH_MS).scaleb(-3):
        return f"timestamp {text!r:.40} is out of range for epoch milliseconds"
    return int((seconds * 1000).to_integral_value(rounding=ROUND_FLOOR))


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=24),
        st.integers(min_value=0, max_value=10**17).map(str),
        st.integers(min_value=9_007_199_254_730, max_value=9_007_199_254_750).map(str),
        st.text(alphabet="0123456789.-+e٣", min_size=1, max_size=20),
    )
)
def test_whole_epoch_seconds_read_as_decimal_reads_them(text: str) -> None:
    try:
        got: int | str = parse_time(text, EPOCH_S)
    except DecodeError as exc:
        got = exc.reason
    assert got == reference_epoch_s(text)
