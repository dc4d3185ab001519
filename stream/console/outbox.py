"""Labels on their way to the feedback topic, held for an undo window first.

The trainer takes a window's latest label and has no "unlabel": once a record is on the topic the only correction
is another label. So a click does not publish at once: it becomes a :class:`PendingLabel`, shown with an Undo
button for ``undo_s`` seconds; undone, nothing was ever sent; when the window passes, ``due`` hands it to the feeds
task, which produces its records. Stopping the console sends whatever is still pending (``drain``): a label the
operator saw accepted is not lost to a restart. Pure: the caller passes the clock.

Each window label is one record of kind ``alert`` (triage of an alerted window, see stream.records.feedback):

    {"kind": "alert", "window_id": ..., "verdict": "true_positive" | "false_positive", "by": "alice",
     "at_ms": 1765000000000, "alert_id": ..., "via": "console"}
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from stream.errors import RequestError
from stream.records import AlertTriage

REAL_PROBLEM = "true_positive"
FALSE_ALARM = "false_positive"
VERDICTS = {"real": REAL_PROBLEM, "false": FALSE_ALARM}  # the forms' words -> the feedback verdict
MAX_WINDOWS_PER_LABEL = 5_000  # a bulk label by template over many incidents stays one bounded batch


@dataclass(frozen=True, slots=True)
class PendingLabel:
    label_id: str
    by: str
    verdict: str
    window_ids: tuple[str, ...]
    what: str  # what the operator labeled, for the page ("incident 3f2a…", "template 'Receiving block <*>'")
    alert_id: str | None
    created_ms: int
    due_ms: int

    def records(self) -> list[dict[str, Any]]:
        return [
            AlertTriage(window_id, self.verdict, self.by, self.created_ms, self.alert_id).to_dict()
            for window_id in self.window_ids
        ]


class UndoError(RequestError):
    """The label is not pending (sent already, undone already, unknown) or not the asker's."""


class Outbox:
    def __init__(self, undo_s: float) -> None:
        if undo_s < 0:
            raise ValueError(f"undo_s must be >= 0, not {undo_s}")
        self.undo_ms = int(undo_s * 1000)
        self.pending: dict[str, PendingLabel] = {}

    def add(
        self, by: str, verdict: str, window_ids: list[str], what: str, now_ms: int, alert_id: str | None = None
    ) -> PendingLabel:
        if verdict not in (REAL_PROBLEM, FALSE_ALARM):
            raise ValueError(f"verdict must be {REAL_PROBLEM} or {FALSE_ALARM}, not {verdict!r}")
        distinct = tuple(dict.fromkeys(window_ids))
        if not distinct:
            raise ValueError(f"nothing to label: {what} holds no window the console knows")
        if len(distinct) > MAX_WINDOWS_PER_LABEL:
            raise ValueError(f"{what} holds {len(distinct)} windows; one label takes at most {MAX_WINDOWS_PER_LABEL}")
        label = PendingLabel(uuid.uuid4().hex, by, verdict, distinct, what, alert_id, now_ms, now_ms + self.undo_ms)
        self.pending[label.label_id] = label
        return label

    def undo(self, label_id: str, by: str) -> PendingLabel:
        label = self.pending.get(label_id)
        if label is None:
            raise UndoError("that label is no longer pending: it was sent or undone (label the window again instead)")
        if label.by != by:
            raise UndoError(f"that label is {label.by}'s; only they can undo it")
        return self.pending.pop(label_id)

    def due(self, now_ms: int) -> list[PendingLabel]:
        """Labels whose undo window has passed, oldest first, taken out of the outbox."""
        ready = sorted((label for label in self.pending.values() if label.due_ms <= now_ms), key=lambda p: p.due_ms)
        for label in ready:
            del self.pending[label.label_id]
        return ready

    def requeue(self, labels: list[PendingLabel]) -> None:
        """Labels whose send failed (the broker): back in, so the next flush tries again."""
        for label in labels:
            self.pending[label.label_id] = label

    def drain(self) -> list[PendingLabel]:
        ready = sorted(self.pending.values(), key=lambda p: p.due_ms)
        self.pending.clear()
        return ready

    def of_user(self, by: str) -> list[PendingLabel]:
        return sorted((p for p in self.pending.values() if p.by == by), key=lambda p: p.created_ms, reverse=True)
