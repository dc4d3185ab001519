"""The alert record as published on the alerts topic (key: alert_id), and its decoder.

An :class:`~stream.inference.alerts.Alert` is the incident the book keeps; the record adds what a reader needs to act
on it without knowing adaptlog's internals:

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from stream.inference.alerts import Alert
from stream.records import Verdict

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
        for cause in verdict.get("explanation") or ():
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
    """Decode an alert record of any schema version; ValueError (with the reason) for anything else."""
    if not value:
        raise ValueError("an empty record is not an alert")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"an alert record is a JSON object, got {type(document).__name__}")
    alert = Alert.from_dict(document)  # ValueError naming the problem
    verdict = document.get("verdict")
    if verdict is not None and not isinstance(verdict, dict):
        raise ValueError(f"verdict must be an object or null, got {type(verdict).__name__}")
    version = document.get("schema_version", LEGACY_SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < LEGACY_SCHEMA_VERSION:
        raise ValueError(f"schema_version must be an integer >= 1, got {version!r}")
    if version == LEGACY_SCHEMA_VERSION:
        severity, summary, published_ms = policy.severity(alert.max_score, alert.count), None, None
    else:  # a newer version than this reader knows still carries these fields: read what is understood
        severity, summary = document.get("severity"), document.get("summary")
        published_ms = document.get("published_ms")
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
        if not isinstance(summary, str) or not summary:
            raise ValueError(f"summary must be a non-empty string, got {summary!r}")
        if not isinstance(published_ms, int) or isinstance(published_ms, bool):
            raise ValueError(f"published_ms must be an integer, got {published_ms!r}")
    return AlertRecord(
        alert=alert,
        schema_version=version,
        severity=severity,
        summary=summary or summary_for(alert, verdict),
        published_ms=published_ms,
        verdict=verdict,
    )
