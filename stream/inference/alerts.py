"""Alert deduplication: one alert per incident, with a lifecycle open -> ongoing -> resolved.

A model scores every window, so one fault that lasts ten minutes makes hundreds of anomalous verdicts. An operator
wants one alert for it, updates while it lasts, and a notice when it is over. Pure logic (no Kafka, no I/O, no clock
reads): the caller passes its wall clock as ``now_ms``, which keeps the book deterministic, replayable and testable.
The :class:`~stream.records.alerts.Alert` it keeps and returns is the wire record of the ``alerts`` topic.

    book = AlertBook(ttl_ms=600_000)
    alert = book.observe(system, templates, window_id=..., score=..., last_event_ms=..., now_ms=wall_ms)
    if alert is not None: publish(alert)          # "open", or an "ongoing" update
    for alert in book.expire(wall_ms): publish(alert)   # "resolved", each exactly once; call it every tick

Choices, and why:

* Identity. An incident is a system plus the *set* of anomalous templates that drove the score (the explanation's
  top templates): order and repeats do not matter, because occlusion weights reorder between windows of the same
  fault. ``alert_id`` is the hex blake2b (16 bytes) of the system and the sorted distinct templates joined with unit
  separators (``\\x1f``), like ``stream.records.window_id_for``, so it is stable across restarts and processes.
  No templates (no explanation) is allowed: every unexplained anomaly of a system is then one incident.
* Updates at powers of two. The first verdict returns an "open" alert (count 1). Later verdicts within the TTL
  update the incident silently and return an "ongoing" alert only when the count reaches 2, 4, 8, 16, ...: an
  incident of n verdicts publishes about log2(n) + 2 messages instead of n, yet the operator still sees it grow
  (each update at least doubles the count). Nothing is lost: the "resolved" alert carries the final count, scores
  and window ids.
* ... and at least once a TTL. A verdict also returns an "ongoing" alert when the incident's last returned alert
  is ``ttl_ms`` or more old (book clock), so a live incident (seen within the TTL) was always published within the
  last two TTLs. That bound is what lets a restarted worker rebuild its book from the alerts topic alone
  (``resume``): reading back two TTLs finds every incident that may still be live, however slowly it grows. It
  costs at most one extra message per incident and TTL, and tells the operator a slow incident is still there.
* TTL. An incident is live while ``now_ms - (now_ms of its last observe) < ttl_ms``; at exactly ``ttl_ms`` it is
  over. ``expire`` resolves such incidents; a verdict for an incident already past its TTL (``expire`` not called
  in between) resolves the old one and opens a new one. The clock is monotonic inside the book: a ``now_ms`` below
  the highest seen counts as the highest seen, so a wall clock stepped back (NTP) neither revives nor prolongs
  anything, and incidents stay ordered by last-seen time (``expire`` stops at the first live one).
* Restarts and hand-overs. ``resume`` takes an incident back from its latest published alert (read from the alerts
  topic by a restarted worker): it continues with the same alert_id and count instead of opening anew. Silent
  updates after that alert are unknown, so it is live for a full TTL from the resume: a live incident continues,
  a dead one resolves one TTL late instead of never. ``resolve_orphan`` queues the resolution of one whose latest
  alert is older than two TTLs (so certainly not live: its worker was down longer). ``hand_over`` forgets the
  incidents of systems another worker now serves, without resolving them: that worker resumes them.
* One way out for resolutions. ``observe`` returns at most one alert (the one for this verdict), so incidents it
  resolves (past TTL, or evicted by the bound below) are queued and returned by the next ``expire`` call, before
  the ones that call resolves itself. Call ``expire`` regularly (every tick) and every "resolved" alert is published
  from one place.
* Bounded memory. At most ``max_open`` incidents are open: opening one more resolves the least recently seen early
  (queued for ``expire``). The queue of resolutions awaiting ``expire`` is bounded by ``max_open`` too; if the caller
  never drains it, the oldest notices are dropped and counted in ``dropped`` (a metric, not a silent loss).
* Repeats. A window id already among the incident's last 20 (a window re-scored after a crash replay carries the
  same id) changes nothing and returns None, so a replay does not inflate counts.
* Snapshots. ``snapshot()`` is plain JSON types; ``restore()`` refuses a malformed one with
  :class:`AlertSnapshotError` (a StateError and a ValueError) and leaves the book as it was. A snapshot does not pin
  ``ttl_ms``/``max_open``: incidents simply age under the configured values, and extra ones over a smaller
  ``max_open`` are resolved early.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stream.errors import StateError
from stream.records.alerts import (
    ONGOING,
    OPEN,
    RESOLVED,
    Alert,
    alert_id_for,
    canonical_templates,
    check_text,
    is_int,
    is_score,
)

SNAPSHOT_VERSION = 1


class AlertSnapshotError(StateError, ValueError):
    """An alert book snapshot is malformed or from an unsupported version."""


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(slots=True)
class _Incident:
    alert: Alert  # status open or ongoing
    touched_ms: int  # the book's clock at its last observe (wall clock, not event time)
    published_ms: int  # the book's clock when it last returned this incident's alert (or its record's time)


class AlertBook:
    """Open incidents, keyed by alert_id, in least-recently-seen-first order. See the module docstring."""

    def __init__(self, ttl_ms: int, max_open: int = 10_000) -> None:
        _require(is_int(ttl_ms) and ttl_ms > 0, f"ttl_ms must be an integer > 0, got {ttl_ms!r}")
        _require(is_int(max_open) and max_open > 0, f"max_open must be an integer > 0, got {max_open!r}")
        self.ttl_ms = ttl_ms
        self.max_open = max_open
        self._open: OrderedDict[str, _Incident] = OrderedDict()
        self._resolved: deque[Alert] = deque()  # resolved by observe, awaiting the next expire()
        self._clock_ms: int | None = None
        self.dropped = 0  # resolutions dropped because expire() was not called for max_open of them

    def __len__(self) -> int:
        """Open incidents (for a gauge)."""
        return len(self._open)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._open

    def open_alerts(self) -> list[Alert]:
        """Current state of every open incident, least recently seen first (silent updates included)."""
        return [incident.alert for incident in self._open.values()]

    def observe(
        self,
        system: str,
        templates: Iterable[str],
        *,
        window_id: str,
        score: float,
        last_event_ms: int,
        now_ms: int,
    ) -> Alert | None:
        """Record one anomalous verdict; return the alert to publish now ("open", or "ongoing" at a power of two or
        a TTL after the last one).

        Keyword-only past ``templates``: two integer times side by side are too easy to swap.
        """
        canonical = canonical_templates(templates)  # once: templates may be a one-shot iterator
        alert_id = alert_id_for(system, canonical)
        check_text("window_id", window_id)
        _require(is_score(score), f"score must be a finite number, got {score!r}")
        _require(is_int(last_event_ms), f"last_event_ms must be an integer, got {last_event_ms!r}")
        now = self._advance(now_ms)
        incident = self._open.get(alert_id)
        if incident is not None and now - incident.touched_ms >= self.ttl_ms:
            self._queue_resolved(self._open.pop(alert_id).alert)
            incident = None
        if incident is None:
            return self._open_incident(system, canonical, window_id, score, last_event_ms, now)
        if window_id in incident.alert.window_ids:
            return None  # a repeat (replayed window): already counted
        incident.alert = incident.alert.advanced(window_id, score, last_event_ms)
        incident.touched_ms = now
        self._open.move_to_end(alert_id)
        if not _is_power_of_two(incident.alert.count) and now - incident.published_ms < self.ttl_ms:
            return None
        incident.published_ms = now
        return incident.alert

    def resume(self, alert: Alert, *, published_ms: int, now_ms: int) -> bool:
        """Take an incident back from its latest published alert (``published_ms``: that record's time); whether
        it was taken. One already open here is newer than any record of it, and a resolved one is over: neither is.
        """
        _require(isinstance(alert, Alert), f"alert must be an Alert, got {type(alert).__name__}")
        _require(is_int(published_ms), f"published_ms must be an integer, got {published_ms!r}")
        now = self._advance(now_ms)
        if alert.status == RESOLVED or alert.alert_id in self._open:
            return False
        # touched now: appended last, the order by touched_ms holds; published no later than now (clock skew)
        self._open[alert.alert_id] = _Incident(alert, now, min(published_ms, now))
        self._evict_over_bound()
        return True

    def resolve_orphan(self, alert: Alert) -> bool:
        """Queue the resolution of an incident whose latest record is too old to be live (its worker stopped for
        longer than two TTLs: a live incident is republished at least once a TTL); whether it was queued. One
        already open here, or resolved, is left alone."""
        _require(isinstance(alert, Alert), f"alert must be an Alert, got {type(alert).__name__}")
        if alert.status == RESOLVED or alert.alert_id in self._open:
            return False
        self._resolved.append(alert.resolved())
        return True

    def hand_over(self, keep_system: Callable[[str], bool]) -> list[Alert]:
        """Forget, without resolving, the open incidents of every system ``keep_system`` refuses; what it forgot.

        For a rebalance: their systems' windows now go to another worker, which resumes them from the alerts topic.
        Resolutions already queued stay queued: they were decided here and are published here.
        """
        gone = [alert_id for alert_id, incident in self._open.items() if not keep_system(incident.alert.system)]
        return [self._open.pop(alert_id).alert for alert_id in gone]

    def expire(self, now_ms: int) -> list[Alert]:
        """Resolved alerts to publish, each exactly once: those queued by observe, then incidents past the TTL."""
        now = self._advance(now_ms)
        out = list(self._resolved)
        self._resolved.clear()
        while self._open:
            alert_id, incident = next(iter(self._open.items()))
            if now - incident.touched_ms < self.ttl_ms:
                break  # ordered by touched_ms (the clock is monotonic): the rest are live too
            del self._open[alert_id]
            out.append(incident.alert.resolved())
        return out

    def _advance(self, now_ms: int) -> int:
        _require(is_int(now_ms), f"now_ms must be an integer, got {now_ms!r}")
        self._clock_ms = now_ms if self._clock_ms is None else max(self._clock_ms, now_ms)
        return self._clock_ms

    def _open_incident(
        self, system: str, templates: tuple[str, ...], window_id: str, score: float, event_ms: int, now: int
    ) -> Alert:
        alert = Alert.opened(system, templates, window_id, score, event_ms)
        self._open[alert.alert_id] = _Incident(alert, now, now)
        self._evict_over_bound()
        return alert

    def _evict_over_bound(self) -> None:
        while len(self._open) > self.max_open:
            _, incident = self._open.popitem(last=False)
            self._queue_resolved(incident.alert)

    def _queue_resolved(self, alert: Alert) -> None:
        if len(self._resolved) >= self.max_open:
            self._resolved.popleft()
            self.dropped += 1
        self._resolved.append(alert.resolved())

    def snapshot(self) -> dict[str, Any]:
        """The book as plain JSON types, for a checkpoint; ``restore`` continues exactly from here."""
        return {
            "version": SNAPSHOT_VERSION,
            "clock_ms": self._clock_ms,
            "open": [
                {"alert": i.alert.to_dict(), "touched_ms": i.touched_ms, "published_ms": i.published_ms}
                for i in self._open.values()
            ],
            "resolved": [alert.to_dict() for alert in self._resolved],
            "dropped": self.dropped,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the book's state with ``snapshot``'s; AlertSnapshotError (book unchanged) if it is malformed."""
        try:
            clock_ms, opened, resolved, dropped = _read_snapshot(snapshot)
        except (ValueError, KeyError, TypeError) as error:
            raise AlertSnapshotError(f"alert book snapshot cannot be restored: {error}") from error
        self._clock_ms = clock_ms
        self._open = OrderedDict((incident.alert.alert_id, incident) for incident in opened)
        self._resolved = deque()
        self.dropped = dropped
        for alert in resolved:
            self._queue_resolved(alert)
        self._evict_over_bound()


def _read_snapshot(snapshot: object) -> tuple[int | None, list[_Incident], list[Alert], int]:
    """Parse and check a snapshot without touching any book, so a failed restore changes nothing."""
    if not isinstance(snapshot, dict):
        raise ValueError(f"must be a mapping, got {type(snapshot).__name__}")
    version = snapshot.get("version")
    _require(version == SNAPSHOT_VERSION, f"version {version!r} is not supported (expected {SNAPSHOT_VERSION})")
    clock_ms, dropped = snapshot["clock_ms"], snapshot["dropped"]
    _require(clock_ms is None or is_int(clock_ms), f"clock_ms must be an integer or null, got {clock_ms!r}")
    _require(is_int(dropped) and dropped >= 0, f"dropped must be an integer >= 0, got {dropped!r}")
    opened = [_read_incident(entry) for entry in snapshot["open"]]
    resolved = [Alert.from_dict(entry) for entry in snapshot["resolved"]]
    _require(all(alert.status == RESOLVED for alert in resolved), "queued alerts must be resolved")
    ids = [incident.alert.alert_id for incident in opened]
    _require(len(set(ids)) == len(ids), "an incident is open twice")
    touched = [incident.touched_ms for incident in opened]
    _require(touched == sorted(touched), "open incidents must be ordered by touched_ms")
    _require(not touched or (clock_ms is not None and touched[-1] <= clock_ms), "an incident is touched after clock")
    return clock_ms, opened, resolved, dropped


def _read_incident(entry: object) -> _Incident:
    if not isinstance(entry, dict):
        raise ValueError(f"an open incident must be a mapping, got {type(entry).__name__}")
    alert, touched_ms = Alert.from_dict(entry["alert"]), entry["touched_ms"]
    # published_ms came later than version 1: an older snapshot's incidents count as published when last touched
    published_ms = entry.get("published_ms", touched_ms)
    _require(alert.status in (OPEN, ONGOING), f"an open incident has status {alert.status!r}")
    _require(is_int(touched_ms), f"touched_ms must be an integer, got {touched_ms!r}")
    if not is_int(published_ms):  # an if, not _require: it tells the type checker what published_ms is
        raise ValueError(f"published_ms must be an integer, got {published_ms!r}")
    return _Incident(alert, touched_ms, published_ms)
