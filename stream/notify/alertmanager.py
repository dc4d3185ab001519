"""Alerts to Alertmanager's v2 API (``POST <url>/api/v2/alerts``).

Mapping of one alert record:

* labels: ``alertname`` (``notify.alertname``), ``system``, ``severity``, ``alert_id``. Alertmanager groups and
  routes on them; ``alert_id`` keeps two incidents of one system apart.
* annotations: ``summary`` (names the top templates), ``explanation`` (the verdict's causes with their weights, or
  the incident's templates when it resolved by time), ``window_ids``, ``count``, ``max_score``, ``status``.
* ``startsAt``: the incident's first event time (no later than its publication, so replayed old logs start in the
  past and a skewed clock never puts startsAt after endsAt).
* ``endsAt``: for open / ongoing, publication + ``firing_hold_s`` (more than two alert TTLs): the inference worker
  republishes a live incident at least once a TTL, each re-post pushes endsAt on, so it keeps firing while live and
  times out by itself only if every publisher is gone. For resolved, the publication time (in the past): the
  incident ends in Alertmanager at once.

Severity is a label, so an incident that escalates from warning to critical becomes another Alertmanager alert.
Every post therefore also ends the incident's other severities (same labels, endsAt in the past): the lower one does
not linger until its hold runs out. An alert that never fired ends silently (Alertmanager notifies nothing for it).

A batch is one POST with the latest record of each incident (Alertmanager keeps only the latest state; two states
of one alert in one POST would be merged in no defined order). If Alertmanager refuses the POST (400: it names the
invalid alerts and keeps the valid ones), each record is posted alone to find the refused ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from stream.notify.http import ACKED, REFUSED, Endpoint, Outcome, RetryPolicy, deliver, post_in_thread
from stream.notify.notice import Notice
from stream.records.alerts import RESOLVED, SEVERITIES, rfc3339, top_templates

API_PATH = "/api/v2/alerts"


def alerts_for(notice: Notice, *, alertname: str, hold_ms: int, now_ms: int) -> list[dict[str, Any]]:
    """The Alertmanager alerts one record becomes: its own severity, and the others ended (see the module doc)."""
    record, alert = notice.record, notice.record.alert
    ended_ms = min(notice.published_ms, now_ms)  # in the past at this notifier's clock, whatever the writer's was
    starts_ms = min(alert.first_seen_ms, ended_ms)
    ends_ms = ended_ms if alert.status == RESOLVED else notice.published_ms + hold_ms
    annotations = {
        "summary": record.summary,
        "explanation": explanation(notice),
        "window_ids": ",".join(alert.window_ids),
        "count": str(alert.count),
        "max_score": f"{alert.max_score:.4f}",
        "status": alert.status,
    }
    out = []
    for severity in SEVERITIES:
        labels = {"alertname": alertname, "system": alert.system, "severity": severity, "alert_id": alert.alert_id}
        current = severity == record.severity
        out.append(
            {
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(starts_ms),
                "endsAt": rfc3339(ends_ms if current else ended_ms),
            }
        )
    return out


def explanation(notice: Notice) -> str:
    """The causes as ``template (weight)`` lines, heaviest first; the templates alone without a verdict."""
    verdict = notice.record.verdict
    causes = [c for c in (verdict or {}).get("explanation") or () if isinstance(c, dict) and "template" in c]
    if causes:
        return "\n".join(f"{c['template']} ({c.get('weight', 0):.3f})" for c in causes)
    return "\n".join(top_templates(notice.record.alert, None)) or "(no templates explained)"


def latest_per_incident(notices: Sequence[Notice]) -> list[int]:
    """Indexes of each incident's last notice, in order (records of one incident arrive in publication order)."""
    latest = {notice.alert_id: index for index, notice in enumerate(notices)}
    return sorted(latest.values())


class AlertmanagerSink:
    name = "alertmanager"

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        retry: RetryPolicy,
        stop: asyncio.Event,
        alertname: str,
        hold_ms: int,
        clock_ms: Callable[[], int],
        on_retry: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.endpoint = Endpoint(base_url.rstrip("/") + API_PATH, timeout_s)
        self.retry, self.stop, self.on_retry = retry, stop, on_retry
        self.alertname, self.hold_ms, self.clock_ms = alertname, hold_ms, clock_ms

    async def deliver(self, notices: Sequence[Notice]) -> dict[int, str]:
        chosen = latest_per_incident(notices)
        if not chosen:
            return {}
        outcome = await self._post([notices[i] for i in chosen], f"{len(chosen)} alerts")
        if outcome.kind == ACKED:
            return {}
        refused: dict[int, str] = {}
        for index in chosen:  # find the refused ones; Alertmanager stored the valid ones already (idempotent)
            alone = await self._post([notices[index]], f"alert {notices[index].alert_id}")
            if alone.kind == REFUSED:
                refused[index] = alone.detail
        return refused

    async def _post(self, notices: Sequence[Notice], what: str) -> Outcome:
        now_ms = self.clock_ms()
        body = [
            entry
            for notice in notices
            for entry in alerts_for(notice, alertname=self.alertname, hold_ms=self.hold_ms, now_ms=now_ms)
        ]
        return await deliver(
            lambda: post_in_thread(self.endpoint, body),
            f"{self.name} {what}",
            self.retry,
            self.stop,
            self.on_retry,
        )
