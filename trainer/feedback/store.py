"""The trainer's labeled windows, kept durably per target system: :class:`LabelStore`.

The trainer consumes ``windows`` (what the stream served) and ``feedback`` (labels for them) and must not lose a
label a person gave: after a restart it keeps the labeled windows, the labels still waiting for their window, which
labels already trained an adapter, and the retrain history. SQLite (stdlib ``sqlite3``) holds all that because it is
durable across restarts, transactional (a window and the label that completes it land together or not at all), one
file on the trainer's persistent volume, and no extra dependency or service. WAL mode lets a reader (an operator's
``sqlite3`` shell) look while the trainer writes; ``synchronous=FULL`` because the caller commits its Kafka offsets
after a write returns, so a returned write must survive a power cut.

Tables:

* ``windows`` -- one row per window (stream window or imported sequence): system, templates, masked lines (JSON
  arrays), ``end_ms`` and ``stored_ms`` (when the store received it).
* ``labels`` -- one row per labeled window_id. A label whose window_id is not in ``windows`` is *pending*; it becomes
  a labeled window as soon as the window arrives, with no second write. ``used_version`` is the adapter version the
  label trained (NULL: unused).
* ``retrains`` -- the retrain service's history, one JSON entry per row.

Rules: the *later* label of a window wins (a relabel replaces the label, moves it to the end of the arrival order and
makes it unused again); an identical label again changes nothing. Windows and pending labels expire by the time the
store received them (``stored_ms``/``labeled_ms``, the caller's wall clock), not by event time, so replayed old logs
still wait a full horizon for their labels. Labeled windows never expire.

All methods take one lock and run in one transaction per public write, so the store can be called from worker
threads (``asyncio.to_thread``) but never runs two writes interleaved.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from stream.records import LabeledSequence, Window, WindowLabel

SCHEMA_VERSION = 1
# NOT NULL on the ids: SQLite lets a TEXT PRIMARY KEY be NULL. Files created before it was added lack it and are
# opened as they are (SQLite cannot add a constraint to a column); decoding refuses a NULL id before it gets here, and
# the queries use NOT EXISTS, which a NULL id cannot blind the way it blinds NOT IN.
SCHEMA = """
CREATE TABLE windows (
    window_id TEXT NOT NULL PRIMARY KEY,
    system TEXT NOT NULL,
    templates TEXT NOT NULL,
    masked TEXT NOT NULL,
    end_ms INTEGER NOT NULL,
    stored_ms INTEGER NOT NULL
);
CREATE INDEX windows_system ON windows (system);
CREATE INDEX windows_stored ON windows (stored_ms);
CREATE TABLE labels (
    window_id TEXT NOT NULL PRIMARY KEY,
    label INTEGER NOT NULL CHECK (label IN (0, 1)),
    by TEXT,
    source TEXT NOT NULL,
    labeled_ms INTEGER NOT NULL,
    arrival INTEGER NOT NULL UNIQUE,
    used_version TEXT
);
CREATE TABLE retrains (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    system TEXT NOT NULL,
    at_ms INTEGER,
    entry TEXT NOT NULL
);
CREATE INDEX retrains_system ON retrains (system, seq);
"""

# add_label / add_sequence outcomes
LABELED = "labeled"
RELABELED = "relabeled"
SAME = "same"
PENDING = "pending"


@dataclass(frozen=True, slots=True)
class StoredExample:
    """One labeled window, as the retrain service reads it."""

    window_id: str
    system: str
    templates: tuple[str, ...]
    masked: tuple[str, ...]
    label: int
    labeled_ms: int  # when its (latest) label arrived
    used: bool  # whether this label already trained an adapter
    # which write of the label this is (a relabel gets a new one): mark_read marks exactly the labels a run read.
    # Store bookkeeping, not part of the example, so two reads of the same labels compare equal.
    arrival: int = field(default=0, compare=False)


class LabelStore:
    """Labeled windows per system, pending labels and retrain history, in one SQLite file (see the module doc)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; _write opens and commits each one explicitly.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._migrate(path)
        except BaseException:
            self._db.close()
            raise

    def _migrate(self, path: Path) -> None:
        """Create the tables in a new file; refuse a file from a newer trainer rather than misread it. The version is
        read inside the write transaction, so two trainers opening a new file at once create the tables once."""
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version != 0:
                raise RuntimeError(f"{path}: label store schema {version}, this trainer knows {SCHEMA_VERSION}")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, under the lock; BEGIN IMMEDIATE so a second process writing the file waits, not fails."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # also when COMMIT itself failed (disk full): never leave one open
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- writes -----------------------------------------------------------------------------------------------

    def add_window(self, window: Window, now_ms: int) -> bool:
        """Keep a served window (True if new; a repeat, e.g. re-emitted after a stream crash, is ignored). A label
        that was pending for it makes it a labeled window now: the label row is already there."""
        templates = tuple(line.template for line in window.lines)
        masked = tuple(line.masked for line in window.lines)
        with self._write() as db:
            return insert_window(db, window.window_id, window.system, templates, masked, window.end_ms, now_ms)

    def add_label(self, label: WindowLabel, now_ms: int) -> str:
        """Apply a label: ``labeled``, ``relabeled`` (the later label wins), ``same`` or ``pending`` (window not
        seen yet: kept until it arrives or :meth:`expire_pending` drops it)."""
        with self._write() as db:
            known = db.execute("SELECT 1 FROM windows WHERE window_id = ?", (label.window_id,)).fetchone()
            return apply_label(db, label, now_ms, window_known=known is not None)

    def add_sequence(self, seq: LabeledSequence, now_ms: int) -> str:
        """Keep an imported sequence as a labeled window ``seq-<sequence_id>``; outcomes as :meth:`add_label`
        (never ``pending``). Its ``end_ms`` is ``now_ms``: an import has no event times."""
        with self._write() as db:
            insert_window(db, seq.window_id, seq.system, seq.templates, seq.masked, now_ms, now_ms)
            label = WindowLabel(seq.window_id, seq.label, seq.by, "sequence")
            return apply_label(db, label, now_ms, window_known=True)

    def expire_pending(self, now_ms: int, horizon_ms: int) -> list[WindowLabel]:
        """Drop and return the pending labels that waited longer than ``horizon_ms`` for their window, oldest first
        (the caller dead-letters them: unknown window_id after the retention horizon)."""
        with self._write() as db:
            rows = db.execute(
                "SELECT window_id, label, by, source FROM labels"
                " WHERE labeled_ms < ? AND NOT EXISTS (SELECT 1 FROM windows w WHERE w.window_id = labels.window_id)"
                " ORDER BY arrival",
                (now_ms - horizon_ms,),
            ).fetchall()
            db.executemany("DELETE FROM labels WHERE window_id = ?", [(row[0],) for row in rows])
        return [WindowLabel(*row) for row in rows]

    def expire_windows(self, now_ms: int, horizon_ms: int) -> int:
        """Delete unlabeled windows stored longer than ``horizon_ms`` ago (nobody labeled them in time); labeled
        windows stay forever. Returns how many were deleted."""
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM windows WHERE stored_ms < ?"
                " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.window_id = windows.window_id)",
                (now_ms - horizon_ms,),
            )
            return cursor.rowcount

    def mark_used(
        self, system: str, window_ids: Iterable[str], version: str, *, labeled_before_ms: int | None = None
    ) -> None:
        """Record that these windows' labels trained adapter ``version``.

        A training run reads :meth:`labeled`, trains for minutes, then marks; a relabel that arrived meanwhile was
        not trained on. Pass ``labeled_before_ms`` (the ``now_ms`` at which the run read its examples) and labels
        that arrived at or after it stay unused. A caller that stamps labels with a time taken before it writes them
        (a batch) can write one with an earlier stamp after the read: the retrain service uses :meth:`mark_read`."""
        limit = labeled_before_ms if labeled_before_ms is not None else 2**63 - 1
        with self._write() as db:
            db.executemany(
                "UPDATE labels SET used_version = ? WHERE window_id = ? AND labeled_ms < ?"
                " AND window_id IN (SELECT window_id FROM windows WHERE system = ?)",
                [(version, window_id, limit, system) for window_id in window_ids],
            )

    def mark_read(self, system: str, examples: Iterable[StoredExample], version: str) -> None:
        """Record that exactly these labels, as :meth:`labeled` returned them, trained adapter ``version``: a label
        written after that read (a relabel, which gets a new ``arrival``) stays unused, whatever its timestamp."""
        with self._write() as db:
            db.executemany(
                "UPDATE labels SET used_version = ? WHERE window_id = ? AND arrival = ?"
                " AND window_id IN (SELECT window_id FROM windows WHERE system = ?)",
                [(version, e.window_id, e.arrival, system) for e in examples],
            )

    def record_retrain(self, system: str, entry: dict[str, Any]) -> None:
        """Append one entry (JSON-serializable; ``at_ms``, when given, an int) to the system's retrain history."""
        at_ms = entry.get("at_ms")
        if at_ms is not None and (isinstance(at_ms, bool) or not isinstance(at_ms, int)):
            raise ValueError(f"retrain entry 'at_ms' must be an int, not {at_ms!r}")
        text = orjson.dumps(entry).decode()
        with self._write() as db:
            db.execute("INSERT INTO retrains (system, at_ms, entry) VALUES (?, ?, ?)", (system, at_ms, text))

    # --- reads ------------------------------------------------------------------------------------------------

    def labeled(self, system: str) -> list[StoredExample]:
        """Every labeled window of ``system``, in label arrival order (oldest first; a relabel counts as new)."""
        rows = self._read(
            "SELECT w.window_id, w.system, w.templates, w.masked, l.label, l.labeled_ms, l.used_version IS NOT NULL,"
            " l.arrival FROM labels l JOIN windows w USING (window_id) WHERE w.system = ? ORDER BY l.arrival",
            (system,),
        )
        return [
            StoredExample(
                window_id,
                system_,
                tuple(orjson.loads(templates)),
                tuple(orjson.loads(masked)),
                label,
                ms,
                bool(used),
                arrival,
            )
            for window_id, system_, templates, masked, label, ms, used, arrival in rows
        ]

    def counts(self, system: str) -> dict[str, int]:
        """``total``, ``anomalous``, ``normal`` and ``unused`` labeled windows of ``system``. Pending labels have no
        system yet (their window is unknown): see :meth:`pending_count`."""
        total, anomalous, unused = self._read(
            "SELECT COUNT(*), COALESCE(SUM(l.label), 0), COALESCE(SUM(l.used_version IS NULL), 0)"
            " FROM labels l JOIN windows w USING (window_id) WHERE w.system = ?",
            (system,),
        )[0]
        return {"total": total, "anomalous": anomalous, "normal": total - anomalous, "unused": unused}

    def window_systems(self) -> list[str]:
        """Every system with a stored window, labeled or not, sorted (from the ``system`` index)."""
        return [row[0] for row in self._read("SELECT DISTINCT system FROM windows ORDER BY system")]

    def unlabeled_count(self, system: str, up_to: int) -> int:
        """How many stored windows of ``system`` carry no label, counted only up to ``up_to``: the trainer asks
        every few seconds whether a system has enough, and a week of traffic must not be scanned each time."""
        return self._read(
            "SELECT COUNT(*) FROM (SELECT 1 FROM windows w WHERE system = ?"
            " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.window_id = w.window_id) LIMIT ?)",
            (system, up_to),
        )[0][0]

    def unlabeled(self, system: str, limit: int) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """The ``limit`` most recently stored unlabeled windows of ``system``, oldest first: (templates, masked)."""
        rows = self._read(
            "SELECT templates, masked FROM (SELECT rowid, templates, masked FROM windows w WHERE system = ?"
            " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.window_id = w.window_id)"
            " ORDER BY stored_ms DESC, rowid DESC LIMIT ?) ORDER BY rowid",
            (system, limit),
        )
        return [(tuple(orjson.loads(templates)), tuple(orjson.loads(masked))) for templates, masked in rows]

    def oldest_unused_ms(self, system: str) -> int | None:
        """When the oldest label of ``system`` that no training run has read arrived; None when all are used."""
        return self._read(
            "SELECT MIN(l.labeled_ms) FROM labels l JOIN windows w USING (window_id)"
            " WHERE w.system = ? AND l.used_version IS NULL",
            (system,),
        )[0][0]

    def pending_count(self) -> int:
        """Labels still waiting for their window, all systems together."""
        return self._read(
            "SELECT COUNT(*) FROM labels l WHERE NOT EXISTS (SELECT 1 FROM windows w WHERE w.window_id = l.window_id)"
        )[0][0]

    def systems(self) -> list[str]:
        """The systems that have at least one labeled window, sorted."""
        rows = self._read("SELECT DISTINCT w.system FROM windows w JOIN labels l USING (window_id) ORDER BY w.system")
        return [row[0] for row in rows]

    def history(self, system: str) -> list[dict[str, Any]]:
        """The system's retrain entries, oldest first."""
        rows = self._read("SELECT entry FROM retrains WHERE system = ? ORDER BY seq", (system,))
        return [orjson.loads(row[0]) for row in rows]

    def last_retrain(self, system: str) -> dict[str, Any] | None:
        """The system's latest retrain entry; None when it has none."""
        rows = self._read("SELECT entry FROM retrains WHERE system = ? ORDER BY seq DESC LIMIT 1", (system,))
        return orjson.loads(rows[0][0]) if rows else None

    def last_retrain_ms(self, system: str) -> int | None:
        """The latest ``at_ms`` in the system's history; None when no entry has one."""
        return self._read("SELECT MAX(at_ms) FROM retrains WHERE system = ?", (system,))[0][0]


def insert_window(
    db: sqlite3.Connection,
    window_id: str,
    system: str,
    templates: tuple[str, ...],
    masked: tuple[str, ...],
    end_ms: int,
    now_ms: int,
) -> bool:
    # ON CONFLICT names the one conflict that is a repeat (the same window again); INSERT OR IGNORE would also
    # swallow a NOT NULL or CHECK violation, losing a window without a word.
    cursor = db.execute(
        "INSERT INTO windows (window_id, system, templates, masked, end_ms, stored_ms)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (window_id) DO NOTHING",
        (window_id, system, orjson.dumps(templates).decode(), orjson.dumps(masked).decode(), end_ms, now_ms),
    )
    return cursor.rowcount == 1


def apply_label(db: sqlite3.Connection, label: WindowLabel, now_ms: int, *, window_known: bool) -> str:
    """The later label wins: a different label replaces the old one, restarts its clock, moves it to the end of the
    arrival order and clears ``used_version``. An identical label changes nothing (a replayed feedback record)."""
    row = db.execute("SELECT label FROM labels WHERE window_id = ?", (label.window_id,)).fetchone()
    if row is not None and row[0] == label.label:
        return SAME if window_known else PENDING
    db.execute(
        "INSERT OR REPLACE INTO labels (window_id, label, by, source, labeled_ms, arrival, used_version)"
        " VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(arrival), 0) + 1 FROM labels), NULL)",
        (label.window_id, label.label, label.by, label.source, now_ms),
    )
    if not window_known:
        return PENDING
    return LABELED if row is None else RELABELED
