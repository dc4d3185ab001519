"""Wire records and their orjson encoding.

Every record that crosses a Kafka topic is defined here, as a frozen dataclass with ``to_dict``/``from_dict``; the
topics carry UTF-8 JSON objects. Internal topics (``lines``, ``sessions``) carry an :class:`Envelope` so that the
stages can tell a log line from a tick (the wall-clock progress marker a stage writes into its own input, which keeps
idle-timeout closing deterministic on replay).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from stream.errors import DecodeError

ANOMALOUS = "anomalous"
NORMAL = "normal"
# SQLite integers (the trainer's label store) and Kafka's int64 fields: a larger number is not a time or an offset
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class RecordError(DecodeError, ValueError):
    """A wire record whose fields are missing, of the wrong JSON type or out of range; ``reason`` names the field.

    A DecodeError, so it is dead-lettered like any record that does not decode, and a ValueError, so callers that
    catch ValueError around ``from_dict`` (the inference worker) keep dead-lettering it too."""

    def __init__(self, reason: str) -> None:
        super().__init__("record", reason)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "content": self.content,
            "event_ms": self.event_ms,
            # the index only where there is one, so the lines of one-line records travel as they always did
            "source": [*self.source.as_tuple(), self.source.index] if self.source.index else [*self.source.as_tuple()],
            "label": self.label,
            "key_labels": self.key_labels,
        }

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
        )


@dataclass(slots=True)  # not frozen: see SourceRef
class WindowLine:
    """One line inside a closed window: enough to evaluate and explain downstream without the raw log.

    ``index`` is the line's index within its input record (see :class:`SourceRef`); it is written only when not 0,
    so windows of one-line records are byte for byte what they were before records could hold several lines.
    """

    topic: str
    partition: int
    offset: int
    event_ms: int
    template_id: int
    template: str
    masked: str
    label: str | None = None
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies every field and was half the per-line cost of a stage.
        d = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event_ms": self.event_ms,
            "template_id": self.template_id,
            "template": self.template,
            "masked": self.masked,
            "label": self.label,
        }
        if self.index:
            d["index"] = self.index
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowLine:
        return cls(**d)


WINDOW_LINE_FIELDS = tuple(f.name for f in fields(WindowLine) if f.name != "index")  # index: only when not 0


@dataclass(frozen=True, slots=True)
class Window:
    """A closed window, as published on the ``windows`` topic (key: system)."""

    window_id: str
    system: str
    policy: str  # count_tumbling | count_sliding | event_tumbling | session
    key: str  # session key (e.g. an HDFS block id); "" for count and time windows
    start_ms: int
    end_ms: int
    reason: str  # why it closed (count, slide, watermark, gap, max_lines, max_duration, idle, flush)
    lines: tuple[WindowLine, ...]

    @property
    def label(self) -> str | None:
        """Anomalous if any line carried an anomalous label, normal if all carried labels, else unknown."""
        return window_label([line.label for line in self.lines])

    def to_dict(self) -> dict[str, Any]:
        lines = [line.to_dict() for line in self.lines]
        return window_record(
            self.window_id, self.system, self.policy, self.key, self.start_ms, self.end_ms, self.reason, lines
        )

    @classmethod
    def from_dict(cls, d: Any) -> Window:
        """A decoded ``windows`` record, every field checked (type, range): a record from outside the stream, or
        from a stream of another version, raises :class:`RecordError` naming the field, never a TypeError later in
        a consumer (a dict where SQLite wants text, an int SQLite cannot hold). The record's ``label`` is derived
        from its lines and not read; unknown fields are ignored."""
        if not isinstance(d, dict):
            raise RecordError(f"a window record must be a JSON object, not {json_type(d)}")
        lines = _field(d, "lines")
        if not isinstance(lines, list):
            raise RecordError(f"field 'lines' must be an array, not {json_type(lines)}")
        return cls(
            window_id=_text(d, "window_id", empty=False),
            system=_text(d, "system", empty=False),
            policy=_text(d, "policy"),
            key=_text(d, "key"),
            start_ms=_int64(d, "start_ms"),
            end_ms=_int64(d, "end_ms"),
            reason=_text(d, "reason"),
            lines=tuple(_window_line(line, index) for index, line in enumerate(lines)),
        )


def _window_line(d: Any, index: int) -> WindowLine:
    where = f"lines[{index}]: "
    if not isinstance(d, dict):
        raise RecordError(f"{where}a window line must be a JSON object, not {json_type(d)}")
    label = d.get("label")
    if label is not None and not isinstance(label, str):
        raise RecordError(f"{where}field 'label' must be a string or null, not {json_type(label)}")
    return WindowLine(
        topic=_text(d, "topic", where),
        partition=_int64(d, "partition", where),
        offset=_int64(d, "offset", where),
        event_ms=_int64(d, "event_ms", where),
        template_id=_int64(d, "template_id", where),
        template=_text(d, "template", where),
        masked=_text(d, "masked", where),
        label=label,
        index=_int64(d, "index", where) if "index" in d else 0,
    )


def _field(d: dict[str, Any], name: str, where: str = "") -> Any:
    if name not in d:
        raise RecordError(f"{where}missing field {name!r}")
    return d[name]


def _text(d: dict[str, Any], name: str, where: str = "", *, empty: bool = True) -> str:
    value = _field(d, name, where)
    if not isinstance(value, str):
        raise RecordError(f"{where}field {name!r} must be a string, not {json_type(value)}")
    if not empty and not value:
        raise RecordError(f"{where}field {name!r} is empty")
    return value


def _int64(d: dict[str, Any], name: str, where: str = "") -> int:
    value = _field(d, name, where)
    if isinstance(value, float):  # JSON has one number type: say which number (5.5, or 2**64 read as a float)
        raise RecordError(f"{where}field {name!r} must be an integer, not {value!r}")
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int in Python, never one in a record
        raise RecordError(f"{where}field {name!r} must be an integer, not {json_type(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise RecordError(f"{where}field {name!r} is out of the 64-bit integer range: {value}")
    return value


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons a sender can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


@dataclass(frozen=True, slots=True)
class Cause:
    """One template that drove a verdict: its text, its weight (how much the score falls without its lines) and
    where its lines sit in the window (0-based line offsets)."""

    template: str
    weight: float
    offsets: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template, "weight": round(self.weight, 6), "offsets": list(self.offsets)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cause:
        return cls(d["template"], float(d["weight"]), tuple(int(o) for o in d["offsets"]))


# What the model behind a verdict learned from the target (``Verdict.supervision``): nothing (the base alone), the
# target's unlabeled or normal windows but no labeled anomaly, or labeled anomalies.
ZERO_SHOT = "zero-shot"
ZERO_LABEL = "zero-label"
LABELED = "labeled"
SUPERVISIONS = (ZERO_SHOT, ZERO_LABEL, LABELED)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What inference says about one window; published on ``alerts`` when anomalous (key: window_id), and on
    ``verdicts`` when configured. ``adapter_version`` None means the base scored it zero-shot. ``threshold_rule``:
    the rule that set ``threshold`` (``stream.model.thresholds``), as the serving model's manifest records it; None
    for a manifest from before rules were recorded (and in verdicts written before this field existed).
    ``supervision``: ``zero-shot`` (no adapter), ``zero-label`` (an adapter whose training saw no labeled anomaly)
    or ``labeled``; None in verdicts written before this field existed."""

    window_id: str
    system: str
    family: str
    model: str  # base name/version, e.g. "bgl/v0001"
    adapter_version: str | None
    zero_shot: bool
    score: float
    threshold: float
    label: str  # anomalous | normal
    first_event_ms: int
    last_event_ms: int
    lines: int
    explanation: tuple[Cause, ...] = ()
    truth: str | None = None  # the window's replayed ground truth, when it carried one (for evaluation only)
    threshold_rule: str | None = None
    supervision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_id": self.window_id,
            "system": self.system,
            "family": self.family,
            "model": self.model,
            "adapter_version": self.adapter_version,
            "zero_shot": self.zero_shot,
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "label": self.label,
            "first_event_ms": self.first_event_ms,
            "last_event_ms": self.last_event_ms,
            "lines": self.lines,
            "explanation": [cause.to_dict() for cause in self.explanation],
            "truth": self.truth,
            "threshold_rule": self.threshold_rule,
            "supervision": self.supervision,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(
            window_id=d["window_id"],
            system=d["system"],
            family=d["family"],
            model=d["model"],
            adapter_version=d.get("adapter_version"),
            zero_shot=bool(d["zero_shot"]),
            score=float(d["score"]),
            threshold=float(d["threshold"]),
            label=d["label"],
            first_event_ms=int(d["first_event_ms"]),
            last_event_ms=int(d["last_event_ms"]),
            lines=int(d["lines"]),
            explanation=tuple(Cause.from_dict(c) for c in d.get("explanation", ())),
            truth=d.get("truth"),
            threshold_rule=d.get("threshold_rule"),
            supervision=d.get("supervision"),
        )


@dataclass(frozen=True, slots=True)
class ModelUpdate:
    """A serving change, published on ``model-updates`` (key: target) when the trainer publishes an adapter or
    someone rolls one back (``adaptlog-train rollback``, the console: ``by`` who, ``previous`` the version it left);
    every inference worker reloads that target's serving version when it reads one."""

    target: str
    version: str
    reason: str
    at_ms: int
    kind: str = "adapter"
    by: str | None = None
    previous: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "target": self.target, "version": self.version,
                               "reason": self.reason, "at_ms": self.at_ms}  # fmt: skip
        if self.by is not None:
            out["by"] = self.by
        if self.previous is not None:
            out["from"] = self.previous
        return out

    @classmethod
    def from_dict(cls, d: Any) -> ModelUpdate:
        """A decoded ``model-updates`` record of kind ``adapter``, its fields checked (RecordError naming one)."""
        if not isinstance(d, dict):
            raise RecordError(f"a model update must be a JSON object, not {json_type(d)}")
        optional = {name: d.get(key) for name, key in (("by", "by"), ("previous", "from"))}
        for name, value in optional.items():
            if value is not None and not isinstance(value, str):
                raise RecordError(f"field {name!r} must be a string, not {json_type(value)}")
        return cls(
            target=_text(d, "target", empty=False),
            version=_text(d, "version", empty=False),
            reason=_text(d, "reason"),
            at_ms=_int64(d, "at_ms"),
            kind=_text(d, "kind", empty=False),
            **optional,
        )


@dataclass(frozen=True, slots=True)
class RetrainReport:
    """A labeled retrain's outcome, on ``model-updates`` (``kind: retrain``, key: target) for the operator console:
    the labels it read and used, the challenger's held-out F1, and for a failed one the error and the next try.
    The trainer's history is the record; inference workers take it only as a nudge to poll the registry."""

    target: str
    at_ms: int
    outcome: str  # "published v0003" | "rejected: <why>" | "failed"
    failed: bool
    labels: int  # the labeled windows the retrain read
    used_labels: int | None = None  # of them, those that trained the challenger
    f1: float | None = None
    error: str | None = None
    retry_at_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "retrain", "target": self.target, "at_ms": self.at_ms, "outcome": self.outcome,
                "failed": self.failed, "error": self.error, "retry_at_ms": self.retry_at_ms, "labels": self.labels,
                "used_labels": self.used_labels, "f1": self.f1}  # fmt: skip


SCHEDULE = "schedule"  # the kind of a RetrainSchedule record


@dataclass(frozen=True, slots=True)
class RetrainSchedule:
    """When the trainer retrains a target next, in words, and the label counts it decides on, on ``model-updates``
    (``kind: schedule``, key: target) for the operator console's system page. Sent when either changes (the trainer
    checks every ``trainer.check_interval_s``) and after each retrain; inference workers pass it over."""

    target: str
    at_ms: int
    next_retrain: str  # "after 12 more labels or at 2026-12-06T21:00:00.000Z", "now (50 new labels)", ...
    labels: dict[str, int]  # anomalous, normal, unused: LabelStore.counts

    def to_dict(self) -> dict[str, Any]:
        return {"kind": SCHEDULE, "target": self.target, "at_ms": self.at_ms, "next_retrain": self.next_retrain,
                "labels": self.labels}  # fmt: skip


def window_label(labels: Sequence[str | None]) -> str | None:
    """Anomalous if any line carried an anomalous label, normal if all carried labels, else unknown."""
    if ANOMALOUS in labels:
        return ANOMALOUS
    if labels and all(label == NORMAL for label in labels):
        return NORMAL
    return None


def window_id_for(system: str, policy: str, key: str, lines: tuple[WindowLine, ...]) -> str:
    """Deterministic id: the same lines (by source position) in the same kind of window give the same id.

    Because stages replay their input deterministically after a restart, a window re-emitted after a crash carries
    the same id and the same content, so downstream can recognize it as a repeat.
    """
    return _window_id(system, policy, key, ((line.topic, line.partition, line.offset, line.index) for line in lines))


def _window_id(system: str, policy: str, key: str, positions: Iterable[tuple[str, int, int, int]]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    # One update of the joined positions hashes the same bytes as one update per line, at a tenth of the cost. The
    # index joins a position only when not 0: ids of windows of one-line records are what they always were, and
    # two windows of lines of one OTLP record (same offset) still get different ids.
    joined = "".join(
        [
            f"\x1e{topic}\x1f{partition}\x1f{offset}\x1f{index}" if index else f"\x1e{topic}\x1f{partition}\x1f{offset}"
            for topic, partition, offset, index in positions
        ]
    )
    digest.update(f"{system}\x1f{policy}\x1f{key}{joined}".encode())
    return digest.hexdigest()


def encode_window(
    system: str, policy: str, key: str, start_ms: int, end_ms: int, reason: str, lines: Sequence[dict[str, Any]]
) -> bytes:
    """The bytes of ``encode(Window(...))`` for lines given as ``WindowLine.to_dict()`` dicts, the form windowers hold
    them in. The stream's window close skips building a WindowLine per line only to turn it back into a dict (with
    the id, 2.1 of 2.8 us per line). A line missing a field raises KeyError, as ``WindowLine.from_dict`` would."""
    rows = [{name: line[name] for name in WINDOW_LINE_FIELDS} for line in lines]
    for at in [at for at, line in enumerate(lines) if "index" in line]:  # lines of multi-line records only
        rows[at]["index"] = lines[at]["index"]
    positions = ((row["topic"], row["partition"], row["offset"], row.get("index", 0)) for row in rows)
    window_id = _window_id(system, policy, key, positions)
    return orjson.dumps(window_record(window_id, system, policy, key, start_ms, end_ms, reason, rows))


def window_record(
    window_id: str,
    system: str,
    policy: str,
    key: str,
    start_ms: int,
    end_ms: int,
    reason: str,
    lines: list[dict[str, Any]],
) -> dict[str, Any]:
    """A window as it goes on the ``windows`` topic, its lines already dicts (``Window.to_dict``, ``encode_window``)."""
    return {
        "window_id": window_id,
        "system": system,
        "policy": policy,
        "key": key,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "reason": reason,
        "label": window_label([line["label"] for line in lines]),
        "lines": lines,
    }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record adaptlog could not use, with the original bytes and why. Published on ``deadletter``."""

    stage: str  # decode | parse | window
    reason: str
    topic: str
    partition: int
    offset: int
    original: bytes
    system: str | None = None
    # the line's index in its record (SourceRef.index); None when the whole record is refused before its lines are
    # told apart. For a line of a multi-line record, ``original`` holds that line's part of the record.
    index: int | None = None

    @classmethod
    def of(cls, stage: str, reason: str, record: Any, *, system: str | None = None) -> DeadLetter:
        """The dead letter of a whole consumed ``record`` (anything with topic, partition, offset and value: an
        aiokafka ConsumerRecord, a RawRecord): its original bytes as they came (none for a tombstone)."""
        return cls(stage, reason, record.topic, record.partition, record.offset, record.value or b"", system)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "reason": self.reason,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "index": self.index,
            "system": self.system,
            "original_b64": base64.b64encode(self.original).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeadLetter:
        return cls(
            stage=d["stage"],
            reason=d["reason"],
            topic=d["topic"],
            partition=int(d["partition"]),
            offset=int(d["offset"]),
            original=base64.b64decode(d["original_b64"]),
            system=d.get("system"),
            index=d.get("index"),
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


def encode(record: Any) -> bytes:
    """Encode a record (anything with ``to_dict``) or a plain dict as JSON bytes."""
    return orjson.dumps(record.to_dict() if hasattr(record, "to_dict") else record)
