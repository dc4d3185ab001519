"""The merge of a keyed system's mined lines back into source order, for count and event-time windows.

A system with ``mining: keyed`` is mined on every ``lines`` partition (``ingest_stage``), so its mined lines reach
one place from several parse partitions, interleaved however the workers ran. Session windows do not mind (a session
sorts its own lines); a count or event-time window is a run of the system's lines in order, so those systems are
merged first:

- after each batch, the ingest stage sends every ``lines`` partition a *progress mark* for each merged system whose
  lines the batch held: (input topic, partition, offset), every line up to it routed;
- each parse partition mines its lines, sends them on to the system's one ``sessions`` partition, and passes the
  mark on behind them;
- here, a line waits until every parse partition has passed a mark at or past its input offset: no line before it
  can still come. The lines so released are sorted by (offset, line index) and windowed in that order, which is the
  order one miner reading the input partition would window them in.

What it costs: one mark record per ``lines`` partition per ingest batch, a buffer of the lines between the slowest
and the fastest parse partition (checkpointed with the stage's head), one more hop for each line, and one
``sessions`` partition per system for its windowing. A parse partition that stops (its worker died) holds the
system's windows back until the group gives the partition to another worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.errors import StateError
from stream.records import RecordError
from stream.windowing import Windower, build
from stream.windowing.config import WindowPolicy

# a session row's input position (SESSION_ROW: topic, partition, offset, index)
_TOPIC, _PARTITION, _OFFSET, _INDEX = 2, 3, 4, 5


@dataclass
class SourceOrderMerge:
    """One system's lines from ``partitions`` parse partitions, released in input order as their marks pass them."""

    partitions: int
    # per input partition ("topic/partition"): the offset each parse partition has marked (-1: none yet; the lowest
    # is how far lines were released, since marks only grow), and the rows still waiting (``sessions`` rows)
    marks: dict[str, list[int]] = field(default_factory=dict)
    waiting: dict[str, list[list[Any]]] = field(default_factory=dict)

    def add(self, rows: list[list[Any]]) -> None:
        for row in rows:
            self.waiting.setdefault(f"{row[_TOPIC]}/{row[_PARTITION]}", []).append(row)

    def mark(self, parse_partition: int, topic: str, partition: int, upto: int) -> list[list[Any]]:
        """Records a parse partition's mark; returns the rows it releases, in input order."""
        if not 0 <= parse_partition < self.partitions:
            raise RecordError(
                f"a progress mark from lines partition {parse_partition}, but the merge knows {self.partitions}:"
                " the lines topic's partition count changed under a keyed system"
            )
        source = f"{topic}/{partition}"
        marks = self.marks.setdefault(source, [-1] * self.partitions)
        if upto <= marks[parse_partition]:
            return []  # a mark passed on again after a restart
        released = min(marks)
        marks[parse_partition] = upto
        low = min(marks)
        if low == released:
            return []  # another parse partition is still behind
        rows = self.waiting.get(source, [])
        ready = [row for row in rows if row[_OFFSET] <= low]
        if len(ready) == len(rows):
            self.waiting.pop(source, None)
        else:
            self.waiting[source] = [row for row in rows if row[_OFFSET] > low]
        ready.sort(key=lambda row: (row[_OFFSET], row[_INDEX]))
        return ready

    def waiting_count(self) -> int:
        return sum(len(rows) for rows in self.waiting.values())

    def snapshot(self) -> dict[str, Any]:
        return {"partitions": self.partitions, "marks": self.marks, "waiting": self.waiting}

    @classmethod
    def restore(cls, partitions: int, saved: dict[str, Any]) -> SourceOrderMerge:
        if saved.get("partitions") != partitions:
            raise StateError(
                f"the merge was saved with {saved.get('partitions')} lines partitions, the topic now has {partitions}"
            )
        try:
            marks = {str(k): [int(v) for v in marks] for k, marks in saved["marks"].items()}
            waiting = {str(k): [list(row) for row in rows] for k, rows in saved["waiting"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"the merge's saved state does not read: {exc!r}") from exc
        if any(len(m) != partitions for m in marks.values()):
            raise StateError(f"the merge's saved marks are not {partitions} a source")
        return cls(partitions, marks, waiting)


@dataclass
class MergedSystem:
    """A merged system's state in the session stage: its merge and the windower its released lines go to."""

    kind: str  # the window kind, as the windows it emits name it
    merge: SourceOrderMerge
    windower: Windower
    has_idle_timeout: bool

    @classmethod
    def create(
        cls, kind: str, policy: WindowPolicy, partitions: int, saved: dict[str, Any] | None = None
    ) -> MergedSystem:
        if saved is not None and not isinstance(saved.get("merge"), dict):
            raise StateError("a merged system's saved state has no merge")
        merge = SourceOrderMerge(partitions) if saved is None else SourceOrderMerge.restore(partitions, saved["merge"])
        windower = build(policy, None if saved is None else saved.get("windower"))
        return cls(kind, merge, windower, getattr(policy, "idle_timeout_ms", None) is not None)

    def snapshot(self) -> dict[str, Any]:
        return {"merge": self.merge.snapshot(), "windower": self.windower.snapshot()}
