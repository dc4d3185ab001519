"""The ``alerts`` topic (key: alert_id): an :class:`Alert` is one incident as the inference worker's alert book keeps
it (``stream.inference.alerts``, which says how incidents open, grow and resolve); the published record adds what a
reader needs to act on it without knowing adaptlog's internals:

    {   # the Alert's own fields (alert_id, system, templates, status, count, first_seen_ms, last_seen_ms,
        #   window_ids, max_score, last_score), then:
        "schema_version": 2,
        "severity": "info" | "warning" | "critical",   # from max_score and count (SeverityPolicy)
        "summary": "bgl: 12 anomalous windows; top templates: A | B",
        "first_seen": "2026-12-05T10:00:00.000Z",     # RFC 3339 (UTC) next to each epoch-ms time
        "last_seen": "...",
        "published_ms": 1733443200123, "published_at": "...",   # the wall clock of the worker that wrote it
        "verdict": {...} | null,                       # the verdict that updated it; null when it resolved by time
    }

Version 1 is every record written before these fields existed (``{**alert, "verdict"}``, no ``schema_version``).
:func:`decode_alert_record` reads both: a version-1 record gets its severity from the reader's policy, its summary
from its templates, and no publication time (the reader uses the Kafka record's timestamp instead).
Severity only rises while an incident lasts (max_score and count never fall), which the Alertmanager sink relies on.

An Alert is validated at construction, so a malformed one (built or decoded) raises ValueError naming the problem;
:func:`decode_alert_record` raises :class:`RecordError` with that reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import orjson

from stream.records.fields import RecordError
from stream.records.verdicts import Verdict

OPEN = "open"
ONGOING = "ongoing"
RESOLVED = "resolved"
STATUSES = (OPEN, ONGOING, RESOLVED)
MAX_WINDOW_IDS = 20  # window ids an alert keeps: enough to look a few up, small enough for a Kafka record


def _require(condition: bool, problem: str) -> None:
    # ValueError, as the alert book's own checks: decode_alert_record turns it into a RecordError with this reason
    if not condition:
        raise ValueError(problem)


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_score(value: object) -> bool:
    # bool is an int subclass: a True score is a bug upstream, not a score of 1.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_text(name: str, value: object) -> None:
    _require(isinstance(value, str) and value != "", f"{name} must be a non-empty string, got {value!r}")


def canonical_templates(templates: Iterable[str]) -> tuple[str, ...]:
    """The identity form of a template set: distinct, sorted. A bare string is refused (it would split into chars)."""
    _require(
        not isinstance(templates, str | bytes),
        f"templates must be a collection of strings, not a single {type(templates).__name__}",
    )
    given = tuple(templates)
    for template in given:
        check_text("each template", template)
    return tuple(sorted(set(given)))


def alert_id_for(system: str, templates: Iterable[str]) -> str:
    """Stable incident id: blake2b (16 bytes, hex) of the system and the sorted distinct templates, unit-separated."""
    check_text("system", system)
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\x1f".join((system, *canonical_templates(templates))).encode())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Alert:
    """One incident as published on the alerts topic. Validated at construction, so from_dict refuses bad data.

    ``first_seen_ms``/``last_seen_ms`` are the earliest and latest event times (of the windows' last lines) seen,
    not arrival order: a late window does not move ``last_seen_ms`` back.
    """

    alert_id: str
    system: str
    templates: tuple[str, ...]  # distinct, sorted (the identity); a list in to_dict
    status: str  # open | ongoing | resolved
    count: int  # anomalous verdicts (windows) of this incident so far
    first_seen_ms: int
    last_seen_ms: int
    window_ids: tuple[str, ...]  # the last MAX_WINDOW_IDS, oldest first
    max_score: float
    last_score: float

    def __post_init__(self) -> None:
        check_text("system", self.system)
        _require(isinstance(self.templates, tuple), "templates must be a tuple")
        _require(
            self.templates == canonical_templates(self.templates),
            f"templates must be distinct and sorted, got {self.templates!r}",
        )
        _require(self.alert_id == alert_id_for(self.system, self.templates), "alert_id does not match the incident")
        _require(self.status in STATUSES, f"status must be one of {STATUSES}, got {self.status!r}")
        self._check_counts()
        self._check_scores()

    def _check_counts(self) -> None:
        _require(is_int(self.count) and self.count >= 1, f"count must be an integer >= 1, got {self.count!r}")
        _require(self.status != OPEN or self.count == 1, f"an open alert has count 1, got {self.count}")
        _require(self.status != ONGOING or self.count >= 2, f"an ongoing alert has count >= 2, got {self.count}")
        _require(is_int(self.first_seen_ms), f"first_seen_ms must be an integer, got {self.first_seen_ms!r}")
        _require(is_int(self.last_seen_ms), f"last_seen_ms must be an integer, got {self.last_seen_ms!r}")
        _require(self.first_seen_ms <= self.last_seen_ms, "first_seen_ms must not be after last_seen_ms")
        _require(isinstance(self.window_ids, tuple), "window_ids must be a tuple")
        _require(
            1 <= len(self.window_ids) <= min(self.count, MAX_WINDOW_IDS),
            f"window_ids must hold 1 to min(count, {MAX_WINDOW_IDS}) ids, got {len(self.window_ids)}",
        )
        for window_id in self.window_ids:
            check_text("each window id", window_id)

    def _check_scores(self) -> None:
        _require(is_score(self.max_score), f"max_score must be a finite number, got {self.max_score!r}")
        _require(is_score(self.last_score), f"last_score must be a finite number, got {self.last_score!r}")
        _require(self.last_score <= self.max_score, "last_score must not exceed max_score")

    @classmethod
    def opened(cls, system: str, templates: tuple[str, ...], window_id: str, score: float, event_ms: int) -> Alert:
        """The alert of an incident's first verdict."""
        return cls(
            alert_id=alert_id_for(system, templates),
            system=system,
            templates=canonical_templates(templates),
            status=OPEN,
            count=1,
            first_seen_ms=event_ms,
            last_seen_ms=event_ms,
            window_ids=(window_id,),
            max_score=float(score),
            last_score=float(score),
        )

    def advanced(self, window_id: str, score: float, event_ms: int) -> Alert:
        """This incident after one more verdict (status ongoing)."""
        return dataclasses.replace(
            self,
            status=ONGOING,
            count=self.count + 1,
            first_seen_ms=min(self.first_seen_ms, event_ms),
            last_seen_ms=max(self.last_seen_ms, event_ms),
            window_ids=(*self.window_ids, window_id)[-MAX_WINDOW_IDS:],
            max_score=max(self.max_score, float(score)),
            last_score=float(score),
        )

    def resolved(self) -> Alert:
        return dataclasses.replace(self, status=RESOLVED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "system": self.system,
            "templates": list(self.templates),
            "status": self.status,
            "count": self.count,
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "window_ids": list(self.window_ids),
            "max_score": self.max_score,
            "last_score": self.last_score,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        """Inverse of to_dict. Types are checked, not coerced: "5" is not a count. ValueError names the problem."""
        _require(isinstance(d, dict), f"an alert must be a mapping, got {type(d).__name__}")
        missing = [name for name in _ALERT_FIELDS if name not in d]
        _require(not missing, f"alert is missing {missing}")
        _require(isinstance(d["templates"], list), "alert templates must be a list")
        _require(isinstance(d["window_ids"], list), "alert window_ids must be a list")
        _require(is_score(d["max_score"]) and is_score(d["last_score"]), "alert scores must be finite numbers")
        return cls(
            alert_id=d["alert_id"],
            system=d["system"],
            templates=tuple(d["templates"]),
            status=d["status"],
            count=d["count"],
            first_seen_ms=d["first_seen_ms"],
            last_seen_ms=d["last_seen_ms"],
            window_ids=tuple(d["window_ids"]),
            max_score=float(d["max_score"]),
            last_score=float(d["last_score"]),
        )


_ALERT_FIELDS = tuple(field.name for field in dataclasses.fields(Alert))


ALERT_SCHEMA_VERSION = 2
LEGACY_SCHEMA_VERSION = 1  # records without a schema_version field
INFO, WARNING, CRITICAL = "info", "warning", "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)  # least severe first
SUMMARY_TEMPLATES = 3  # templates a summary names (the rest are counted)
SUMMARY_TEMPLATE_CHARS = 120  # a template is cut to this many characters in a summary (a line can be 64 KiB)


@dataclass(frozen=True, slots=True)
class SeverityPolicy:
    """critical when max_score >= critical_score or count >= critical_count; else warning by the warning pair; else
    info. Scores are the model's anomaly scores (0..1); counts are anomalous windows of the incident."""

    warning_score: float = 0.9
    warning_count: int = 4
    critical_score: float = 0.99
    critical_count: int = 32

    def __post_init__(self) -> None:
        if not (0 <= self.warning_score <= self.critical_score and math.isfinite(self.critical_score)):
            raise ValueError("severity scores must satisfy 0 <= warning_score <= critical_score (finite)")
        if not (1 <= self.warning_count <= self.critical_count):
            raise ValueError("severity counts must satisfy 1 <= warning_count <= critical_count")

    def severity(self, max_score: float, count: int) -> str:
        if max_score >= self.critical_score or count >= self.critical_count:
            return CRITICAL
        if max_score >= self.warning_score or count >= self.warning_count:
            return WARNING
        return INFO


def rfc3339(epoch_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 in UTC with milliseconds, e.g. 2026-12-05T10:00:00.123Z."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def top_templates(alert: Alert, verdict: dict[str, Any] | None) -> list[str]:
    """The incident's templates, most weighty first when a verdict's explanation ranks them (else sorted)."""
    ranked: list[str] = []
    if verdict is not None:
        explanation = verdict.get("explanation")
        for cause in explanation if isinstance(explanation, list) else ():
            template = cause.get("template") if isinstance(cause, dict) else None
            if isinstance(template, str) and template in alert.templates and template not in ranked:
                ranked.append(template)
    return ranked + [template for template in alert.templates if template not in ranked]


def summary_for(alert: Alert, verdict: dict[str, Any] | None) -> str:
    """One line naming the system, the size of the incident and its top templates."""
    windows = "1 anomalous window" if alert.count == 1 else f"{alert.count} anomalous windows"
    templates = top_templates(alert, verdict)
    if not templates:
        return f"{alert.system}: {windows} (no templates explained)"
    named = [_shorten(template) for template in templates[:SUMMARY_TEMPLATES]]
    more = len(templates) - len(named)
    tail = f" (+{more} more)" if more else ""
    ended = " (resolved)" if alert.status == "resolved" else ""
    return f"{alert.system}: {windows}{ended}; top templates: {' | '.join(named)}{tail}"


def _shorten(template: str) -> str:
    if len(template) <= SUMMARY_TEMPLATE_CHARS:
        return template
    return template[: SUMMARY_TEMPLATE_CHARS - 1] + "…"


def alert_record(alert: Alert, verdict: Verdict | None, policy: SeverityPolicy, published_ms: int) -> bytes:
    """An alert as published: the incident, its severity, summary and RFC 3339 times, and the verdict that updated
    it (None when it resolved by time)."""
    verdict_dict = verdict.to_dict() if verdict is not None else None
    return orjson.dumps(
        {
            **alert.to_dict(),
            "schema_version": ALERT_SCHEMA_VERSION,
            "severity": policy.severity(alert.max_score, alert.count),
            "summary": summary_for(alert, verdict_dict),
            "first_seen": rfc3339(alert.first_seen_ms),
            "last_seen": rfc3339(alert.last_seen_ms),
            "published_ms": published_ms,
            "published_at": rfc3339(published_ms),
            "verdict": verdict_dict,
        }
    )


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A decoded alert record, whatever its schema version."""

    alert: Alert
    schema_version: int
    severity: str
    summary: str
    published_ms: int | None  # None in version-1 records: use the Kafka record's timestamp
    verdict: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """The record in the current schema (a version-1 record comes out upgraded, published time aside)."""
        out = {
            **self.alert.to_dict(),
            "schema_version": ALERT_SCHEMA_VERSION,
            "severity": self.severity,
            "summary": self.summary,
            "first_seen": rfc3339(self.alert.first_seen_ms),
            "last_seen": rfc3339(self.alert.last_seen_ms),
            "published_ms": self.published_ms,
            "published_at": rfc3339(self.published_ms) if self.published_ms is not None else None,
            "verdict": self.verdict,
        }
        return out


def decode_alert_record(value: bytes | None, policy: SeverityPolicy) -> AlertRecord:
    """Decode an alert record of any schema version; RecordError (a ValueError) saying why for anything else."""
    try:
        return _decode_alert_record(value, policy)
    except RecordError:
        raise
    except ValueError as exc:  # the Alert's own checks: the same reason, as a record error
        raise RecordError(str(exc)) from None


def _decode_alert_record(value: bytes | None, policy: SeverityPolicy) -> AlertRecord:
    # the reasons are those the notifier has always written into its dead letters ("not an alert record: <reason>")
    if not value:
        raise RecordError("an empty record is not an alert")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RecordError(f"an alert record is a JSON object, got {type(document).__name__}")
    alert = Alert.from_dict(document)  # ValueError naming the problem
    verdict = document.get("verdict")
    if verdict is not None and not isinstance(verdict, dict):
        raise RecordError(f"verdict must be an object or null, got {type(verdict).__name__}")
    version = document.get("schema_version", LEGACY_SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < LEGACY_SCHEMA_VERSION:
        raise RecordError(f"schema_version must be an integer >= 1, got {version!r}")
    if version == LEGACY_SCHEMA_VERSION:
        severity, summary, published_ms = policy.severity(alert.max_score, alert.count), None, None
    else:  # a newer version than this reader knows still carries these fields: read what is understood
        read_severity, summary = document.get("severity"), document.get("summary")
        published_ms = document.get("published_ms")
        if read_severity not in SEVERITIES:
            raise RecordError(f"severity must be one of {SEVERITIES}, got {read_severity!r}")
        severity = str(read_severity)
        if not isinstance(summary, str) or not summary:
            raise RecordError(f"summary must be a non-empty string, got {summary!r}")
        if not isinstance(published_ms, int) or isinstance(published_ms, bool):
            raise RecordError(f"published_ms must be an integer, got {published_ms!r}")
    return AlertRecord(
        alert=alert,
        schema_version=version,
        severity=severity,
        summary=summary or summary_for(alert, verdict),
        published_ms=published_ms,
        verdict=verdict,
    )
