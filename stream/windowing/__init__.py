"""Windowing: group parsed log lines into count, event-time or per-key session windows.

Pure logic (no Kafka, no I/O, no clock reads), modelled on bytewax's windowing: a frozen policy dataclass validated
at construction, ``build(policy, resume_state)`` to get a windower, and ``snapshot()`` to persist its open state.

    windower = build(Session(gap_ms=30_000, max_lines=500, idle_timeout_ms=60_000))
    out = windower.push(Item(event_ms=..., arrival_ms=..., payload=line), key=block_id)
    ... out.closed -> model, out.late -> dead letters; windower.tick(broker_now_ms) periodically.
"""

from __future__ import annotations

from typing import Any

from stream.errors import ConfigError
from stream.windowing.config import (
    CountSliding,
    CountTumbling,
    EventTumbling,
    Session,
    WindowPolicy,
    policy_from_dict,
    policy_to_dict,
)
from stream.windowing.count import CountSlidingWindower, CountTumblingWindower
from stream.windowing.event_time import EventTumblingWindower
from stream.windowing.model import ClosedWindow, Emitted, Item, Windower
from stream.windowing.session import SessionWindower
from stream.windowing.state import SNAPSHOT_VERSION

__all__ = [
    "SNAPSHOT_VERSION",
    "ClosedWindow",
    "CountSliding",
    "CountSlidingWindower",
    "CountTumbling",
    "CountTumblingWindower",
    "Emitted",
    "EventTumbling",
    "EventTumblingWindower",
    "Item",
    "Session",
    "SessionWindower",
    "WindowPolicy",
    "Windower",
    "build",
    "policy_from_dict",
    "policy_to_dict",
]


def build(config: WindowPolicy, resume_state: dict[str, Any] | None = None) -> Windower:
    """A windower for ``config``; ``resume_state`` is an earlier ``snapshot()`` (StateError if it does not fit)."""
    match config:
        case CountTumbling():
            return CountTumblingWindower(config, resume_state)
        case CountSliding():
            return CountSlidingWindower(config, resume_state)
        case EventTumbling():
            return EventTumblingWindower(config, resume_state)
        case Session():
            return SessionWindower(config, resume_state)
    raise ConfigError("window", f"not a window policy: {type(config).__name__}")
