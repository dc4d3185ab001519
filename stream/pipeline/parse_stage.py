"""Parse: mine each line's template with its system's Drain miner, then window it.

Count and event-time windows are formed here, in the order of the system's partition. For session windows the line
is routed on to the ``sessions`` topic once per session key it names (a line naming two blocks joins both sessions),
keyed by that key, so every line of a session meets on one partition whichever worker parsed it.

A system with ``mining: keyed`` reaches this stage on every ``lines`` partition, each holding some of its Drain keys
(see ``ingest_stage``); each partition mines them with a ``KeyedParser``, whose template ids are global, so a line
gets the same template and id whichever partition and worker mine it. A checkpoint of the other mining (or of an
older keyed format) does not restore into it: the system starts afresh, with an error in the log. Such a system with
count or event-time windows is not windowed here: its mined lines go to its one ``sessions`` partition, followed by
the ingest stage's progress marks, where ``merge`` puts them back in source order (``SystemSettings.merged``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stream.parsing.miner import ParsedTemplate, SystemParser
from stream.parsing.sharding import KeyedParser
from stream.pipeline.kafka_clients import CachedPartitioner
from stream.pipeline.stage import (
    InputRecord,
    SystemStats,
    UpstreamDedup,
    internal_values,
    read_lines,
    restore_per_system,
)
from stream.pipeline.window_output import WindowOutput
from stream.records import Outgoing, SourceRef
from stream.records.batches import LineBatch, SessionBatch, mark_value
from stream.records.windows import window_line_dict
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.processing import each_record
from stream.settings import Settings
from stream.windowing import Item, Windower, build

STAGE = "parse"
SESSION = "session"


@dataclass
class SystemState:
    parser: SystemParser | KeyedParser
    policy: str
    windower: Windower | None  # None for session systems: they are windowed in the session stage
    key_regex: re.Pattern[str] | None
    max_keys: int
    has_idle_timeout: bool
    merged: bool  # windowed after the merge in the session stage (keyed mining with count or event-time windows)
    latest_event_ms: int | None = None  # the newest event time read (for the event-time lag metric; not saved)


class ParsePartition:
    def __init__(self, settings: Settings, state: dict[str, Any] | None = None, session_partitions: int = 0) -> None:
        self._settings = settings
        # The sessions topic's partition count as the broker has it (the worker asks at start).
        self._all_session_partitions = list(range(session_partitions or settings.internal_partitions))
        self._partitioner = CachedPartitioner()
        self._output = WindowOutput(settings)
        self._dead_letters = DeadLetters(STAGE, settings.topics.deadletter)
        state = state or {}
        self._dedup = UpstreamDedup(state.get("upstream"))
        self._systems: dict[str, SystemState] = restore_per_system(
            state.get("systems") or {}, settings.systems, self._system, STAGE
        )

    def _system(self, name: str, saved: dict[str, Any] | None = None) -> SystemState:
        spec = self._settings.systems[name]
        params, masks = spec.drain_params(name), spec.mask_rules(name)
        miner = KeyedParser if spec.mining == "keyed" else SystemParser
        parser = miner.restore(params, masks, saved["parser"]) if saved else miner(params, masks)
        policy = spec.window_policy
        kind = spec.window_kind
        merged = spec.merged
        windower = None if kind == SESSION or merged else build(policy, saved.get("windower") if saved else None)
        return SystemState(
            parser=parser,
            policy=kind,
            windower=windower,
            key_regex=re.compile(spec.session_key_pattern) if spec.session_key_pattern else None,
            max_keys=spec.max_session_keys,
            has_idle_timeout=getattr(policy, "idle_timeout_ms", None) is not None,
            merged=merged,
        )

    def process_batch(self, records: Sequence[InputRecord]) -> list[Outgoing]:
        return each_record(records, self._process, self._dead_letters)

    def _process(self, record: InputRecord) -> list[Outgoing]:
        batches = read_lines(record)
        if batches is None:
            return self._tick(record.timestamp_ms)
        out: list[Outgoing] = []
        # The copies routed by session key, per sessions partition and system (a format-1 record may hold several).
        to_sessions: dict[tuple[int, str], list[list[Any]]] = {}
        marks: list[SessionBatch] = []
        for batch in batches:
            if batch.upto is not None:
                marks += self._passed_on(batch, record)
                continue
            out += self._lines(batch, record.timestamp_ms, to_sessions)
        # One batch per sessions partition and system; ``sub`` numbers the copies in the order they are written,
        # which keeps the downstream dedup's order per upstream partition.
        sub = itertools.count()
        for (partition, system), rows in to_sessions.items():
            for row in rows:
                row[0] = next(sub)
            copies = SessionBatch(system, record.topic, record.partition, record.offset, rows)
            out += [
                Outgoing(self._settings.topics.sessions, value, partition=partition)
                for value in internal_values(copies, self._settings.internal_format)
            ]
        # behind the lines: the merge releases a line once every parse partition's mark has passed it
        out += [
            Outgoing(self._settings.topics.sessions, mark_value(mark), partition=self._session_partition(mark.system))
            for mark in marks
        ]
        return out

    def _passed_on(self, mark: LineBatch, record: InputRecord) -> list[SessionBatch]:
        """The ingest stage's progress mark of a merged system, to pass on to its merge (``merge``): every line of
        it up to the mark that this partition held has now been mined and sent. None for a system that is not
        merged (its settings changed since the mark was written)."""
        spec = self._settings.systems.get(mark.system)
        if spec is None or not spec.merged:
            return []
        upto = [mark.topic, mark.partition, mark.upto]
        return [SessionBatch(mark.system, record.topic, record.partition, record.offset, [], upto)]

    def _lines(
        self, batch: LineBatch, now_ms: int, to_sessions: dict[tuple[int, str], list[list[Any]]]
    ) -> list[Outgoing]:
        name, topic, partition = batch.system, batch.topic, batch.partition
        rows = self._dedup.new_rows(topic, partition, batch.rows, ((row[0], row[1]) for row in batch.rows))
        if not rows:
            return []
        system = self._systems.get(name)
        if system is None:
            system = self._systems[name] = self._system(name)
        parser = system.parser
        keyed = isinstance(parser, KeyedParser)
        out: list[Outgoing] = []
        latest = system.latest_event_ms
        for row in rows:
            offset, index, event_ms, content, label = row[:5]
            # a keyed system's line comes masked and keyed by the ingest stage
            parsed = parser.parse_keyed(row[6], row[7]) if keyed and len(row) > 6 else parser.parse(content)  # type: ignore[union-attr]
            if latest is None or event_ms > latest:
                latest = event_ms
            if system.merged:
                copy = [0, "", topic, partition, offset, index, event_ms, parsed.template_id, parsed.template]
                copy += [parsed.masked, label]
                to_sessions.setdefault((self._session_partition(name), name), []).append(copy)
                continue
            if system.windower is None:
                problem = self._route_to_sessions(row, parsed, system, name, topic, partition, to_sessions)
                if problem is not None:
                    letters = self._output.dead_letters  # a windowing problem: stage "window"
                    source = SourceRef(topic, partition, offset, index)
                    out.append(letters.of(problem, source, content.encode(), system=name, index=index))
                continue
            window_line = window_line_dict(
                topic, partition, offset, index, event_ms, parsed.template_id, parsed.template, parsed.masked, label
            )
            emitted = system.windower.push(Item(event_ms, now_ms, window_line))
            if emitted.closed or emitted.late or emitted.future:
                out += self._output.outgoing(name, system.policy, emitted)
        system.latest_event_ms = latest
        return out

    def _route_to_sessions(
        self,
        row: list[Any],
        parsed: ParsedTemplate,
        system: SystemState,
        name: str,
        topic: str,
        partition: int,
        to_sessions: dict[tuple[int, str], list[list[Any]]],
    ) -> str | None:
        """Adds the line's copy for each session key it names (a ``sessions`` row, its sub-index numbered when the
        record is written); the problem when it names none or too many."""
        offset, index, event_ms, content, label, key_labels = row[:6]
        keys = session_keys(system.key_regex, content) if system.key_regex else []
        if not keys:
            return "no session key in the line"
        if len(keys) > system.max_keys:
            return f"the line names {len(keys)} session keys, more than max_session_keys ({system.max_keys})"
        template_id, template, masked = parsed.template_id, parsed.template, parsed.masked
        for key in keys:
            # HDFS labels blocks, not lines: the line carries the label of the session it is routed to.
            copy = [0, key, topic, partition, offset, index, event_ms, template_id, template, masked]
            copy.append(key_labels.get(key, label) if key_labels else label)
            to_sessions.setdefault((self._session_partition(key), name), []).append(copy)
        return None

    def _session_partition(self, key: str) -> int:
        # Kafka's default partitioning of the key, so a session's lines meet on one partition of the sessions topic.
        return self._partitioner(key.encode(), self._all_session_partitions, self._all_session_partitions)

    def _tick(self, now_ms: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        for name, system in self._systems.items():
            if system.windower is not None:
                out += self._output.outgoing(name, system.policy, system.windower.tick(now_ms))
        return out

    def wants_ticks(self) -> bool:
        return any(
            s.windower is not None and s.has_idle_timeout and s.windower.open_count() > 0
            for s in self._systems.values()
        )

    def system_stats(self) -> list[SystemStats]:
        return [
            SystemStats(
                name,
                open_windows=s.windower.open_count() if s.windower is not None else 0,
                templates=s.parser.cluster_count,
                latest_event_ms=s.latest_event_ms,
            )
            for name, s in list(self._systems.items())
        ]

    def snapshot(self) -> dict[str, Any]:
        return {
            "upstream": self._dedup.snapshot(),
            "systems": {
                name: {"parser": s.parser.snapshot(), "windower": s.windower.snapshot() if s.windower else None}
                for name, s in self._systems.items()
            },
        }


def session_keys(regex: re.Pattern[str], content: str) -> list[str]:
    """The distinct keys a line names, in order: each match's one capturing group, else the whole match.

    Empty keys are dropped (settings refuse a pattern that matches only the empty string, but a group may still be
    empty on some line): an empty key would gather unrelated lines into one session.
    """
    # findall gives the one group's text, else the whole match, in one C call; a pattern of several groups (which
    # settings refuse) keeps its first group, as it always did
    keys = regex.findall(content) if regex.groups < 2 else [match.group(1) for match in regex.finditer(content)]
    if len(keys) == 1 and keys[0]:
        return keys  # most lines name one key: nothing to drop or fold (HDFS: 1.1 instead of 2.3 us a line)
    return list(dict.fromkeys(key for key in keys if key))
