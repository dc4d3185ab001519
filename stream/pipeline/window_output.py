"""Turn what a windower emitted into outgoing records: closed windows to ``windows``, late lines to ``deadletter``."""

from __future__ import annotations

from typing import Any

import orjson

from stream.records import Outgoing, WindowLine, encode_window
from stream.runtime.dead_letters import DeadLetters
from stream.settings import Settings
from stream.windowing import Emitted, Item

STAGE = "window"  # the stage a windowing dead letter names, whichever stage windowed the line


class WindowOutput:
    def __init__(self, settings: Settings) -> None:
        self._windows_topic = settings.topics.windows
        self.dead_letters = DeadLetters(STAGE, settings.topics.deadletter)

    def outgoing(self, system: str, policy: str, emitted: Emitted, source_order: bool = False) -> list[Outgoing]:
        """``source_order``: a window's lines in the order of their input records (topic, partition, offset, line
        index), not of their arrival here: a keyed system's lines reach a session from several parse partitions,
        interleaved however the workers ran; one input partition's order is the order one miner would give them."""
        out: list[Outgoing] = []
        for closed in emitted.closed:
            payloads = [item.payload for item in closed.items]
            if source_order:
                payloads.sort(key=source_position)
            window = encode_window(system, policy, closed.key, closed.start_ms, closed.end_ms, closed.reason, payloads)
            out.append(Outgoing(self._windows_topic, window, key=system.encode()))
        # Late and future lines are reported, never silently lost: they go to the dead letters with their window line.
        for item in emitted.late:
            reason = f"late: event time {item.event_ms} is past its window's close (beyond the grace period)"
            out.append(self._dead(system, item, reason))
        for item in emitted.future:
            reason = (
                f"future: event time {item.event_ms} is {item.event_ms - item.arrival_ms} ms ahead of its arrival at "
                f"{item.arrival_ms} (more than the window's max_future_ms)"
            )
            out.append(self._dead(system, item, reason))
        return out

    def _dead(self, system: str, item: Item, reason: str) -> Outgoing:
        line = WindowLine.from_dict(item.payload)
        return self.dead_letters.of(reason, line, orjson.dumps(item.payload), system=system, index=line.index)


def source_position(line: dict[str, Any]) -> tuple[str, int, int, int]:
    """Where a window line was read: its input record's topic, partition and offset, and its index in the record."""
    return (line["topic"], line["partition"], line["offset"], line.get("index", 0))
