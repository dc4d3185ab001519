"""Sessions: window the lines routed by session key (see parse_stage) into session windows, one windower per system.

A keyed system with count or event-time windows (``SystemSettings.merged``) is windowed here too: its mined lines
come from every parse partition to one partition of ``sessions``, where ``merge.SourceOrderMerge`` puts them back in
source order before its windower sees them.

Checkpointed incrementally (``checkpoint.py``): each open session is an entry of the partition's changelog, under the
id ``["system", "session key"]``; the head holds the upstream dedup positions, each windower's meta record and each
merged system's merge and windower.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from stream.errors import StateError
from stream.pipeline.changelog import Checkpoint, StateChanges
from stream.pipeline.merge import MergedSystem
from stream.pipeline.stage import (
    InputRecord,
    SystemStats,
    UpstreamDedup,
    read_sessions,
    restore_per_system,
)
from stream.pipeline.window_output import WindowOutput
from stream.records import Outgoing
from stream.records.batches import SessionBatch, session_window_line
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.processing import each_record
from stream.settings import Settings
from stream.windowing import Emitted, Item, Session, SessionWindower

STAGE = "session"
log = logging.getLogger(__name__)


def entry_id(system: str, key: str) -> str:
    return orjson.dumps([system, key]).decode()


def _system_and_key(entry: str) -> tuple[str, str]:
    try:
        system, key = orjson.loads(entry)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise StateError(f"checkpoint entry id {entry!r} is not [system, key]") from exc
    if not isinstance(system, str) or not isinstance(key, str):
        raise StateError(f"checkpoint entry id {entry!r} is not [system, key]")
    return system, key


class SessionPartition:
    def __init__(
        self, settings: Settings, checkpoint: Checkpoint | dict[str, Any] | None = None, lines_partitions: int = 0
    ) -> None:
        """A partition's processor, from its checkpoint: a changelog's, or a whole ``snapshot()``.
        ``lines_partitions``: the ``lines`` topic's partition count as the broker has it (the parse partitions whose
        marks a merge waits for; the worker asks at start)."""
        self._settings = settings
        self._lines_partitions = lines_partitions or settings.internal_partitions
        self._output = WindowOutput(settings)
        self._dead_letters = DeadLetters(STAGE, settings.topics.deadletter)
        if isinstance(checkpoint, Checkpoint):
            state, entries = checkpoint.state, checkpoint.entries
        else:
            state, entries = checkpoint or {}, None
        self._dedup = UpstreamDedup(state.get("upstream"))
        self._gone: set[str] = set()  # entries the changelog holds that this partition dropped: deleted next time
        if entries is None:  # a whole snapshot (format-1 checkpoints): the first changes() give every session
            self._windowers = restore_per_system(state.get("windowers") or {}, settings.systems, self._windower, STAGE)
        else:
            self._windowers = self._from_changelog(state.get("windowers") or {}, entries)
        self._merged = restore_per_system(state.get("merged") or {}, settings.systems, self._merged_system, STAGE)
        self._merged_systems: dict[str, bool] = {}  # per system read: whether its lines are merged

    def _from_changelog(self, metas: dict[str, Any], entries: dict[str, Any]) -> dict[str, SessionWindower]:
        sessions: dict[str, dict[str, Any]] = {}
        for entry in entries:
            try:
                system, key = _system_and_key(entry)
            except StateError as exc:
                log.error("%s: dropping a checkpoint entry: %s", STAGE, exc)
                self._gone.add(entry)
                continue
            sessions.setdefault(system, {})[key] = entries[entry]

        def restore(system: str, meta: Any) -> SessionWindower:
            return SessionWindower.from_changes(self._policy(system), meta, sessions.get(system, {}))

        windowers = restore_per_system(metas, self._settings.systems, restore, STAGE)
        for system, keyed in sessions.items():
            if system not in windowers:  # dropped above (settings changed) or without a meta record
                if system not in metas:
                    log.error("%s: dropping %d checkpointed sessions of %r: no window meta", STAGE, len(keyed), system)
                self._gone.update(entry_id(system, key) for key in keyed)
        return windowers

    def _policy(self, system: str) -> Session:
        policy = self._settings.systems[system].window_policy
        if not isinstance(policy, Session):
            # settings changed between the parse stage routing the line and this stage reading it
            raise StateError(f"system {system!r} is windowed by {type(policy).__name__}, not by sessions")
        return policy

    def _windower(self, system: str, saved: dict[str, Any] | None = None) -> SessionWindower:
        return SessionWindower(self._policy(system), saved)

    def _merged_system(self, system: str, saved: dict[str, Any] | None = None) -> MergedSystem:
        spec = self._settings.systems[system]
        if not spec.merged:
            raise StateError(f"system {system!r} is no longer mined by key with {spec.window_kind} windows")
        return MergedSystem.create(spec.window_kind, spec.window_policy, self._lines_partitions, saved)

    def process_batch(self, records: Sequence[InputRecord]) -> list[Outgoing]:
        return each_record(records, self._process, self._dead_letters)

    def _process(self, record: InputRecord) -> list[Outgoing]:
        batches = read_sessions(record)
        out: list[Outgoing] = []
        if batches is None:
            for system, ticked in self._windowers.items():
                out += self._emit(system, ticked.tick(record.timestamp_ms))
            for system, merged in self._merged.items():
                out += self._output.outgoing(system, merged.kind, merged.windower.tick(record.timestamp_ms))
            return out
        now_ms = record.timestamp_ms
        for batch in batches:
            if self._is_merged(batch.system):
                out += self._merge(batch, now_ms)
                continue
            rows = self._new_rows(batch)
            if not rows:
                continue
            system = batch.system
            windower = self._windowers.get(system)
            if windower is None:
                windower = self._windowers[system] = self._windower(system)
            for row in rows:
                emitted = windower.push(Item(row[6], now_ms, session_window_line(row)), key=row[1])
                if emitted.closed or emitted.late or emitted.future:
                    out += self._emit(system, emitted)
        return out

    def _new_rows(self, batch: SessionBatch) -> list[list[Any]]:
        """The batch's rows not seen before from its upstream partition (by upstream offset and copy number)."""
        offset = batch.offset
        return self._dedup.new_rows(batch.topic, batch.partition, batch.rows, ((offset, row[0]) for row in batch.rows))

    def _is_merged(self, system: str) -> bool:
        merged = self._merged_systems.get(system)
        if merged is None:  # asked once a system: ``merged`` parses the window policy
            spec = self._settings.systems.get(system)
            merged = self._merged_systems[system] = spec is not None and spec.merged
        return merged

    def _merge(self, batch: SessionBatch, now_ms: int) -> list[Outgoing]:
        """A merged system's lines wait in its merge; a mark releases those every parse partition has passed, and
        they are windowed in source order."""
        system = batch.system
        merged = self._merged.get(system)
        if merged is None:
            merged = self._merged[system] = self._merged_system(system)
        if batch.upto is None:
            merged.merge.add(self._new_rows(batch))
            return []
        topic, partition, upto = batch.upto
        out: list[Outgoing] = []
        for row in merged.merge.mark(batch.partition, topic, partition, upto):
            emitted = merged.windower.push(Item(row[6], now_ms, session_window_line(row)))
            if emitted.closed or emitted.late or emitted.future:
                out += self._output.outgoing(system, merged.kind, emitted)
        return out

    def _emit(self, system: str, emitted: Emitted) -> list[Outgoing]:
        keyed = self._settings.systems[system].mining == "keyed"  # its sessions' lines came from several partitions
        return self._output.outgoing(system, "session", emitted, source_order=keyed)

    def wants_ticks(self) -> bool:
        return any(w.open_count() > 0 for w in self._windowers.values()) or any(
            m.has_idle_timeout and m.windower.open_count() > 0 for m in self._merged.values()
        )

    def system_stats(self) -> list[SystemStats]:
        return [SystemStats(name, open_windows=w.open_count()) for name, w in list(self._windowers.items())] + [
            SystemStats(name, open_windows=m.windower.open_count(), held_lines=m.merge.waiting_count())
            for name, m in list(self._merged.items())
        ]

    def state_changes(self) -> StateChanges:
        metas: dict[str, Any] = {}
        entries: dict[str, Any] = dict.fromkeys(self._gone)
        self._gone = set()
        for system, windower in self._windowers.items():
            metas[system], changed = windower.changes()
            for key, session in changed.items():
                entries[entry_id(system, key)] = session
        head = {"upstream": self._dedup.snapshot(), "windowers": metas, **self._merged_head()}
        return StateChanges(head=head, entries=entries)

    def snapshot(self) -> dict[str, Any]:
        """The whole state (tests, the benchmark's baseline); checkpoints write ``state_changes()``."""
        return {
            "upstream": self._dedup.snapshot(),
            "windowers": {name: w.snapshot() for name, w in self._windowers.items()},
            **self._merged_head(),
        }

    def _merged_head(self) -> dict[str, Any]:
        # written whole each checkpoint: a merge holds only the lines between its slowest and fastest parse partition
        return {"merged": {name: m.snapshot() for name, m in self._merged.items()}} if self._merged else {}
