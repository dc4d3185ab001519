"""What the console knows, built from topic records and bounded: incidents, recent windows, templates, systems.

Pure (no Kafka, no clock reads): ``feeds`` hands every decoded record to an ``apply_*`` method, pages read. Bounds,
and why they are where they are:

* incidents: ``max_incidents`` (10,000 by default), the least recently updated dropped first. A page filters and
  sorts them per request; bench/console_bench.py measures that at 10,000.
* windows: alerts name window ids, but a window's lines (templates, masked content) travel on ``windows`` before its
  verdict does, so the last ``max_windows`` windows are kept (lines cut to ``MAX_LINES``).
* an incident keeps every window id its records named, up to ``MAX_INCIDENT_WINDOWS``: an alert record carries its
  incident's last 20 ids and is published at counts 1, 2, 4, 8, ..., so the ids of a long incident between two
  records are not on the topic (``verdicts``, when inference publishes it, names them all; read when configured).
* templates per system: ``max_templates``; past it the least counted one goes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from stream.records import (
    ANOMALOUS,
    NORMAL,
    SEVERITIES,
    STATUSES,
    AlertRecord,
    ModelUpdate,
    ModelUpdateRecord,
    RetrainReport,
    RetrainSchedule,
    Window,
)

MAX_LINES = 64  # lines of a window kept for its explanation
MAX_INCIDENT_WINDOWS = 500
MAX_VERSIONS = 200  # model-updates entries kept per system


@dataclass
class Incident:
    """One incident as the latest of its alert records describes it, plus every verdict and window id seen."""

    alert_id: str
    system: str
    status: str
    severity: str
    summary: str
    count: int
    first_seen_ms: int
    last_seen_ms: int
    max_score: float
    templates: tuple[str, ...]
    window_ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # window_id -> its verdict
    latest_verdict: dict[str, Any] | None = None

    @property
    def explanation(self) -> list[dict[str, Any]]:
        return list((self.latest_verdict or {}).get("explanation") or ())


@dataclass(frozen=True, slots=True)
class KeptWindow:
    window_id: str
    system: str
    start_ms: int
    end_ms: int
    lines: tuple[tuple[str, str], ...]  # (template, masked content), the first MAX_LINES

    @property
    def templates(self) -> set[str]:
        return {template for template, _ in self.lines}


@dataclass
class TemplateStat:
    template: str
    count: int
    first_order: int  # arrival order of its first line: larger is newer
    first_event_ms: int


@dataclass
class SystemState:
    # every label seen on the feedback topic (the console's and anyone's), as the trainer reads it
    labels_received: dict[str, int] = field(default_factory=lambda: {ANOMALOUS: 0, NORMAL: 0})
    updates: list[ModelUpdate | RetrainReport] = field(default_factory=list)  # model-updates records, oldest first
    last_failure: RetrainReport | None = None
    schedule: RetrainSchedule | None = None  # the trainer's latest: the next retrain


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """What the incidents page asks for; every field optional. Times bound ``last_seen_ms`` (inclusive)."""

    status: str = ""
    system: str = ""
    severity: str = ""
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if self.status and self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")
        if self.severity and self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if self.since_ms is not None and self.until_ms is not None and self.since_ms > self.until_ms:
            raise ValueError("'since' is after 'until'")

    def admits(self, incident: Incident) -> bool:
        return (
            (not self.status or incident.status == self.status)
            and (not self.system or incident.system == self.system)
            and (not self.severity or incident.severity == self.severity)
            and (self.since_ms is None or incident.last_seen_ms >= self.since_ms)
            and (self.until_ms is None or incident.last_seen_ms <= self.until_ms)
        )


class ConsoleView:
    def __init__(self, max_incidents: int = 10_000, max_windows: int = 20_000, max_templates: int = 5_000) -> None:
        if min(max_incidents, max_windows, max_templates) < 1:
            raise ValueError("the console's bounds must be at least 1")
        self.max_incidents, self.max_windows, self.max_templates = max_incidents, max_windows, max_templates
        self.incidents: OrderedDict[str, Incident] = OrderedDict()  # least recently updated first
        self.windows: OrderedDict[str, KeptWindow] = OrderedDict()
        self.templates: dict[str, dict[str, TemplateStat]] = {}
        self.systems: dict[str, SystemState] = {}
        self.labels: OrderedDict[str, dict[str, Any]] = OrderedDict()  # window_id -> latest feedback record
        self.window_incident: dict[str, str] = {}  # window_id -> alert_id, for the incidents kept
        self._order = 0

    def system(self, name: str) -> SystemState:
        return self.systems.setdefault(name, SystemState())

    def apply_window(self, window: Window) -> None:
        self._order += 1
        stats = self.templates.setdefault(window.system, {})
        for line in window.lines:
            stat = stats.get(line.template)
            if stat is None:
                if len(stats) >= self.max_templates:
                    del stats[min(stats.values(), key=lambda s: (s.count, s.first_order)).template]
                stats[line.template] = TemplateStat(line.template, 1, self._order, line.event_ms)
            else:
                stat.count += 1
        lines = tuple((line.template, line.masked) for line in window.lines[:MAX_LINES])
        self.windows[window.window_id] = KeptWindow(
            window.window_id, window.system, window.start_ms, window.end_ms, lines
        )
        self.windows.move_to_end(window.window_id)
        while len(self.windows) > self.max_windows:
            self.windows.popitem(last=False)
        self.system(window.system)

    def apply_alert(self, record: AlertRecord) -> None:
        alert = record.alert
        incident = self.incidents.get(alert.alert_id)
        if incident is None:
            incident = Incident(
                alert.alert_id, alert.system, alert.status, record.severity, record.summary, 0, 0, 0, 0.0, ()
            )
            self.incidents[alert.alert_id] = incident
        elif alert.count < incident.count:  # an older record read late (a replay): it changes nothing
            return
        incident.status, incident.severity, incident.summary = alert.status, record.severity, record.summary
        incident.count, incident.max_score, incident.templates = alert.count, alert.max_score, alert.templates
        incident.first_seen_ms, incident.last_seen_ms = alert.first_seen_ms, alert.last_seen_ms
        for window_id in alert.window_ids:
            if window_id not in incident.window_ids and len(incident.window_ids) < MAX_INCIDENT_WINDOWS:
                incident.window_ids[window_id] = None
                self.window_incident[window_id] = alert.alert_id
        if record.verdict is not None:
            self.apply_verdict(record.verdict, incident)
        self.incidents.move_to_end(alert.alert_id)
        while len(self.incidents) > self.max_incidents:
            _, dropped = self.incidents.popitem(last=False)
            for window_id in dropped.window_ids:
                self.window_incident.pop(window_id, None)
        self.system(alert.system)

    def apply_verdict(self, verdict: dict[str, Any], incident: Incident | None = None) -> None:
        """A verdict (from an alert record, or the verdicts topic) joins its window's incident, when known."""
        window_id = verdict.get("window_id")
        if not isinstance(window_id, str):
            return
        if incident is None:
            incident = self.incidents.get(self.window_incident.get(window_id, ""))
        if incident is None:
            return
        if len(incident.verdicts) < MAX_INCIDENT_WINDOWS:
            incident.verdicts[window_id] = verdict
        if window_id not in incident.window_ids and len(incident.window_ids) < MAX_INCIDENT_WINDOWS:
            incident.window_ids[window_id] = None
            self.window_incident[window_id] = incident.alert_id
        incident.latest_verdict = verdict

    def apply_feedback(self, record: dict[str, Any], system: str | None) -> None:
        """A feedback record seen on the topic (the console's own, or anyone's): the window's latest label."""
        window_id = record.get("window_id")
        if not isinstance(window_id, str):
            return
        self.labels[window_id] = record
        self.labels.move_to_end(window_id)
        while len(self.labels) > 5 * self.max_windows:
            self.labels.popitem(last=False)
        # triage (kind alert) and plain labels (kind label) are one label to the trainer: a true positive is anomalous
        triage = {"true_positive": ANOMALOUS, "false_positive": NORMAL}
        verdict = record.get("verdict")
        label = triage.get(verdict, record.get("label")) if isinstance(verdict, str) else record.get("label")
        system = system or self.system_of(window_id)
        if system and label in (ANOMALOUS, NORMAL):
            self.system(system).labels_received[label] += 1

    def apply_update(self, record: ModelUpdateRecord) -> None:
        """A model-updates record: a published or rolled-back version, a retrain outcome, or the next retrain."""
        state = self.system(record.target)
        if isinstance(record, RetrainSchedule):
            state.schedule = record
            return
        state.updates.append(record)
        del state.updates[:-MAX_VERSIONS]
        if isinstance(record, RetrainReport) and record.failed:
            state.last_failure = record

    def system_of(self, window_id: str) -> str | None:
        kept = self.windows.get(window_id)
        if kept is not None:
            return kept.system
        incident = self.incidents.get(self.window_incident.get(window_id, ""))
        return incident.system if incident is not None else None

    def select(self, wanted: IncidentFilter, offset: int = 0, limit: int = 50) -> tuple[list[Incident], int]:
        """One page of incidents, most recently seen first, and how many match in all."""
        matching = [incident for incident in self.incidents.values() if wanted.admits(incident)]
        matching.sort(key=lambda incident: incident.last_seen_ms, reverse=True)
        return matching[offset : offset + limit], len(matching)

    def windows_with_template(self, system: str, template: str) -> list[str]:
        """Window ids of the kept incidents of ``system`` whose kept lines hold ``template`` (bulk labels)."""
        found = []
        for incident in self.incidents.values():
            if incident.system != system:
                continue
            for window_id in incident.window_ids:
                kept = self.windows.get(window_id)
                if kept is not None and template in kept.templates:
                    found.append(window_id)
        return found

    def templates_of(self, system: str) -> list[TemplateStat]:
        """The system's templates, newest first."""
        return sorted(self.templates.get(system, {}).values(), key=lambda s: s.first_order, reverse=True)

    def system_names(self) -> list[str]:
        return sorted(self.systems)
