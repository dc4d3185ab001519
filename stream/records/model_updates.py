"""The ``model-updates`` topic (key: target): serving changes, retrain outcomes and retrain schedules, told apart by
``kind`` (adapter, retrain, schedule). The trainer and the console write them; :func:`decode_model_update` reads
any of them for the inference workers and the console.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from stream.records.fields import (
    RecordError,
    boolean_field,
    field_value,
    int64_field,
    json_object,
    json_type,
    optional_int64,
    optional_number,
    optional_text,
    text_field,
)

ADAPTER = "adapter"  # the kind of a ModelUpdate record
RETRAIN = "retrain"  # the kind of a RetrainReport record
SCHEDULE = "schedule"  # the kind of a RetrainSchedule record


@dataclass(frozen=True, slots=True)
class ModelUpdate:
    """A serving change, published on ``model-updates`` (key: target) when the trainer publishes an adapter or
    someone rolls one back (``adaptlog-train rollback``, the console: ``by`` who, ``previous`` the version it left);
    every inference worker reloads that target's serving version when it reads one."""

    target: str
    version: str
    reason: str
    at_ms: int
    kind: str = ADAPTER  # the only kind of this record: a field so that it reads like the others' ``kind``
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
        _check_kind(d, ADAPTER)
        return cls(
            target=text_field(d, "target", empty=False),
            version=text_field(d, "version", empty=False),
            reason=text_field(d, "reason"),
            at_ms=int64_field(d, "at_ms"),
            by=optional_text(d, "by"),
            previous=optional_text(d, "from"),
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
    kind: ClassVar[str] = RETRAIN

    def to_dict(self) -> dict[str, Any]:
        return {"kind": RETRAIN, "target": self.target, "at_ms": self.at_ms, "outcome": self.outcome,
                "failed": self.failed, "error": self.error, "retry_at_ms": self.retry_at_ms, "labels": self.labels,
                "used_labels": self.used_labels, "f1": self.f1}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Any) -> RetrainReport:
        """A decoded ``model-updates`` record of kind ``retrain``, its fields checked (RecordError naming one)."""
        if not isinstance(d, dict):
            raise RecordError(f"a retrain report must be a JSON object, not {json_type(d)}")
        _check_kind(d, RETRAIN)
        return cls(
            target=text_field(d, "target", empty=False),
            at_ms=int64_field(d, "at_ms"),
            outcome=text_field(d, "outcome"),
            failed=boolean_field(d, "failed"),
            labels=int64_field(d, "labels"),
            used_labels=optional_int64(d, "used_labels"),
            f1=optional_number(d, "f1"),
            error=optional_text(d, "error"),
            retry_at_ms=optional_int64(d, "retry_at_ms"),
        )


@dataclass(frozen=True, slots=True)
class RetrainSchedule:
    """When the trainer retrains a target next, in words, and the label counts it decides on, on ``model-updates``
    (``kind: schedule``, key: target) for the operator console's system page. Sent when either changes (the trainer
    checks every ``trainer.check_interval_s``) and after each retrain; inference workers pass it over."""

    target: str
    at_ms: int
    next_retrain: str  # "after 12 more labels or at 2026-12-06T21:00:00.000Z", "now (50 new labels)", ...
    labels: dict[str, int]  # anomalous, normal, unused: LabelStore.counts
    kind: ClassVar[str] = SCHEDULE

    def to_dict(self) -> dict[str, Any]:
        return {"kind": SCHEDULE, "target": self.target, "at_ms": self.at_ms, "next_retrain": self.next_retrain,
                "labels": self.labels}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Any) -> RetrainSchedule:
        """A decoded ``model-updates`` record of kind ``schedule``, its fields checked (RecordError naming one)."""
        if not isinstance(d, dict):
            raise RecordError(f"a retrain schedule must be a JSON object, not {json_type(d)}")
        _check_kind(d, SCHEDULE)
        labels = field_value(d, "labels")
        if not isinstance(labels, dict):
            raise RecordError(f"field 'labels' must be an object, not {json_type(labels)}")
        return cls(
            target=text_field(d, "target", empty=False),
            at_ms=int64_field(d, "at_ms"),
            next_retrain=text_field(d, "next_retrain"),
            labels={name: int64_field(labels, name, "labels: ") for name in labels},
        )


def _check_kind(d: dict[str, Any], kind: str) -> None:
    if text_field(d, "kind") != kind:
        raise RecordError(f"field 'kind' must be {kind!r} in this record, not {d['kind']!r}")


ModelUpdateRecord = ModelUpdate | RetrainReport | RetrainSchedule
_DECODERS: dict[str, Callable[[dict[str, Any]], ModelUpdateRecord]] = {
    ADAPTER: ModelUpdate.from_dict,
    RETRAIN: RetrainReport.from_dict,
    SCHEDULE: RetrainSchedule.from_dict,
}


def decode_model_update(value: bytes | None) -> ModelUpdateRecord:
    """A ``model-updates`` record of any kind, its fields checked; RecordError saying why for anything else,
    a kind this version does not know included (a newer trainer's: readers decide what that means to them)."""
    document = json_object(value, "a model-updates record")
    kind = text_field(document, "kind", empty=False)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise RecordError(f"field 'kind' must be one of {', '.join(_DECODERS)}, not {kind!r}")
    return decoder(document)
