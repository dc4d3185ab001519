"""The stream's own records: a decoded log line, and the envelopes of the internal topics (``lines``, ``sessions``).

An envelope's payloads are :class:`LogLine` dicts on ``lines`` (ingest -> parse) and :class:`SessionLine` dicts on
``sessions`` (parse -> session).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.records.fields import RecordError, int64_field, json_type, text_field
from stream.records.windows import WINDOW_LINE_FIELDS


# Not frozen, though never changed after construction: built several times per log line, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs 4x a plain one; unfrozen, the stream stages use 20% less CPU.
@dataclass(slots=True)
class SourceRef:
    """Where a log line entered adaptlog: the user's input topic, partition and offset, and the line's index in its
    record (0 but for records that hold several lines, as an OpenTelemetry Collector's OTLP batch does)."""

    topic: str
    partition: int
    offset: int
    index: int = 0

    def as_tuple(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


@dataclass(slots=True)  # not frozen: see SourceRef
class LogLine:
    """A decoded, validated input line, before template mining."""

    system: str
    content: str  # the message part the line format extracted (what Drain mines)
    event_ms: int
    source: SourceRef
    label: str | None = None  # ground truth carried by replay (header ``label``), never part of the content
    key_labels: dict[str, str] = field(default_factory=dict)  # per session key ground truth (HDFS block labels)
    # A keyed system's line (``mining: keyed``): the ingest stage masked it to find its Drain key, and passes both on
    # so that the parse stage does not mask it again. None for a system mined whole.
    drain_key: str | None = None
    masked: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "system": self.system,
            "content": self.content,
            "event_ms": self.event_ms,
            # the index only where there is one, so the lines of one-line records travel as they always did
            "source": [*self.source.as_tuple(), self.source.index] if self.source.index else [*self.source.as_tuple()],
            "label": self.label,
            "key_labels": self.key_labels,
        }
        if self.drain_key is not None:  # only for keyed systems: the others' lines travel as they always did
            d["drain_key"], d["masked"] = self.drain_key, self.masked
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogLine:
        topic, partition, offset, *index = d["source"]
        return cls(
            system=d["system"],
            content=d["content"],
            event_ms=int(d["event_ms"]),
            source=SourceRef(topic, int(partition), int(offset), int(index[0]) if index else 0),
            label=d.get("label"),
            key_labels=dict(d.get("key_labels") or {}),
            drain_key=d.get("drain_key"),
            masked=d.get("masked"),
        )


@dataclass(slots=True)  # not frozen: see SourceRef
class Routed:
    """One line inside an :class:`Envelope`, with where it came from and the session key it was routed by.

    ``upstream`` is the (topic, partition, offset, sub-index) of the line in the previous topic (the source position
    for the first stage; the sub-index tells apart the copies of a line naming several session keys). A stage drops
    a line at or below the high-water mark it has processed for that upstream partition, which makes an upstream
    replay after a crash harmless.
    """

    upstream: tuple[str, int, int, int]
    payload: dict[str, Any]
    key: str = ""  # the session key this line was routed by ("" when not keyed)


@dataclass(slots=True)  # not frozen: see SourceRef
class Envelope:
    """What the internal topics carry: a batch of routed lines, or a tick (no lines).

    Lines travel in batches because each Kafka record costs the Python client tens of microseconds to send and to
    fetch, more than mining a line does.
    """

    items: tuple[Routed, ...] = ()

    @property
    def is_tick(self) -> bool:
        return not self.items

    def to_dict(self) -> dict[str, Any]:
        return {"i": [[*item.upstream, item.key, item.payload] for item in self.items]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Envelope:
        return cls(
            tuple(
                Routed((topic, partition, offset, sub), payload, key)
                for topic, partition, offset, sub, key, payload in d["i"]
            )
        )


TICK = Envelope()


_SESSION_LINE_FIELDS = frozenset(WINDOW_LINE_FIELDS)


@dataclass(slots=True)  # not frozen: see SourceRef (one per line and session key)
class SessionLine:
    """A line the parse stage routes to the session stage: the payload of a ``sessions`` envelope line, whose
    :class:`Routed` key is the session key.

    ``line`` is the line's :class:`~stream.records.windows.WindowLine` in ``to_dict`` form, the form windowers hold
    lines in, so the session stage windows it as it comes; its label is the one of the session it joins (HDFS labels
    blocks, not lines).
    """

    system: str
    line: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "line": self.line}

    @classmethod
    def from_dict(cls, d: Any) -> SessionLine:
        """A ``sessions`` payload; RecordError naming the problem for anything else. Checked: the system, that the
        line has every window line field, and its event time (what the session stage orders by). The other fields'
        types are not checked again per line: only the parse stage writes this topic, and a full check would cost
        the session stage about 2 us a line."""
        if not isinstance(d, dict):
            raise RecordError(f"a session line must be a JSON object, not {json_type(d)}")
        system = text_field(d, "system", empty=False)
        line = d.get("line")
        if not isinstance(line, dict):
            raise RecordError(f"field 'line' must be an object, not {json_type(line)}")
        if not line.keys() >= _SESSION_LINE_FIELDS:
            missing = sorted(_SESSION_LINE_FIELDS - line.keys())
            raise RecordError(f"line: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        int64_field(line, "event_ms", "line: ")
        return cls(system, line)
