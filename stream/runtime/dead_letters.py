"""The one builder of dead letters: a record adaptlog cannot use, with its original bytes and why, on ``deadletter``.

Every loop (the stream stages, the decoder, the inference worker, the feedback service, the notifier) builds its dead
letters here: :func:`letter` for the record, :meth:`DeadLetters.outgoing` for the record to send, which
logs it with ``topic[partition]@offset`` and counts it; :meth:`DeadLetters.of` does both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypedDict, Unpack

from stream.reasons import reason_category
from stream.records import DeadLetter, Outgoing, encode

log = logging.getLogger(__name__)


class Position(Protocol):
    """Where a record was read: a consumed record, a decoder's RawRecord, a window line, a log line's SourceRef."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Unread:
    """A record of ``topic`` that has no position to name (the trainer's label whose window never came: the label
    was stored long ago, its offset committed)."""

    topic: str
    partition: int = -1
    offset: int = -1


class Where(TypedDict, total=False):
    """What a dead letter may say beyond the record's position: the line's system, and its index in the record."""

    system: str | None
    index: int | None


def letter(stage: str, reason: str, at: Position, original: bytes | None = None, **where: Unpack[Where]) -> DeadLetter:
    """The dead letter of the record read at ``at``: ``original`` as given, else the record's value as it came
    (``at.value``; none for a tombstone or a position without a value)."""
    if original is None:
        original = getattr(at, "value", None) or b""
    system, index = where.get("system"), where.get("index")
    return DeadLetter(stage, reason, at.topic, at.partition, at.offset, original, system, index)


class DeadLetters:
    """A loop's dead letters: ``stage`` names it in each letter, ``topic`` is where they go (``topics.deadletter``).

    ``key`` is the record key they are sent with (the inference worker has always sent ``b""``, the rest none);
    ``on_letter`` is called with each letter sent (a loop's counters and metrics)."""

    def __init__(
        self,
        stage: str,
        topic: str,
        *,
        key: bytes | None = None,
        on_letter: Callable[[DeadLetter], None] | None = None,
    ) -> None:
        self.stage = stage
        self.topic = topic
        self._key = key
        self._on_letter = on_letter

    def outgoing(self, letter: DeadLetter) -> Outgoing:
        """``letter`` on its way to ``deadletter``, logged and counted; ``dead`` carries its stage and reason
        category for the stage runner's metrics."""
        log.warning(
            "dead letter %s[%d]@%d stage=%s: %s",
            letter.topic,
            letter.partition,
            letter.offset,
            letter.stage,
            letter.reason,
        )
        if self._on_letter is not None:
            self._on_letter(letter)
        dead = (letter.stage, reason_category(letter.reason))
        return Outgoing(self.topic, encode(letter), key=self._key, dead=dead)

    def of(self, reason: str, at: Position, original: bytes | None = None, **where: Unpack[Where]) -> Outgoing:
        """The dead letter of the record at ``at``, on its way out (``letter`` then ``outgoing``)."""
        return self.outgoing(letter(self.stage, reason, at, original, **where))

    def of_error(self, exc: BaseException, at: Position, *, system: str | None = None) -> Outgoing:
        """The dead letter of a record whose processing raised ``exc``: the reason is the error's class and text."""
        return self.of(f"{type(exc).__name__}: {exc}", at, system=system)
