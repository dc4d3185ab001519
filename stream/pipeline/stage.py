"""What a stage is, independent of Kafka: a processor per input partition that turns records into outgoing records.

A processor is deterministic: the same input records (ticks included) give the same outputs, and restoring its
``snapshot()`` and continuing gives what never stopping would have. The runner (``runner.py``) owns all I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from stream.errors import StateError
from stream.records import DeadLetter, Envelope, encode

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
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
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None = None


class PartitionProcessor(Protocol):
    def process(self, record: InputRecord) -> list[Outgoing]: ...

    def wants_ticks(self) -> bool:
        """True while open state could be closed by wall-clock progress (the runner then writes ticks)."""
        ...

    def snapshot(self) -> dict[str, Any] | None:
        """JSON-able state, or None for a stateless processor (the runner then relies on committed offsets)."""
        ...


def dead_letter(deadletter_topic: str, letter: DeadLetter) -> Outgoing:
    log.warning(
        "dead letter %s[%d]@%d stage=%s: %s", letter.topic, letter.partition, letter.offset, letter.stage, letter.reason
    )
    return Outgoing(deadletter_topic, encode(letter))


class UpstreamDedup:
    """Drops records an upstream stage produced twice (it replays from its checkpoint after a crash).

    Each upstream partition is processed in order and its outputs reach one downstream partition in order, so a
    record whose (offset, sub-index) is not above the highest seen for its upstream partition is a repeat.
    """

    def __init__(self, state: dict[str, list[int]] | None = None) -> None:
        self._high: dict[str, list[int]] = dict(state or {})
        self.duplicates = 0

    def is_new(self, upstream: tuple[str, int, int, int]) -> bool:
        topic, partition, offset, sub = upstream
        source = f"{topic}/{partition}"
        seen = self._high.get(source)
        if seen is not None and (offset, sub) <= (seen[0], seen[1]):
            self.duplicates += 1
            return False
        self._high[source] = [offset, sub]
        return True

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


def read_envelope(record: InputRecord) -> Envelope:
    """Internal topics are written only by adaptlog; a record that does not decode is a bug, so this raises."""
    if record.value is None:
        raise ValueError(f"{record.where}: empty internal record")
    return Envelope.from_dict(orjson.loads(record.value))
