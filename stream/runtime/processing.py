"""Processing records one at a time under an error policy: what one record raises is handled for that record alone.

``each_record`` is the stream stages' guard (and any loop's that processes records one by one): a record whose
processing raises an error the policy dead-letters becomes a dead letter with the error, and the loop goes on;
anything else the policy decides is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from stream.records import Outgoing
from stream.runtime.dead_letters import DeadLetters, Position
from stream.runtime.policy import STAGE_RECORD, Action, ErrorPolicy

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Position)


def where(record: Position) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def each_record(
    records: Sequence[R],
    process: Callable[[R], list[Outgoing]],
    dead_letters: DeadLetters,
    policy: ErrorPolicy = STAGE_RECORD,
) -> list[Outgoing]:
    """``process`` each record and gather what it returns; a record that raises what ``policy`` dead-letters is
    dead-lettered with the error (logged with its traceback) and the rest go on."""
    out: list[Outgoing] = []
    for record in records:
        try:
            out += process(record)
        except Exception as exc:
            if policy.decide(exc) is not Action.DEAD_LETTER:
                raise
            log.exception("%s: %s failed on %s", dead_letters.stage, type(exc).__name__, where(record))
            out.append(dead_letters.of_error(exc, record))
    return out
