"""Count windows: tumbling (every N lines) and sliding (N lines every S lines).

Both ignore event time for membership (start_ms/end_ms are just the min/max event_ms of the items) and use the
arrival domain only to release a partial window when the stream goes quiet (``idle_timeout_ms``), so a slow
source does not hold its last lines forever.
"""

from __future__ import annotations

from typing import Any

from stream.windowing.config import CountSliding, CountTumbling
from stream.windowing.model import ClosedWindow, Emitted, Item, window_from_items
from stream.windowing.state import check, decode_items, encode_items, make_snapshot, open_snapshot, read_int


def _later(last_arrival_ms: int | None, item: Item) -> int:
    # Max, not last: records from several partitions can interleave with slightly decreasing broker times, and an
    # older timestamp must not make a window look idle sooner than its newest line allows.
    return item.arrival_ms if last_arrival_ms is None else max(last_arrival_ms, item.arrival_ms)


def _is_idle(idle_timeout_ms: int | None, last_arrival_ms: int | None, now_ms: int) -> bool:
    return idle_timeout_ms is not None and last_arrival_ms is not None and now_ms - last_arrival_ms >= idle_timeout_ms


class CountTumblingWindower:
    """Items 0..N-1 form window 0, N..2N-1 window 1, ... (reason "count")."""

    def __init__(self, config: CountTumbling, resume_state: dict[str, Any] | None = None) -> None:
        self.config = config
        self._buf: list[Item] = []
        self._last_arrival_ms: int | None = None  # newest arrival in the open window; None when nothing is open
        if resume_state is not None:
            state = open_snapshot(config, resume_state)
            self._buf = decode_items(state.get("buffer"), "buffer")
            self._last_arrival_ms = read_int(state, "last_arrival_ms", optional=True)
            check(len(self._buf) < config.size, "buffer holds a full window")
            check((self._last_arrival_ms is None) == (not self._buf), "last_arrival_ms without an open window")

    def push(self, item: Item, key: str = "") -> Emitted:
        self._buf.append(item)
        self._last_arrival_ms = _later(self._last_arrival_ms, item)
        if len(self._buf) == self.config.size:
            return Emitted(closed=[self._close("count")])
        return Emitted()

    def tick(self, now_ms: int) -> Emitted:
        if self._buf and _is_idle(self.config.idle_timeout_ms, self._last_arrival_ms, now_ms):
            return Emitted(closed=[self._close("idle")])
        return Emitted()

    def flush(self) -> Emitted:
        return Emitted(closed=[self._close("flush")]) if self._buf else Emitted()

    def snapshot(self) -> dict[str, Any]:
        return make_snapshot(self.config, {"buffer": encode_items(self._buf), "last_arrival_ms": self._last_arrival_ms})

    def open_count(self) -> int:
        return 1 if self._buf else 0

    def _close(self, reason: str) -> ClosedWindow:
        window = window_from_items("", self._buf, reason)
        self._buf = []
        self._last_arrival_ms = None
        return window


class CountSlidingWindower:
    """Window i holds items [i*step, i*step+size) and is emitted when its last item arrives (reason "slide").

    The tail: when the stream goes idle (or is flushed) and some items are in no emitted window yet, the next
    window on the step grid is emitted truncated (fewer than ``size`` items, reason "idle"/"flush"). So every item
    is in at least one window and no window exceeds ``size``. Idle/flush then ends the segment: numbering restarts
    at the next item, so no window spans a quiet period (those items were already in an emitted window).
    """

    def __init__(self, config: CountSliding, resume_state: dict[str, Any] | None = None) -> None:
        self.config = config
        # Items of the next window to emit, i.e. from its grid start up to now; always < size long between calls.
        self._buf: list[Item] = []
        self._fresh = 0  # how many of _buf (the newest) are in no emitted window yet
        self._last_arrival_ms: int | None = None  # newest arrival in this segment; None between segments
        if resume_state is not None:
            state = open_snapshot(config, resume_state)
            self._buf = decode_items(state.get("buffer"), "buffer")
            self._fresh = read_int(state, "fresh")
            self._last_arrival_ms = read_int(state, "last_arrival_ms", optional=True)
            check(len(self._buf) < config.size, "buffer holds a full window")
            check(0 <= self._fresh <= len(self._buf), "fresh count outside the buffer")
            check((self._last_arrival_ms is None) == (not self._buf), "last_arrival_ms without an open window")

    def push(self, item: Item, key: str = "") -> Emitted:
        self._buf.append(item)
        self._fresh += 1
        self._last_arrival_ms = _later(self._last_arrival_ms, item)
        if len(self._buf) < self.config.size:
            return Emitted()
        window = window_from_items("", self._buf, "slide")
        # The next window starts `step` items later; what it shares with this one is already covered.
        self._buf = self._buf[self.config.step :]
        self._fresh = 0
        if not self._buf:  # step == size: nothing carried over, the segment is effectively fresh
            self._last_arrival_ms = None
        return Emitted(closed=[window])

    def tick(self, now_ms: int) -> Emitted:
        if self._buf and _is_idle(self.config.idle_timeout_ms, self._last_arrival_ms, now_ms):
            return self._end_segment("idle")
        return Emitted()

    def flush(self) -> Emitted:
        return self._end_segment("flush")

    def snapshot(self) -> dict[str, Any]:
        state = {"buffer": encode_items(self._buf), "fresh": self._fresh, "last_arrival_ms": self._last_arrival_ms}
        return make_snapshot(self.config, state)

    def open_count(self) -> int:
        return 1 if self._buf else 0

    def _end_segment(self, reason: str) -> Emitted:
        closed = [window_from_items("", self._buf, reason)] if self._fresh else []
        self._buf = []
        self._fresh = 0
        self._last_arrival_ms = None
        return Emitted(closed=closed)
