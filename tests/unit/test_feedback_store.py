"""Feedback parsing and the trainer's durable label store, on real SQLite files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stream.records import (
    FeedbackError,
    LabeledSequence,
    Window,
    WindowLabel,
    WindowLine,
    parse_feedback,
    sequence_id,
    window_id_for,
)
from trainer.feedback import store as store_module
from trainer.feedback.store import LabelStore, StoredExample

HDFS = (
    ("Receiving block <*> src: <*> dest: <*>", "Receiving block blk_1 src: /10.0.0.1:5 dest: /10.0.0.2:50010"),
    ("PacketResponder <*> for block <*> terminating", "PacketResponder 1 for block blk_1 terminating"),
    ("Received block <*> of size <*> from <*>", "Received block blk_1 of size 67108864 from /10.0.0.1"),
    ("writeBlock <*> received exception <*>", "writeBlock blk_1 received exception java.io.IOException"),
)
HOUR = 3_600_000


def make_window(block: str, offset: int, *, system: str = "hdfs", end_ms: int = 1_000) -> Window:
    lines = tuple(
        WindowLine("hdfs-logs", 0, offset + i, end_ms - 10 + i, i + 1, template, masked.replace("blk_1", block))
        for i, (template, masked) in enumerate(HDFS)
    )
    window_id = window_id_for(system, "session", block, lines)
    return Window(window_id, system, "session", block, end_ms - 10, end_ms, "gap", lines)


def feedback(**record: object) -> bytes:
    return orjson.dumps(record)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LabelStore]:
    with LabelStore(tmp_path / "labels.sqlite") as opened:
        yield opened


# --- parsing -----------------------------------------------------------------------------------------------------


def test_parse_label_and_alert() -> None:
    assert parse_feedback(feedback(kind="label", window_id="w1", label="anomalous", by="ana")) == WindowLabel(
        "w1", 1, "ana", "label"
    )
    assert parse_feedback(feedback(kind="label", window_id="w1", label="normal")) == WindowLabel("w1", 0, None)
    assert parse_feedback(feedback(kind="alert", window_id="w2", verdict="true_positive")) == WindowLabel(
        "w2", 1, None, "alert"
    )
    assert parse_feedback(feedback(kind="alert", window_id="w2", verdict="false_positive", by="bo")) == WindowLabel(
        "w2", 0, "bo", "alert"
    )


def test_parse_sequence_lines_and_templates() -> None:
    templates = [template for template, _ in HDFS]
    from_templates = parse_feedback(feedback(kind="sequence", system="hadoop", label="anomalous", templates=templates))
    from_lines = parse_feedback(feedback(kind="sequence", system="hadoop", label="normal", lines=templates))
    assert isinstance(from_templates, LabeledSequence)
    assert from_templates.templates == from_templates.masked == tuple(templates)
    assert from_templates.label == 1
    assert from_lines.label == 0
    # the id ignores the label (re-import is a repeat or a relabel) but not the system or the content
    assert from_templates.sequence_id == from_lines.sequence_id == sequence_id("hadoop", tuple(templates))
    assert len(from_templates.sequence_id) == 32
    assert from_templates.window_id == "seq-" + from_templates.sequence_id
    assert sequence_id("bgl", tuple(templates)) != from_templates.sequence_id
    assert sequence_id("hadoop", tuple(templates[:-1])) != from_templates.sequence_id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object but an array"),
        (b'"label"', "not a JSON object but a string"),
        (feedback(window_id="w", label="normal"), "missing field 'kind'"),
        (feedback(kind="vote", window_id="w"), "unknown kind 'vote'"),
        (feedback(kind="label", label="normal"), "missing field 'window_id'"),
        (feedback(kind="label", window_id=7, label="normal"), "field 'window_id' must be a string, not a number"),
        (feedback(kind="label", window_id=" ", label="normal"), "field 'window_id' is empty"),
        (feedback(kind="label", window_id="w"), "missing field 'label'"),
        (feedback(kind="label", window_id="w", label="Anomaly"), "field 'label' must be 'normal' or 'anomalous'"),
        (feedback(kind="label", window_id="w", label=True), "field 'label' must be a string, not a boolean"),
        (feedback(kind="label", window_id="w", label="normal", by=3), "field 'by' must be a string"),
        (feedback(kind="alert", window_id="w", verdict="maybe"), "field 'verdict' must be 'true_positive'"),
        (feedback(kind="alert", window_id="w"), "missing field 'verdict'"),
        (feedback(kind="sequence", label="normal", lines=["a"]), "missing field 'system'"),
        (feedback(kind="sequence", system="s", lines=["a"]), "missing field 'label'"),
        (feedback(kind="sequence", system="s", label="normal"), "exactly one of 'lines' or 'templates'"),
        (
            feedback(kind="sequence", system="s", label="normal", lines=["a"], templates=["a"]),
            "exactly one of 'lines' or 'templates'",
        ),
        (feedback(kind="sequence", system="s", label="normal", lines=[]), "field 'lines' is empty"),
        (feedback(kind="sequence", system="s", label="normal", templates="a"), "field 'templates' must be a list"),
        (feedback(kind="sequence", system="s", label="normal", lines=["a", None]), "item 1 must be a string, not null"),
    ],
)
def test_parse_errors_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(FeedbackError) as caught:
        parse_feedback(raw)
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


# --- the store ---------------------------------------------------------------------------------------------------


def test_window_then_label(store: LabelStore) -> None:
    window = make_window("blk_1", 0)
    assert store.add_window(window, now_ms=100)
    assert not store.add_window(window, now_ms=200)  # re-emitted after a stream crash: a repeat
    assert store.labeled("hdfs") == []
    assert store.add_label(WindowLabel(window.window_id, 1, "ana"), now_ms=300) == "labeled"
    assert store.labeled("hdfs") == [
        StoredExample(
            window.window_id,
            "hdfs",
            tuple(line.template for line in window.lines),
            tuple(line.masked for line in window.lines),
            1,
            300,
            False,
        )
    ]
    assert store.systems() == ["hdfs"]
    assert store.counts("hdfs") == {"total": 1, "anomalous": 1, "normal": 0, "unused": 1}


def test_label_then_window(store: LabelStore) -> None:
    window = make_window("blk_2", 10)
    assert store.add_label(WindowLabel(window.window_id, 0, source="alert"), now_ms=100) == "pending"
    assert store.pending_count() == 1
    assert store.labeled("hdfs") == []
    assert store.systems() == []
    assert store.add_window(window, now_ms=200)
    assert store.pending_count() == 0
    [example] = store.labeled("hdfs")
    assert (example.window_id, example.label, example.labeled_ms) == (window.window_id, 0, 100)
    assert store.expire_pending(now_ms=10 * HOUR, horizon_ms=HOUR) == []  # no longer pending


def test_same_label_twice_changes_nothing(store: LabelStore) -> None:
    window = make_window("blk_3", 20)
    store.add_window(window, now_ms=0)
    assert store.add_label(WindowLabel(window.window_id, 1), now_ms=100) == "labeled"
    store.mark_used("hdfs", [window.window_id], "v0001")
    assert store.add_label(WindowLabel(window.window_id, 1, "other"), now_ms=200) == "same"
    [example] = store.labeled("hdfs")
    assert (example.labeled_ms, example.used) == (100, True)


def test_relabel_later_wins_and_is_unused_again(store: LabelStore) -> None:
    first, second = make_window("blk_4", 30), make_window("blk_5", 40)
    for window in (first, second):
        store.add_window(window, now_ms=0)
    store.add_label(WindowLabel(first.window_id, 1), now_ms=100)
    store.add_label(WindowLabel(second.window_id, 0), now_ms=110)
    store.mark_used("hdfs", [first.window_id, second.window_id], "v0001")
    assert store.counts("hdfs")["unused"] == 0
    assert store.add_label(WindowLabel(first.window_id, 0, source="alert"), now_ms=200) == "relabeled"
    examples = store.labeled("hdfs")
    assert [(e.window_id, e.label, e.labeled_ms, e.used) for e in examples] == [
        (second.window_id, 0, 110, True),
        (first.window_id, 0, 200, False),  # a relabel is a new arrival
    ]
    assert store.counts("hdfs") == {"total": 2, "anomalous": 0, "normal": 2, "unused": 1}


def test_pending_relabel_keeps_the_later_label(store: LabelStore) -> None:
    window = make_window("blk_6", 50)
    assert store.add_label(WindowLabel(window.window_id, 1), now_ms=100) == "pending"
    assert store.add_label(WindowLabel(window.window_id, 0), now_ms=200) == "pending"
    assert store.pending_count() == 1
    store.add_window(window, now_ms=300)
    assert [(e.label, e.labeled_ms) for e in store.labeled("hdfs")] == [(0, 200)]


def test_pending_expiry_returns_the_label_once(store: LabelStore) -> None:
    old, young = WindowLabel("gone", 1, "ana"), WindowLabel("later", 0, None, "alert")
    store.add_label(old, now_ms=0)
    store.add_label(young, now_ms=HOUR)
    assert store.expire_pending(now_ms=HOUR, horizon_ms=HOUR) == []  # exactly the horizon: still waiting
    assert store.expire_pending(now_ms=HOUR + 1, horizon_ms=HOUR) == [old]
    assert store.expire_pending(now_ms=HOUR + 2, horizon_ms=HOUR) == []
    assert store.pending_count() == 1
    assert store.expire_pending(now_ms=3 * HOUR, horizon_ms=HOUR) == [young]
    assert store.pending_count() == 0


def test_window_expiry_keeps_labeled_windows(store: LabelStore) -> None:
    labeled, unlabeled, young = make_window("blk_7", 60), make_window("blk_8", 70), make_window("blk_9", 80)
    store.add_window(labeled, now_ms=0)
    store.add_window(unlabeled, now_ms=0)
    store.add_window(young, now_ms=2 * HOUR)
    store.add_label(WindowLabel(labeled.window_id, 1), now_ms=10)
    assert store.expire_windows(now_ms=2 * HOUR, horizon_ms=HOUR) == 1
    assert store.expire_windows(now_ms=2 * HOUR, horizon_ms=HOUR) == 0
    # the expired window's label now has nothing to attach to: it waits, pending
    assert store.add_label(WindowLabel(unlabeled.window_id, 0), now_ms=2 * HOUR) == "pending"
    assert store.add_label(WindowLabel(young.window_id, 0), now_ms=2 * HOUR) == "labeled"
    assert [e.window_id for e in store.labeled("hdfs")] == [labeled.window_id, young.window_id]


def test_mark_used_is_per_system_and_skips_labels_newer_than_the_run(store: LabelStore) -> None:
    hdfs, other = make_window("blk_10", 90), make_window("blk_11", 100, system="hadoop")
    late = make_window("blk_12", 110)
    for window in (hdfs, other, late):
        store.add_window(window, now_ms=0)
    store.add_label(WindowLabel(hdfs.window_id, 1), now_ms=100)
    store.add_label(WindowLabel(other.window_id, 0), now_ms=100)
    store.add_label(WindowLabel(late.window_id, 0), now_ms=500)  # arrived while the run trained
    ids = [hdfs.window_id, other.window_id, late.window_id, "unknown"]
    assert store.oldest_unused_ms("hdfs") == 100
    store.mark_used("hdfs", ids, "v0002", labeled_before_ms=400)
    assert store.oldest_unused_ms("hdfs") == 500  # only the late label still waits
    assert store.oldest_unused_ms("hadoop") == 100  # another system's labels are not touched
    assert store.oldest_unused_ms("bgl") is None
    assert [(e.window_id, e.used) for e in store.labeled("hdfs")] == [(hdfs.window_id, True), (late.window_id, False)]
    assert store.counts("hdfs")["unused"] == 1
    assert store.counts("hadoop") == {"total": 1, "anomalous": 0, "normal": 1, "unused": 1}
    assert store.systems() == ["hadoop", "hdfs"]
    assert store.counts("bgl") == {"total": 0, "anomalous": 0, "normal": 0, "unused": 0}


def test_sequences_are_labeled_windows_and_reimport_is_idempotent(store: LabelStore) -> None:
    templates = [template for template, _ in HDFS]
    seq = parse_feedback(feedback(kind="sequence", system="hadoop", label="anomalous", templates=templates))
    assert store.add_sequence(seq, now_ms=100) == "labeled"
    assert store.add_sequence(seq, now_ms=200) == "same"
    relabel = parse_feedback(feedback(kind="sequence", system="hadoop", label="normal", lines=templates))
    assert store.add_sequence(relabel, now_ms=300) == "relabeled"
    [example] = store.labeled("hadoop")
    assert example.window_id == "seq-" + seq.sequence_id
    assert (example.templates, example.masked, example.label, example.labeled_ms) == (
        tuple(templates),
        tuple(templates),
        0,
        300,
    )
    assert store.expire_windows(now_ms=10 * HOUR, horizon_ms=HOUR) == 0


def test_history_round_trip(store: LabelStore) -> None:
    assert store.history("hdfs") == []
    assert store.last_retrain_ms("hdfs") is None
    first = {"at_ms": 1_000, "version": "v0001", "f1": 0.91, "decision": "promoted", "counts": {"anomalous": 50}}
    second = {"at_ms": 5_000, "version": "v0002", "f1": 0.88, "decision": "rejected", "reason": "f1 fell"}
    store.record_retrain("hdfs", first)
    store.record_retrain("hdfs", second)
    store.record_retrain("hadoop", {"note": "no at_ms"})
    assert store.history("hdfs") == [first, second]
    assert store.last_retrain_ms("hdfs") == 5_000
    assert store.last_retrain_ms("hadoop") is None
    with pytest.raises(ValueError, match="at_ms"):
        store.record_retrain("hdfs", {"at_ms": "yesterday"})
    assert len(store.history("hdfs")) == 2


def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "labels.sqlite"
    used, relabeled, waiting = make_window("blk_20", 0), make_window("blk_21", 10), make_window("blk_22", 20)
    with LabelStore(path) as store:
        store.add_window(used, now_ms=0)
        store.add_window(relabeled, now_ms=0)
        store.add_label(WindowLabel(used.window_id, 1), now_ms=10)
        store.add_label(WindowLabel(relabeled.window_id, 1), now_ms=20)
        store.mark_used("hdfs", [used.window_id, relabeled.window_id], "v0001")
        store.add_label(WindowLabel(relabeled.window_id, 0), now_ms=30)
        store.add_label(WindowLabel(waiting.window_id, 1, "ana", "alert"), now_ms=40)
        store.record_retrain("hdfs", {"at_ms": 25, "version": "v0001"})
        before = store.labeled("hdfs")
    with LabelStore(path) as store:
        assert store.labeled("hdfs") == before
        assert [(e.window_id, e.used) for e in before] == [(used.window_id, True), (relabeled.window_id, False)]
        assert store.counts("hdfs") == {"total": 2, "anomalous": 1, "normal": 1, "unused": 1}
        assert store.pending_count() == 1
        assert store.history("hdfs") == [{"at_ms": 25, "version": "v0001"}]
        assert store.last_retrain_ms("hdfs") == 25
        assert store.add_window(waiting, now_ms=50)  # the pending label from before the restart attaches
        assert store.labeled("hdfs")[-1] == StoredExample(
            waiting.window_id,
            "hdfs",
            tuple(line.template for line in waiting.lines),
            tuple(line.masked for line in waiting.lines),
            1,
            40,
            False,
        )


def test_a_failed_write_leaves_nothing_behind(store: LabelStore) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.add_label(WindowLabel("w", 2), now_ms=0)  # the schema only takes 0 or 1
    assert store.pending_count() == 0
    assert store.add_label(WindowLabel("w", 1), now_ms=0) == "pending"


def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(RuntimeError, match="schema 99"):
        LabelStore(path)


def test_a_window_the_schema_refuses_raises_rather_than_vanishing(store: LabelStore) -> None:
    window = make_window("blk_30", 0)
    broken = Window(window.window_id, None, window.policy, window.key, 0, 1, "gap", window.lines)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        store.add_window(broken, now_ms=0)  # INSERT OR IGNORE dropped it without a word
    assert store.add_window(window, now_ms=0)
    assert not store.add_window(window, now_ms=1)  # a repeat is still a quiet no-op


def test_a_null_window_id_in_an_older_file_does_not_keep_pending_labels_forever(tmp_path: Path) -> None:
    # A file created before the ids were NOT NULL, holding a NULL-id window that an older trainer let in: it opens
    # as it is, and NOT IN (... NULL ...), never true, no longer hides every pending label.
    path = tmp_path / "labels.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(store_module.SCHEMA.replace("NOT NULL PRIMARY KEY", "PRIMARY KEY"))
        db.execute(f"PRAGMA user_version={store_module.SCHEMA_VERSION}")
        db.execute("INSERT INTO windows VALUES (NULL, 'hdfs', '[]', '[]', 0, 0)")
    db.close()
    with LabelStore(path) as store:
        assert store.add_label(WindowLabel("never-arrives", 1), now_ms=0) == "pending"
        assert store.pending_count() == 1
        assert store.expire_pending(now_ms=10 * HOUR, horizon_ms=HOUR) == [WindowLabel("never-arrives", 1)]
        assert store.pending_count() == 0
        assert store.expire_windows(now_ms=10 * HOUR, horizon_ms=HOUR) == 1  # the NULL-id window expires too


def test_a_new_file_refuses_a_null_window_id(store: LabelStore) -> None:
    for table, values in (
        ("windows", "(NULL, 'hdfs', '[]', '[]', 0, 0)"),
        ("labels", "(NULL, 1, NULL, 'x', 0, 1, NULL)"),
    ):
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"), store._write() as db:
            db.execute(f"INSERT INTO {table} VALUES {values}")
