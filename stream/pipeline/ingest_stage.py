"""Ingest: decode input records and route each line to the ``lines`` topic keyed by its system.

Keying by system puts all lines of a system on one partition of ``lines``, so one miner sees all of them in one order:
the same line gets the same template whichever worker received it (the scale-out unit is the system).

A system with ``mining: keyed`` is keyed by system and Drain key instead (``stream.parsing.sharding``): the key is
the subtree of Drain's prefix tree the line belongs to, and Drain never compares lines of two subtrees, so each
subtree's lines still meet one miner, and the system's mining spreads over every ``lines`` partition. Finding the
key masks the line here, so the line carries its key and masked text on (the parse stage mines them as they are,
and masks nothing again). Such lines are batched per ``lines`` partition (the partition Kafka's default partitioner
gives the key), not per key: the parse stage drops a line whose input offset is not past the last it saw from that
input partition (its dedup), so one partition's lines must stay in input order. A keyed system with count or
event-time windows is merged back into source order after mining (``merge``): after each batch that held its lines,
every ``lines`` partition gets a progress mark behind them (the batch's last input offset).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from stream.decode import Decoder, RawRecord
from stream.parsing.sharding import DrainKeyer
from stream.pipeline.kafka_clients import CachedPartitioner
from stream.pipeline.stage import InputRecord, SystemStats, internal_values
from stream.records import DeadLetter, LogLine, Outgoing
from stream.records.batches import LineBatch, encodable, mark_value
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.processing import each_record
from stream.settings import Settings

STAGE = "ingest"
log = logging.getLogger(__name__)


# Where a batch's lines go: the ``lines`` record key, and the partition when the stage chooses it (keyed systems).
Route = tuple[bytes, int | None]


@dataclass(slots=True)
class _Bound:
    """The rows bound for one route from one input partition, with the records they came from (a row that does not
    encode is dead-lettered with its record)."""

    batch: LineBatch
    records: list[InputRecord]


def keyed_record_key(system: str) -> bytes:
    """The record key of a keyed system's ``lines`` records (lines and marks): the system and a separator, since a
    record holds several Drain keys and its partition is chosen by the stage."""
    return f"{system}\x1f".encode()


class IngestPartition:
    def __init__(self, settings: Settings, decoder: Decoder, lines_partitions: int = 0) -> None:
        self._decoder = decoder
        self._settings = settings
        self._lines_topic = settings.topics.lines
        self._format = settings.internal_format
        # The lines topic's partition count as the broker has it (the worker asks at start).
        self._all_lines_partitions = list(range(lines_partitions or settings.internal_partitions))
        self._partitioner = CachedPartitioner()
        self._dead_letters = DeadLetters(STAGE, settings.topics.deadletter)
        self._keyers: dict[str, DrainKeyer | None] = {}  # per system: None where it is mined whole
        self._merged: set[str] = set()  # keyed systems merged back into source order after mining

    def process_batch(self, records: Sequence[InputRecord]) -> list[Outgoing]:
        bound: dict[tuple[Route, str, int], _Bound] = {}
        # Decode never raises, and a line it accepts that fails to route is dead-lettered alone (in _process);
        # each_record is the last resort that keeps one record from crashing the stage into a restart loop.
        out = each_record(records, lambda record: self._process(record, bound), self._dead_letters)
        for ((key, partition), _topic, _partition), lines in bound.items():
            out += self._outgoing(key, partition, lines)
        if records and self._merged:
            out += self._marks(bound.values(), records[-1].offset)
        return out

    def _marks(self, bound: Iterable[_Bound], upto: int) -> list[Outgoing]:
        """A progress mark on every ``lines`` partition for each merged system this batch held lines of, behind
        them: the merge releases a line once every partition has passed a mark at or past its offset."""
        sources = {(b.batch.system, b.batch.topic, b.batch.partition) for b in bound if b.batch.system in self._merged}
        return [
            Outgoing(
                self._lines_topic,
                mark_value(LineBatch(system, topic, partition, [], upto)),
                key=keyed_record_key(system),
                partition=lines_partition,
            )
            for system, topic, partition in sorted(sources)
            for lines_partition in self._all_lines_partitions
        ]

    def _outgoing(self, key: bytes, partition: int | None, lines: _Bound) -> list[Outgoing]:
        """The route's records (``LineBatch``). A row orjson refuses (a line decode let through with an integer
        past 64 bits or a lone surrogate) is found, dead-lettered alone, and the others are sent."""
        batch, out = lines.batch, []
        try:
            values = list(internal_values(batch, self._format))
        except (TypeError, orjson.JSONEncodeError):
            kept: list[list[Any]] = []
            for row, record in zip(batch.rows, lines.records, strict=True):
                reason = encodable(row)
                if reason is None:
                    kept.append(row)
                    continue
                log.error("%s: a line of %s does not encode (%s)", STAGE, record.where, reason)
                out.append(self._dead_letters.of(reason, record, system=batch.system, index=row[1]))
            values = list(internal_values(LineBatch(batch.system, batch.topic, batch.partition, kept), self._format))
        out += [Outgoing(self._lines_topic, value, key=key, partition=partition) for value in values]
        return out

    def _route(self, line: LogLine) -> Route:
        """The system as the key (the producer partitions by it); for a keyed system, the ``lines`` partition of the
        line's Drain key, and the system and a separator as the key (a record holds several Drain keys). A keyed
        system's line is given its Drain key and masked text here."""
        system = line.system
        if system not in self._keyers:
            spec = self._settings.systems.get(system)
            self._keyers[system] = None
            if spec is not None and spec.mining == "keyed":
                self._keyers[system] = DrainKeyer(spec.drain_params(system), spec.mask_rules(system))
                if spec.merged:
                    self._merged.add(system)
        keyer = self._keyers[system]
        if keyer is None:
            return system.encode(), None
        line.drain_key, line.masked = keyer.key_of(line.content)
        routing = f"{system}\x1f{line.drain_key}".encode()
        partitions = self._all_lines_partitions
        return keyed_record_key(system), self._partitioner(routing, partitions, partitions)

    def _process(self, record: InputRecord, bound: dict[tuple[Route, str, int], _Bound]) -> list[Outgoing]:
        raw = RawRecord(
            record.topic, record.partition, record.offset, record.value, record.headers, record.timestamp_ms
        )
        out: list[Outgoing] = []
        # Never raises: bad input comes back as dead letters. A record may hold several lines (an OTLP batch).
        for decoded in self._decoder.decode_lines(raw):
            if isinstance(decoded, DeadLetter):
                out.append(self._dead_letters.outgoing(decoded))
                continue
            try:
                route = self._route(decoded)
            except Exception as exc:  # a line decode let through that masking refuses: dead-lettered alone
                log.exception("%s: %s failed on %s", STAGE, type(exc).__name__, record.where)
                reason = f"{type(exc).__name__}: {exc}"
                out.append(self._dead_letters.of(reason, record, system=decoded.system, index=decoded.source.index))
                continue
            # The line's index is the sub-index: the parse stage's dedup keeps every line of a multi-line record.
            source = decoded.source
            slot = (route, source.topic, source.partition)
            lines = bound.get(slot)
            if lines is None:
                lines = bound[slot] = _Bound(LineBatch(decoded.system, source.topic, source.partition, []), [])
            row = [source.offset, source.index, decoded.event_ms, decoded.content, decoded.label, decoded.key_labels]
            if decoded.drain_key is not None:
                row += [decoded.drain_key, decoded.masked]
            lines.batch.rows.append(row)
            lines.records.append(record)
        return out

    def wants_ticks(self) -> bool:
        return False

    def snapshot(self) -> dict[str, Any] | None:
        return None

    def system_stats(self) -> list[SystemStats]:
        return []
