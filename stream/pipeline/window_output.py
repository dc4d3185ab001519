"""Turn what a windower emitted into outgoing records: closed windows to ``windows``, late lines to ``deadletter``."""

from __future__ import annotations

import orjson

from stream.pipeline.stage import Outgoing, dead_letter
from stream.records import DeadLetter, WindowLine, encode_window
from stream.settings import Settings
from stream.windowing import Emitted


class WindowOutput:
    def __init__(self, settings: Settings) -> None:
        self._windows_topic = settings.topics.windows
        self._deadletter_topic = settings.topics.deadletter

    def outgoing(self, system: str, policy: str, emitted: Emitted) -> list[Outgoing]:
        out: list[Outgoing] = []
        for closed in emitted.closed:
            payloads = [item.payload for item in closed.items]
            window = encode_window(system, policy, closed.key, closed.start_ms, closed.end_ms, closed.reason, payloads)
            out.append(Outgoing(self._windows_topic, window, key=system.encode()))
        for item in emitted.late:
            # A late line is reported, never silently lost: it goes to the dead letters with its window line.
            line = WindowLine.from_dict(item.payload)
            letter = DeadLetter(
                stage="window",
                reason=f"late: event time {item.event_ms} is past its window's close (beyond the grace period)",
                topic=line.topic,
                partition=line.partition,
                offset=line.offset,
                original=orjson.dumps(item.payload),
                system=system,
            )
            out.append(dead_letter(self._deadletter_topic, letter))
        return out
