"""Event-time tumbling windows closed by a watermark.

Bucket k is [k*size_ms, (k+1)*size_ms). The watermark is (max event_ms seen) - grace_ms and only moves forward.
A bucket closes (reason "watermark") as soon as watermark >= its end, so a line may be up to grace_ms behind the
newest line and still land: with grace 0 a line for [0, 1000) is accepted until some line at >= 1000 arrives.

The windower keeps a single *closed frontier*: every bucket whose end <= frontier is closed, and a line for such a
bucket is returned as late (never silently dropped). The frontier is the watermark, pushed further by idle ticks
and flushes, which close every open bucket. Because it is one number, buckets close in order and are never
re-opened, and a line for an older bucket that never opened (e.g. between the watermark and an idle-closed bucket)
is late too: it cannot be placed in time order any more.

A line more than ``max_future_ms`` ahead of its arrival time is returned as future and never touches the frontier:
arrival times are broker timestamps, recorded in the log, so the decision is the same on every replay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream.errors import StateError
from stream.windowing.config import EventTumbling
from stream.windowing.model import ClosedWindow, Emitted, Item
from stream.windowing.state import check, decode_items, encode_items, make_snapshot, open_snapshot, read_int


class EventTumblingWindower:
    def __init__(self, config: EventTumbling, resume_state: dict[str, Any] | None = None) -> None:
        self.config = config
        self._buckets: dict[int, list[Item]] = {}  # bucket index -> items in arrival order
        self._frontier_ms: int | None = None  # buckets ending at or before this are closed; None: none yet
        self._last_arrival_ms: int | None = None  # newest arrival of any line, late ones included
        if resume_state is not None:
            self._resume(open_snapshot(config, resume_state))

    def push(self, item: Item, key: str = "") -> Emitted:
        size = self.config.size_ms
        index = item.event_ms // size  # floor division: negative event times still bucket correctly
        if self._last_arrival_ms is None or item.arrival_ms > self._last_arrival_ms:
            self._last_arrival_ms = item.arrival_ms
        max_future = self.config.max_future_ms
        if max_future is not None and item.event_ms - item.arrival_ms > max_future:
            return Emitted(future=[item])  # checked before it can move the frontier
        if self._frontier_ms is not None and (index + 1) * size <= self._frontier_ms:
            return Emitted(late=[item])
        self._buckets.setdefault(index, []).append(item)
        # The item cannot close its own bucket (event < end and grace >= 0), so adding first is safe.
        watermark = item.event_ms - self.config.grace_ms
        if self._frontier_ms is None or watermark > self._frontier_ms:
            self._frontier_ms = watermark
        frontier = self._frontier_ms
        return Emitted(closed=self._close(lambda index: (index + 1) * size <= frontier, "watermark"))

    def tick(self, now_ms: int) -> Emitted:
        timeout = self.config.idle_timeout_ms
        if timeout is None or not self._buckets:
            return Emitted()
        if self._last_arrival_ms is None:  # push sets it with the first bucket; a resumed snapshot is checked
            raise StateError("open buckets without a last arrival")
        if now_ms - self._last_arrival_ms < timeout:
            return Emitted()
        return Emitted(closed=self._close_all("idle"))

    def flush(self) -> Emitted:
        return Emitted(closed=self._close_all("flush"))

    def snapshot(self) -> dict[str, Any]:
        state = {
            "buckets": [[index, encode_items(items)] for index, items in self._buckets.items()],
            "frontier_ms": self._frontier_ms,
            "last_arrival_ms": self._last_arrival_ms,
        }
        return make_snapshot(self.config, state)

    def open_count(self) -> int:
        return len(self._buckets)

    def _close_all(self, reason: str) -> list[ClosedWindow]:
        if not self._buckets:
            return []
        # Advance the frontier past every open bucket so lines for them are reported late from now on.
        end = (max(self._buckets) + 1) * self.config.size_ms
        if self._frontier_ms is None or end > self._frontier_ms:
            self._frontier_ms = end
        return self._close(lambda _index: True, reason)

    def _close(self, should_close: Callable[[int], bool], reason: str) -> list[ClosedWindow]:
        size = self.config.size_ms
        closing = sorted(index for index in self._buckets if should_close(index))
        return [
            ClosedWindow(
                key="", start_ms=i * size, end_ms=(i + 1) * size, items=tuple(self._buckets.pop(i)), reason=reason
            )
            for i in closing
        ]

    def _resume(self, state: dict[str, Any]) -> None:
        raw = state.get("buckets")
        if not isinstance(raw, list):
            raise StateError("window snapshot field 'buckets' must be a list")
        for entry in raw:
            if (
                not isinstance(entry, list)
                or len(entry) != 2
                or not isinstance(entry[0], int)
                or isinstance(entry[0], bool)
            ):
                raise StateError(f"window snapshot holds a malformed bucket: {entry!r}")
            items = decode_items(entry[1], "buckets")
            check(bool(items) and entry[0] not in self._buckets, "empty or duplicate bucket")
            self._buckets[entry[0]] = items
        self._frontier_ms = read_int(state, "frontier_ms", optional=True)
        self._last_arrival_ms = read_int(state, "last_arrival_ms", optional=True)
        size = self.config.size_ms
        if self._buckets:
            check(self._last_arrival_ms is not None, "open buckets without a last arrival")
            check(
                self._frontier_ms is None or all((i + 1) * size > self._frontier_ms for i in self._buckets),
                "an open bucket is behind the closed frontier",
            )
