"""Sessions: window the lines routed by session key (see parse_stage) into session windows, one windower per system."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stream.pipeline.stage import (
    InputRecord,
    SystemStats,
    UpstreamDedup,
    guarded,
    read_envelope,
    restore_per_system,
)
from stream.pipeline.window_output import WindowOutput
from stream.records import Outgoing, SessionLine
from stream.settings import Settings
from stream.windowing import Item, Windower, build

STAGE = "session"


class SessionPartition:
    def __init__(self, settings: Settings, state: dict[str, Any] | None = None) -> None:
        self._settings = settings
        self._output = WindowOutput(settings)
        state = state or {}
        self._dedup = UpstreamDedup(state.get("upstream"))
        self._windowers: dict[str, Windower] = restore_per_system(
            state.get("windowers") or {}, settings.systems, self._windower, STAGE
        )

    def _windower(self, system: str, saved: dict[str, Any] | None = None) -> Windower:
        return build(self._settings.systems[system].window_policy, saved)

    def process_batch(self, records: Sequence[InputRecord]) -> list[Outgoing]:
        return guarded(records, self._process, STAGE, self._settings.topics.deadletter)

    def _process(self, record: InputRecord) -> list[Outgoing]:
        envelope = read_envelope(record)
        out: list[Outgoing] = []
        if envelope.is_tick:
            for system, ticked in self._windowers.items():
                out += self._output.outgoing(system, "session", ticked.tick(record.timestamp_ms))
            return out
        for item in envelope.items:
            if not self._dedup.is_new(item.upstream):
                continue
            routed = SessionLine.from_dict(item.payload)
            system, line = routed.system, routed.line
            windower = self._windowers.get(system)
            if windower is None:
                windower = self._windowers[system] = self._windower(system)
            emitted = windower.push(Item(int(line["event_ms"]), record.timestamp_ms, line), key=item.key)
            out += self._output.outgoing(system, "session", emitted)
        return out

    def wants_ticks(self) -> bool:
        return any(w.open_count() > 0 for w in self._windowers.values())

    def system_stats(self) -> list[SystemStats]:
        return [SystemStats(name, open_windows=w.open_count()) for name, w in list(self._windowers.items())]

    def snapshot(self) -> dict[str, Any]:
        return {
            "upstream": self._dedup.snapshot(),
            "windowers": {name: w.snapshot() for name, w in self._windowers.items()},
        }
