"""Feedback records (``feedback``): what operators (and bulk imports) send on the ``feedback`` topic to label windows.

A record is one JSON object; ``kind`` says which:

* ``{"kind": "label", "window_id": ..., "label": "normal"|"anomalous", "by"?: ...}`` -- an operator labels a window
  the stream published on ``windows``.
* ``{"kind": "alert", "window_id": ..., "verdict": "true_positive"|"false_positive", "by"?: ...}`` -- triage of an
  alert: a true positive labels its window anomalous, a false positive normal. Same :class:`WindowLabel` as above,
  so a triaged alert and a hand label of the same window are one label (the later wins, see the store).
* ``{"kind": "sequence", "system": ..., "label": ..., "templates": [...]}`` (or ``"lines"`` instead of
  ``"templates"``) -- a labeled sequence from outside the stream (a bulk import of labeled history). The trainer
  runs no Drain, so ``lines`` are taken as they are, as both templates and masked text: a bulk import should send
  ``templates`` (the stream's templates for those lines) when it has them, or the adapter trains on raw text it never
  sees when serving.

Parsing never guesses: anything else raises :class:`FeedbackError` with the reason the caller dead-letters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from stream.records.fields import ANOMALOUS, NORMAL, RecordError, json_type

# The trainer's integer labels (as trainer.datasets.model: ANOMALOUS 1, NORMAL 0), by their wire names.
LABELS = {NORMAL: 0, ANOMALOUS: 1}
VERDICTS = {"true_positive": 1, "false_positive": 0}
SEQUENCE_PREFIX = "seq-"  # window ids of imported sequences, so they never collide with the stream's hex ids


class FeedbackError(RecordError):
    """A feedback record the trainer cannot use; ``reason`` is what goes into the dead letter. A RecordError (so a
    DecodeError and a ValueError) like every wire record the decoders refuse."""


@dataclass(frozen=True, slots=True)
class WindowLabel:
    """A label for one window the stream published. ``source`` is the kind it came from: label or alert."""

    window_id: str
    label: int  # 1 anomalous, 0 normal
    by: str | None = None
    source: str = "label"


@dataclass(frozen=True, slots=True)
class LabeledSequence:
    """A labeled line sequence from outside the stream; ``sequence_id`` depends on the content, not the label, so
    importing the same sequence again is a repeat (or a relabel), never a second example."""

    system: str
    templates: tuple[str, ...]
    masked: tuple[str, ...]
    label: int
    sequence_id: str
    by: str | None = None

    @property
    def window_id(self) -> str:
        return SEQUENCE_PREFIX + self.sequence_id


Feedback = WindowLabel | LabeledSequence


@dataclass(frozen=True, slots=True)
class AlertTriage:
    """What the operator console sends for each window of a triaged alert (``kind: alert``); the trainer reads it as
    a :class:`WindowLabel` and passes over ``at_ms``, ``alert_id`` and ``via``, which are for the people reading the
    topic."""

    window_id: str
    verdict: str  # true_positive | false_positive
    by: str
    at_ms: int
    alert_id: str | None
    via: str = "console"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "alert",
            "window_id": self.window_id,
            "verdict": self.verdict,
            "by": self.by,
            "at_ms": self.at_ms,
            "alert_id": self.alert_id,
            "via": self.via,
        }


def parse_feedback(raw: bytes) -> Feedback:
    """One ``feedback`` record -> its typed form, or :class:`FeedbackError` saying what is wrong with it."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FeedbackError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise FeedbackError(f"not a JSON object but {json_type(record)}")
    kind = record.get("kind")
    if kind == "label":
        return WindowLabel(text_field(record, "window_id"), label_field(record), optional_by(record), "label")
    if kind == "alert":
        return WindowLabel(text_field(record, "window_id"), verdict_field(record), optional_by(record), "alert")
    if kind == "sequence":
        return parse_sequence(record)
    if kind is None:
        raise FeedbackError("missing field 'kind' (label, alert or sequence)")
    raise FeedbackError(f"unknown kind {kind!r}: expected label, alert or sequence")


def parse_sequence(record: dict[str, Any]) -> LabeledSequence:
    system = text_field(record, "system")
    label = label_field(record)
    if ("lines" in record) == ("templates" in record):
        raise FeedbackError("a sequence needs exactly one of 'lines' or 'templates'")
    name = "templates" if "templates" in record else "lines"
    texts = text_list(record, name)
    return LabeledSequence(system, texts, texts, label, sequence_id(system, texts), optional_by(record))


def sequence_id(system: str, templates: tuple[str, ...]) -> str:
    """Hex blake2b(16) of the system and the templates (unit separators between them), without the label."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(system.encode())
    for template in templates:
        digest.update(b"\x1e" + template.encode())
    return digest.hexdigest()


def text_field(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        raise FeedbackError(f"missing field {name!r}")
    if not isinstance(value, str):
        raise FeedbackError(f"field {name!r} must be a string, not {json_type(value)}")
    if not value.strip():
        raise FeedbackError(f"field {name!r} is empty")
    return value


def optional_by(record: dict[str, Any]) -> str | None:
    return text_field(record, "by") if record.get("by") is not None else None


def label_field(record: dict[str, Any]) -> int:
    label = text_field(record, "label")
    if label not in LABELS:
        raise FeedbackError(f"field 'label' must be 'normal' or 'anomalous', not {label!r}")
    return LABELS[label]


def verdict_field(record: dict[str, Any]) -> int:
    verdict = text_field(record, "verdict")
    if verdict not in VERDICTS:
        raise FeedbackError(f"field 'verdict' must be 'true_positive' or 'false_positive', not {verdict!r}")
    return VERDICTS[verdict]


def text_list(record: dict[str, Any], name: str) -> tuple[str, ...]:
    values = record[name]
    if not isinstance(values, list):
        raise FeedbackError(f"field {name!r} must be a list of strings, not {json_type(values)}")
    if not values:
        raise FeedbackError(f"field {name!r} is empty: a sequence needs at least one line")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise FeedbackError(f"field {name!r}: item {index} must be a string, not {json_type(value)}")
    return tuple(values)
