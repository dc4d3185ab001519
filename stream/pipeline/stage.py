"""What a stage is, independent of Kafka: a processor per input partition that turns records into outgoing records.

A processor is deterministic: the same input records (ticks included) give the same outputs, and restoring its
``snapshot()`` and continuing gives what never stopping would have. The runner (``runner.py``) owns all I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import orjson

from stream.errors import StateError
from stream.pipeline.changelog import StateChanges
from stream.records import Envelope, Outgoing, RecordError, Routed, json_type
from stream.records.batches import (
    FORMAT,
    LineBatch,
    SessionBatch,
    batch_values,
    format_1_items,
    is_batch,
    line_batches_of,
    session_batches_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
B = TypeVar("B", LineBatch, SessionBatch)


# Not frozen, though never changed after construction: built several times per log line, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs 4x a plain one; unfrozen, the stream stages use 20% less CPU.
@dataclass(slots=True)
class InputRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Sequence[tuple[str, bytes]] = ()

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class SystemStats:
    """What one partition's processor holds for one system, for the metrics (summed over partitions there)."""

    system: str
    open_windows: int = 0
    templates: int = 0  # clusters the system's miner holds (the parse stage)
    latest_event_ms: int | None = None  # the newest event time this partition has read (the parse stage)
    held_lines: int | None = None  # lines a keyed system's merge holds for its slowest parse partition (sessions)


class PartitionProcessor(Protocol):
    def process_batch(self, records: Sequence[InputRecord]) -> list[Outgoing]:
        """The outputs of consecutive records of one partition. Never raises for one bad record (see
        ``stream.runtime.processing.each_record``)."""
        ...

    def wants_ticks(self) -> bool:
        """True while open state could be closed by wall-clock progress (the runner then writes ticks)."""
        ...

    def snapshot(self) -> dict[str, Any] | None:
        """JSON-able state, or None for a stateless processor (the runner then relies on committed offsets)."""
        ...

    def system_stats(self) -> list[SystemStats]:
        """Per-system gauges; called from the metrics thread, so it only reads."""
        ...


@runtime_checkable
class IncrementalProcessor(Protocol):
    """A processor whose state is a small head and many entries (open sessions), checkpointed incrementally."""

    def state_changes(self) -> StateChanges:
        """The head whole and the entries changed since the last call (each call starts the next set)."""
        ...


def state_changes(processor: PartitionProcessor) -> StateChanges | None:
    """What a checkpoint of ``processor`` writes: its changes, or a whole-state processor's snapshot as the head
    (None for a stateless one)."""
    if isinstance(processor, IncrementalProcessor):
        return processor.state_changes()
    state = processor.snapshot()
    return None if state is None else StateChanges(head=state)


class UpstreamDedup:
    """Drops records an upstream stage produced twice (it replays from its checkpoint after a crash).

    Each upstream partition is processed in order and its outputs reach one downstream partition in order, so a
    record whose (offset, sub-index) is not above the highest seen for its upstream partition is a repeat.
    """

    def __init__(self, state: dict[str, list[int]] | None = None) -> None:
        self._high: dict[str, list[int]] = dict(state or {})
        self.duplicates = 0

    def new_rows(self, topic: str, partition: int, rows: list[T], positions: Iterable[tuple[int, int]]) -> list[T]:
        """The rows of one upstream partition that are not repeats, in order (``positions``: each row's offset and
        sub-index). The partition is looked up once a batch, not once a line."""
        source = f"{topic}/{partition}"
        seen = self._high.get(source)
        high = None if seen is None else (seen[0], seen[1])
        kept: list[T] = []
        for row, at in zip(rows, positions, strict=True):
            if high is not None and at <= high:
                self.duplicates += 1
                continue
            high = at
            kept.append(row)
        if high is not None:
            self._high[source] = [high[0], high[1]]
        return kept

    def snapshot(self) -> dict[str, list[int]]:
        return dict(self._high)


def restore_per_system(
    saved: dict[str, Any], configured: Collection[str], restore: Callable[[str, Any], T], stage: str
) -> dict[str, T]:
    """Restore each system's saved state; a system whose settings changed (or that is gone) starts afresh.

    A checkpoint that no longer fits the settings is an operator's change, not a bug: crashing would loop forever
    on every restart. The system's state is dropped with an error in the log (its template ids and open windows
    start over), and every other system keeps its state.
    """
    restored: dict[str, T] = {}
    for system, state in saved.items():
        if system not in configured:
            log.error("%s: dropping the saved state of system %r: it is no longer configured", stage, system)
            continue
        try:
            restored[system] = restore(system, state)
        except StateError as exc:
            log.error(
                "%s: the saved state of system %r does not fit its settings (%s); starting it afresh",
                stage,
                system,
                exc,
            )
    return restored


# Internal records carry up to this many lines, and about this many bytes: enough to spread the Kafka client's
# per-record cost, far below the broker's default 1 MiB record limit (one line may be 64 KiB of text, more once
# JSON-escaped). The bytes counted are the encoded ones: a line of control characters or masked numbers encodes to
# several times its text, and counting its text let one envelope pass 1 MiB.
BATCH_LINES = 200
BATCH_BYTES = 256 * 1024
_ENVELOPE_OPEN, _ENVELOPE_SEPARATOR, _ENVELOPE_CLOSE = b'{"i":[', b",", b"]}"


def encode_routed(item: Routed) -> bytes:
    """One line of an envelope as JSON, exactly as ``encode(Envelope(...))`` writes it there.

    Raises what orjson raises (an integer past 64 bits, a lone surrogate): callers encode each line inside
    ``each_record``, so such a line is dead-lettered alone instead of failing the batch it would have joined.
    """
    return orjson.dumps([*item.upstream, item.key, item.payload])


def envelope_values(encoded: Iterable[bytes]) -> Iterator[bytes]:
    """Join encoded lines, in order, into envelope records of at most BATCH_LINES lines and BATCH_BYTES bytes
    (a single larger line travels alone). Each record decodes as an :class:`Envelope` (``Envelope.to_dict``'s form,
    which orjson writes without whitespace)."""
    batch: list[bytes] = []
    size = 0
    for item in encoded:
        if batch and (len(batch) >= BATCH_LINES or size + len(item) > BATCH_BYTES):
            yield _ENVELOPE_OPEN + _ENVELOPE_SEPARATOR.join(batch) + _ENVELOPE_CLOSE
            batch, size = [], 0
        batch.append(item)
        size += len(item) + 1
    if batch:
        yield _ENVELOPE_OPEN + _ENVELOPE_SEPARATOR.join(batch) + _ENVELOPE_CLOSE


def internal_values(batch: LineBatch | SessionBatch, internal_format: int) -> Iterator[bytes]:
    """The records that carry ``batch`` in the internal format the settings name (``Settings.internal_format``).

    Raises what orjson raises (see ``batch_values``)."""
    if internal_format == FORMAT:
        return batch_values(batch.header(), batch.rows, BATCH_LINES, BATCH_BYTES)
    return envelope_values(encode_routed(item) for item in format_1_items(batch))


def read_envelope(record: InputRecord) -> Envelope:
    """Internal topics are written only by adaptlog; a record that does not decode is a bug, so this raises."""
    return Envelope.from_dict(_internal(record))


def read_lines(record: InputRecord) -> list[LineBatch] | None:
    """A ``lines`` record's batches, None for a tick; a format-1 record (written before an upgrade) as batches."""
    return _read_batches(record, LineBatch.from_dict, line_batches_of)


def read_sessions(record: InputRecord) -> list[SessionBatch] | None:
    """A ``sessions`` record's batches, None for a tick; a format-1 record (written before an upgrade) as batches."""
    return _read_batches(record, SessionBatch.from_dict, session_batches_of)


def _read_batches(
    record: InputRecord, batch: Callable[[dict[str, Any]], B], format_1: Callable[[Envelope], list[B]]
) -> list[B] | None:
    d = _internal(record)
    if is_batch(d):
        return [batch(d)]
    envelope = Envelope.from_dict(d)
    return None if envelope.is_tick else format_1(envelope)


def _internal(record: InputRecord) -> dict[str, Any]:
    if record.value is None:
        raise ValueError(f"{record.where}: empty internal record")
    d = orjson.loads(record.value)
    if not isinstance(d, dict):
        raise RecordError(f"an internal record must be a JSON object, not {json_type(d)}")
    return d
