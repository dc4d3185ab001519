"""The ``model-updates`` topic: serving changes, retrain outcomes and retrain schedules, told apart by ``kind``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream.records.fields import RecordError, int64_field, json_type, text_field


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
            target=text_field(d, "target", empty=False),
            version=text_field(d, "version", empty=False),
            reason=text_field(d, "reason"),
            at_ms=int64_field(d, "at_ms"),
            kind=text_field(d, "kind", empty=False),
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
