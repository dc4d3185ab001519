"""The fast timestamp parser agrees with datetime.strptime, on real log timestamps and on random ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.timeparse import compile_time_format

FORMATS = ["%y%m%d %H%M%S", "%Y-%m-%d-%H.%M.%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%d/%m/%Y"]


def reference(text: str, fmt: str) -> int | None:
    try:
        parsed = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        return (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)  # exact, unlike floats
    except ValueError:
        return None


def fast(text: str, fmt: str) -> int | None:
    try:
        return compile_time_format(fmt)(text)
    except ValueError:
        return None


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("081109 203518", "%y%m%d %H%M%S"),
        ("2005-06-03-15.42.50.675872", "%Y-%m-%d-%H.%M.%S.%f"),
        ("2005-02-29-15.42.50.675872", "%Y-%m-%d-%H.%M.%S.%f"),
        ("2004-02-29-00.00.00.1", "%Y-%m-%d-%H.%M.%S.%f"),
        ("691231 235959", "%y%m%d %H%M%S"),
        ("681231 235959", "%y%m%d %H%M%S"),
        ("Nov 9 12:01:01", "%b %d %H:%M:%S"),
    ],
)
def test_agrees_with_strptime_on_log_timestamps(text: str, fmt: str) -> None:
    assert fast(text, fmt) == reference(text, fmt)


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31)),
    fmt=st.sampled_from(FORMATS),
)
def test_agrees_with_strptime_on_random_times(moment: datetime, fmt: str) -> None:
    text = moment.strftime(fmt)
    assert fast(text, fmt) == reference(text, fmt)


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet="0123456789-.: T/", max_size=30), fmt=st.sampled_from(FORMATS))
def test_agrees_with_strptime_on_garbage(text: str, fmt: str) -> None:
    assert fast(text, fmt) == reference(text, fmt)
