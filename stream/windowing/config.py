"""Window policies: frozen, validated at construction, and convertible to/from plain dicts for settings/YAML.

Errors name the setting as ``window.<field>`` so an operator can find the offending line in the YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from stream.errors import ConfigError


def _check_int(field: str, value: object, minimum: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    # bool is an int subclass; "size: true" in YAML is a typo, not a window of one.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"window.{field}", f"must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"window.{field}", f"must be >= {minimum}, got {value}")


@dataclass(frozen=True, slots=True)
class CountTumbling:
    """Every ``size`` items form a window; a partial window closes after ``idle_timeout_ms`` without arrivals."""

    size: int
    idle_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        _check_int("size", self.size, 1)
        _check_int("idle_timeout_ms", self.idle_timeout_ms, 1, optional=True)


@dataclass(frozen=True, slots=True)
class CountSliding:
    """Window i holds items [i*step, i*step+size); see CountSlidingWindower for the idle/flush tail."""

    size: int
    step: int
    idle_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        _check_int("size", self.size, 1)
        _check_int("step", self.step, 1)
        if self.step > self.size:
            # Items between one window's end and the next one's start would be in no window at all.
            raise ConfigError(
                "window.step", f"must be <= window.size ({self.size}), got {self.step}: lines would be dropped"
            )
        _check_int("idle_timeout_ms", self.idle_timeout_ms, 1, optional=True)


DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class EventTumbling:
    """Event-time buckets [k*size_ms, (k+1)*size_ms), closed by the watermark (max event_ms - grace_ms).

    A line whose event time is more than ``max_future_ms`` ahead of its arrival is refused as ``future``
    (None: never): one producer with a broken clock would otherwise move the watermark years ahead, and every later
    line of the system would be late.
    """

    size_ms: int
    grace_ms: int = 0
    idle_timeout_ms: int | None = None
    max_future_ms: int | None = DAY_MS

    def __post_init__(self) -> None:
        _check_int("size_ms", self.size_ms, 1)
        _check_int("grace_ms", self.grace_ms, 0)
        _check_int("idle_timeout_ms", self.idle_timeout_ms, 1, optional=True)
        _check_int("max_future_ms", self.max_future_ms, 0, optional=True)


@dataclass(frozen=True, slots=True)
class Session:
    """Per-key sessions split by event-time gaps, capped by lines and duration, reaped when idle.

    ``watermark_grace_ms``: a session also closes once the newest event time its windower has seen is more than
    gap_ms + watermark_grace_ms past the session's newest line (None, the default: never, and keys are independent).
    This closes sessions while a backlog is read, when no idle ticks are written, and it depends on the input alone,
    so replays close the same sessions. A snapshot written before the field existed resumes with it unset.
    """

    gap_ms: int
    max_lines: int | None = None
    max_duration_ms: int | None = None
    idle_timeout_ms: int | None = None
    watermark_grace_ms: int | None = None

    def __post_init__(self) -> None:
        _check_int("gap_ms", self.gap_ms, 0)
        _check_int("max_lines", self.max_lines, 1, optional=True)
        _check_int("max_duration_ms", self.max_duration_ms, 0, optional=True)
        _check_int("idle_timeout_ms", self.idle_timeout_ms, 1, optional=True)
        _check_int("watermark_grace_ms", self.watermark_grace_ms, 0, optional=True)


WindowPolicy = CountTumbling | CountSliding | EventTumbling | Session

_BY_KIND: dict[str, type[WindowPolicy]] = {
    "count_tumbling": CountTumbling,
    "count_sliding": CountSliding,
    "event_tumbling": EventTumbling,
    "session": Session,
}
_KIND_OF: dict[type, str] = {cls: kind for kind, cls in _BY_KIND.items()}


def policy_to_dict(config: WindowPolicy) -> dict[str, Any]:
    """Plain dict with a ``kind`` and every field (None included, so the dict round-trips exactly)."""
    kind = _KIND_OF.get(type(config))
    if kind is None:
        raise ConfigError("window", f"not a window policy: {type(config).__name__}")
    return {"kind": kind, **{f.name: getattr(config, f.name) for f in dataclasses.fields(config)}}


def policy_from_dict(d: dict[str, Any]) -> WindowPolicy:
    """Inverse of policy_to_dict; optional fields may be left out. Unknown kinds or fields raise ConfigError."""
    if not isinstance(d, dict):
        raise ConfigError("window", f"must be a mapping, got {type(d).__name__}")
    kind = d.get("kind")
    cls = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError("window.kind", f"unknown kind {kind!r}; expected one of {sorted(_BY_KIND)}")
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    unknown = sorted(str(name) for name in d if name != "kind" and name not in known)
    if unknown:
        raise ConfigError(f"window.{unknown[0]}", f"unknown field(s) {unknown} for kind {kind!r}")
    for f in fields:
        if f.default is dataclasses.MISSING and f.name not in d:
            raise ConfigError(f"window.{f.name}", f"required for kind {kind!r}")
    return cls(**{name: value for name, value in d.items() if name != "kind"})
