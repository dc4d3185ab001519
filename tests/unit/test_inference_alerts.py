"""Alert deduplication: one alert per incident, updates at powers of two, resolved exactly once, bounded, resumable."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from stream.errors import StateError
from stream.inference.alerts import AlertBook, AlertSnapshotError
from stream.records.alerts import MAX_WINDOW_IDS, ONGOING, OPEN, RESOLVED, Alert, alert_id_for

TTL = 1_000
DISK = ("disk <*> failed", "raid degraded")
NET = ("link <*> down",)


def observe(book: AlertBook, n: int, *, system: str = "bgl", templates: tuple[str, ...] = DISK, now: int = 0):
    """The n-th verdict of an incident: window id w<n>, score n/100, event time 10_000+n."""
    return book.observe(system, templates, window_id=f"w{n}", score=n / 100, last_event_ms=10_000 + n, now_ms=now)


def test_first_verdict_opens_an_alert() -> None:
    alert = AlertBook(TTL).observe("bgl", DISK, window_id="w1", score=0.9, last_event_ms=5_000, now_ms=100)
    assert alert == Alert(
        alert_id=alert_id_for("bgl", DISK),
        system="bgl",
        templates=tuple(sorted(DISK)),
        status=OPEN,
        count=1,
        first_seen_ms=5_000,
        last_seen_ms=5_000,
        window_ids=("w1",),
        max_score=0.9,
        last_score=0.9,
    )


def test_updates_are_emitted_only_at_powers_of_two() -> None:
    book = AlertBook(TTL)
    emitted = [(n, observe(book, n, now=n)) for n in range(1, 21)]
    published = [(n, alert.status, alert.count) for n, alert in emitted if alert is not None]
    assert published == [(1, OPEN, 1), (2, ONGOING, 2), (4, ONGOING, 4), (8, ONGOING, 8), (16, ONGOING, 16)]
    assert len(book) == 1  # one incident, not twenty


def test_silent_updates_still_count_and_show_in_the_resolution() -> None:
    book = AlertBook(TTL)
    for n in range(1, 26):
        observe(book, n, now=n)
    book.observe("bgl", DISK, window_id="w-low", score=0.01, last_event_ms=10_003, now_ms=30)  # late, low
    (resolved,) = book.expire(30 + TTL)
    assert (resolved.status, resolved.count) == (RESOLVED, 26)
    assert (resolved.first_seen_ms, resolved.last_seen_ms) == (10_001, 10_025)  # a late window moves neither
    assert (resolved.max_score, resolved.last_score) == (0.25, 0.01)
    assert resolved.window_ids == (*(f"w{n}" for n in range(7, 26)), "w-low")
    assert len(resolved.window_ids) == MAX_WINDOW_IDS


def test_identity_is_the_system_and_the_set_of_templates() -> None:
    expected = hashlib.blake2b(b"bgl\x1fdisk <*> failed\x1fraid degraded", digest_size=16).hexdigest()
    assert alert_id_for("bgl", ("raid degraded", "disk <*> failed")) == expected
    assert alert_id_for("bgl", ["disk <*> failed", "raid degraded", "disk <*> failed"]) == expected
    book = AlertBook(TTL)
    first = book.observe("bgl", DISK, window_id="w1", score=0.9, last_event_ms=1, now_ms=0)
    again = book.observe("bgl", DISK[::-1] + DISK[:1], window_id="w2", score=0.8, last_event_ms=2, now_ms=1)
    assert first is not None and first.alert_id == expected
    assert again is not None and (again.alert_id, again.status, again.count) == (expected, ONGOING, 2)


@pytest.mark.parametrize(
    ("system", "templates"),
    [("hdfs", DISK), ("bgl", NET), ("bgl", DISK[:1]), ("bgl", (*DISK, "fan <*> stopped")), ("bgl", ())],
)
def test_a_different_system_or_template_set_is_a_different_incident(system: str, templates: tuple[str, ...]) -> None:
    book = AlertBook(TTL)
    first = observe(book, 1)
    other = observe(book, 2, system=system, templates=templates)
    assert first is not None and other is not None
    assert other.status == OPEN and other.count == 1 and other.alert_id != first.alert_id
    assert len(book) == 2


def test_the_ttl_runs_from_the_last_verdict_not_the_first() -> None:
    book = AlertBook(TTL)
    for n, now in enumerate((0, 900, 1_800, 2_700), start=1):
        observe(book, n, now=now)
    assert book.expire(2_700 + TTL - 1) == []
    assert [alert.count for alert in book.open_alerts()] == [4]


def test_expiry_resolves_exactly_once_and_a_later_verdict_reopens() -> None:
    book = AlertBook(TTL)
    opened = observe(book, 1, now=0)
    observe(book, 2, now=500)
    assert book.expire(500 + TTL - 1) == []  # 1 ms short of the TTL: still live
    (resolved,) = book.expire(500 + TTL)  # exactly the TTL: over
    assert opened is not None and resolved.alert_id == opened.alert_id
    assert (resolved.status, resolved.count, resolved.window_ids) == (RESOLVED, 2, ("w1", "w2"))
    assert book.expire(10 * TTL) == [] and len(book) == 0  # published once, then forgotten
    reopened = observe(book, 3, now=10 * TTL)
    assert reopened is not None and (reopened.alert_id, reopened.status, reopened.count) == (opened.alert_id, OPEN, 1)


def test_a_verdict_past_the_ttl_reopens_and_the_old_incident_resolves_at_the_next_expire() -> None:
    book = AlertBook(TTL)
    observe(book, 1, now=0)
    observe(book, 2, now=1)
    reopened = observe(book, 3, now=1 + TTL)  # expire() was not called in between
    assert reopened is not None and (reopened.status, reopened.count, reopened.window_ids) == (OPEN, 1, ("w3",))
    (resolved,) = book.expire(1 + TTL)
    assert (resolved.status, resolved.count, resolved.window_ids) == (RESOLVED, 2, ("w1", "w2"))
    assert [alert.count for alert in book.open_alerts()] == [1]


def test_a_wall_clock_stepping_back_neither_revives_nor_prolongs() -> None:
    book = AlertBook(TTL)
    observe(book, 1, now=5_000)
    assert book.expire(100) == []  # back in time: counts as 5_000
    observe(book, 2, now=100)  # counts as 5_000 too, not as 100
    assert book.expire(100 + TTL) == []  # the incident was seen at 5_000, not at 100
    assert book.expire(5_000 + TTL - 1) == []
    assert [alert.count for alert in book.expire(5_000 + TTL)] == [2]


def test_a_repeated_window_is_not_counted_twice() -> None:
    book = AlertBook(TTL)
    observe(book, 1)
    assert observe(book, 1, now=10) is None  # the same window replayed
    assert observe(book, 2, now=20).count == 2


def test_a_slow_incident_is_published_again_a_ttl_after_its_last_alert() -> None:
    """Between powers of two a live incident still shows up at least once a TTL: what a restarted worker reads."""
    book = AlertBook(TTL)
    emitted = [(n, observe(book, n, now=(n - 1) * 900)) for n in range(1, 9)]  # every 900 ms: live throughout
    assert [(n, alert.count) for n, alert in emitted if alert is not None] == [(1, 1), (2, 2), (4, 4), (6, 6), (8, 8)]
    assert len(book) == 1


def test_resume_continues_an_incident_from_its_latest_published_alert() -> None:
    before = AlertBook(TTL)
    observe(before, 1, now=0)
    published = observe(before, 2, now=10)
    observe(before, 3, now=20)  # silent: unknown to a worker that reads the alerts topic
    assert published is not None and published.count == 2

    after = AlertBook(TTL)  # a restarted worker
    assert after.resume(published, published_ms=10, now_ms=5_000)
    assert not after.resume(published, published_ms=10, now_ms=5_000)  # already open here: this book is newer
    assert not after.resume(published.resolved(), published_ms=10, now_ms=5_000)  # over
    assert after.open_alerts() == [published]
    assert observe(after, 2, now=5_001) is None  # a replayed window it had published: not counted twice
    continued = observe(after, 3, now=5_002)  # count 3, a TTL after the last alert: published
    assert continued is not None and (continued.alert_id, continued.status) == (published.alert_id, ONGOING)
    assert (continued.count, continued.window_ids) == (3, ("w1", "w2", "w3"))


def test_a_resumed_incident_is_live_for_a_full_ttl_from_the_resume() -> None:
    """Silent updates after its last alert are unknown: a dead incident resolves a TTL late rather than never."""
    book = AlertBook(TTL)
    alert = AlertBook(TTL).observe("bgl", DISK, window_id="w1", score=0.9, last_event_ms=1, now_ms=0)
    assert alert is not None
    book.resume(alert, published_ms=0, now_ms=3 * TTL)
    assert book.expire(4 * TTL - 1) == []
    assert [(a.alert_id, a.status, a.count) for a in book.expire(4 * TTL)] == [(alert.alert_id, RESOLVED, 1)]


def test_an_orphaned_incident_is_resolved_at_the_next_expire_once() -> None:
    alert = AlertBook(TTL).observe("bgl", DISK, window_id="w1", score=0.9, last_event_ms=1, now_ms=0)
    assert alert is not None
    book = AlertBook(TTL)
    assert book.resolve_orphan(alert)
    assert not book.resolve_orphan(alert.resolved())  # already over
    assert [(a.alert_id, a.status, a.count) for a in book.expire(1)] == [(alert.alert_id, RESOLVED, 1)]
    assert book.expire(10 * TTL) == [] and book.open_alerts() == []
    live = AlertBook(TTL)
    live.resume(alert, published_ms=0, now_ms=0)
    assert not live.resolve_orphan(alert)  # open here: this book knows better


def test_hand_over_forgets_other_systems_incidents_without_resolving_them() -> None:
    book = AlertBook(TTL)
    observe(book, 1, system="bgl")
    observe(book, 1, system="hdfs")
    gone = book.hand_over(keep_system=lambda system: system == "bgl")
    assert [alert.system for alert in gone] == ["hdfs"]
    assert [alert.system for alert in book.open_alerts()] == ["bgl"]
    assert [alert.system for alert in book.expire(10 * TTL)] == ["bgl"]  # no resolution for hdfs: its owner's


def test_a_snapshot_from_before_published_ms_restores() -> None:
    book = AlertBook(TTL)
    observe(book, 1, now=7)
    old = book.snapshot()
    for entry in old["open"]:
        del entry["published_ms"]
    resumed = AlertBook(TTL)
    resumed.restore(old)
    assert resumed.snapshot() == book.snapshot()  # published when last touched


def test_at_most_max_open_incidents_and_the_least_recently_seen_is_resolved_first() -> None:
    book = AlertBook(TTL, max_open=3)
    for i in range(3):
        observe(book, 1, templates=(f"t{i}",), now=i)
    observe(book, 2, templates=("t0",), now=3)  # t0 seen again: t1 is now the least recently seen
    opened = observe(book, 1, templates=("t3",), now=4)
    assert opened is not None and opened.status == OPEN
    assert len(book) == 3
    assert [alert.templates for alert in book.open_alerts()] == [("t2",), ("t0",), ("t3",)]
    (evicted,) = book.expire(4)  # resolved early, published by the next expire()
    assert (evicted.templates, evicted.status) == (("t1",), RESOLVED)
    assert book.expire(4) == []


def test_memory_stays_bounded_under_many_incidents() -> None:
    book = AlertBook(TTL, max_open=10)
    for i in range(1_000):
        observe(book, 1, templates=(f"t{i}",), now=i // 100)  # all within the TTL
        assert len(book) <= 10
    # The queue of early resolutions is bounded too: expire() was never called, so only the newest 10 remain.
    resolved = book.expire(10)
    assert [alert.templates[0] for alert in resolved] == [f"t{i}" for i in range(980, 990)]
    assert book.dropped == 980
    assert len(book.snapshot()["open"]) == 10


SCRIPT: list[tuple[str, Any]] = [
    ("observe", ("bgl", DISK, "w1", 0.7, 100, 0)),
    ("observe", ("bgl", NET, "w2", 0.9, 110, 10)),
    ("observe", ("hdfs", DISK, "w3", 0.6, 120, 20)),
    ("observe", ("bgl", DISK[::-1], "w4", 0.8, 130, 30)),
    ("observe", ("bgl", ("fan",), "w5", 0.5, 140, 40)),  # max_open=3: evicts bgl/NET
    ("expire", 50),
    ("observe", ("bgl", DISK, "w6", 0.95, 150, 600)),
    ("observe", ("bgl", DISK, "w7", 0.75, 160, 700)),
    ("observe", ("hdfs", DISK, "w8", 0.65, 170, 1_100)),  # past the TTL: reopens, old one queued
    ("observe", ("bgl", DISK, "w9", 0.85, 180, 1_200)),
    ("expire", 1_300),
    ("observe", ("bgl", NET, "w10", 0.9, 190, 1_400)),
    ("observe", ("bgl", DISK, "w11", 0.7, 200, 1_750)),  # count 6, but a TTL after its last alert (w7 at 700)
    ("expire", 2_200),
    ("expire", 2_500),
    ("expire", 2_800),
]


def run(book: AlertBook, steps: list[tuple[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for kind, args in steps:
        if kind == "expire":
            out.append([alert.to_dict() for alert in book.expire(args)])
        else:
            system, templates, window_id, score, event_ms, now = args
            alert = book.observe(
                system, templates, window_id=window_id, score=score, last_event_ms=event_ms, now_ms=now
            )
            out.append(alert and alert.to_dict())
    return out


@pytest.mark.parametrize("cut", range(len(SCRIPT) + 1))
def test_snapshot_and_restore_continue_identically(cut: int) -> None:
    straight = AlertBook(TTL, max_open=3)
    expected = run(straight, SCRIPT)

    before = AlertBook(TTL, max_open=3)
    head = run(before, SCRIPT[:cut])
    snapshot = json.loads(json.dumps(before.snapshot()))  # through JSON, as a checkpoint would go
    resumed = AlertBook(TTL, max_open=3)
    resumed.restore(snapshot)
    assert resumed.snapshot() == before.snapshot()
    assert head + run(resumed, SCRIPT[cut:]) == expected
    assert resumed.snapshot() == straight.snapshot()


def brief(alert: dict[str, Any] | None) -> tuple[str, int, str] | None:
    return alert and (alert["status"], alert["count"], alert["window_ids"][-1])


def test_the_script_exercises_every_path() -> None:
    """Guards the round-trip test above: its script opens, updates, evicts, reopens past the TTL, publishes a slow
    incident again a TTL after its last alert, and expires."""
    outputs = run(AlertBook(TTL, max_open=3), SCRIPT)
    trace = [[brief(a) for a in step] if isinstance(step, list) else brief(step) for step in outputs]
    assert trace == [
        (OPEN, 1, "w1"),
        (OPEN, 1, "w2"),
        (OPEN, 1, "w3"),
        (ONGOING, 2, "w4"),
        (OPEN, 1, "w5"),
        [(RESOLVED, 1, "w2")],  # evicted by max_open
        None,  # count 3: silent
        (ONGOING, 4, "w7"),
        (OPEN, 1, "w8"),  # hdfs reopened past the TTL
        None,
        [(RESOLVED, 1, "w3"), (RESOLVED, 1, "w5")],  # the queued stale hdfs first, then the expired fan
        (OPEN, 1, "w10"),
        (ONGOING, 6, "w11"),  # not a power of two: published because its last alert is a TTL old
        [(RESOLVED, 1, "w8")],
        [(RESOLVED, 1, "w10")],
        [(RESOLVED, 6, "w11")],
    ]


def test_restore_refuses_a_malformed_snapshot_and_leaves_the_book_unchanged() -> None:
    book = AlertBook(TTL)
    observe(book, 1)
    good = book.snapshot()
    broken = [
        {**good, "version": 2},
        {**good, "open": [{"alert": {**good["open"][0]["alert"], "count": -1}, "touched_ms": 0}]},
        {**good, "open": good["open"] * 2},
        {**good, "clock_ms": "0"},
        {key: value for key, value in good.items() if key != "resolved"},
        ["not", "a", "mapping"],
    ]
    for snapshot in broken:
        with pytest.raises(AlertSnapshotError, match="cannot be restored"):
            book.restore(snapshot)  # type: ignore[arg-type]
    assert book.snapshot() == good
    assert issubclass(AlertSnapshotError, StateError) and issubclass(AlertSnapshotError, ValueError)


def test_alert_round_trips_through_json() -> None:
    book = AlertBook(TTL)
    for n in range(1, 5):
        alert = observe(book, n, now=n)
    assert alert is not None
    text = json.dumps(alert.to_dict())
    assert json.loads(text)["templates"] == sorted(DISK)
    assert Alert.from_dict(json.loads(text)) == alert
    (resolved,) = book.expire(TTL + 4)
    assert Alert.from_dict(json.loads(json.dumps(resolved.to_dict()))) == resolved


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": -1}, "count must be an integer >= 1"),
        ({"count": "4"}, "count must be an integer"),
        ({"system": "hdfs"}, "alert_id does not match"),
        ({"templates": ["raid degraded", "disk <*> failed"]}, "distinct and sorted"),
        ({"status": "closed"}, "status must be one of"),
        ({"max_score": float("nan")}, "finite"),
        ({"last_score": 9.0}, "must not exceed max_score"),
        ({"first_seen_ms": 10_005}, "first_seen_ms must not be after"),
        ({"window_ids": []}, "window_ids must hold"),
    ],
)
def test_alert_from_dict_refuses_bad_data(change: dict[str, Any], message: str) -> None:
    book = AlertBook(TTL)
    for n in range(1, 5):
        alert = observe(book, n, now=n)
    assert alert is not None
    with pytest.raises(ValueError, match=message):
        Alert.from_dict({**alert.to_dict(), **change})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl_ms": 0}, "ttl_ms must be an integer > 0"),
        ({"ttl_ms": -5}, "ttl_ms must be an integer > 0"),
        ({"ttl_ms": True}, "ttl_ms must be an integer > 0"),
        ({"ttl_ms": 1.5}, "ttl_ms must be an integer > 0"),
        ({"ttl_ms": TTL, "max_open": 0}, "max_open must be an integer > 0"),
    ],
)
def test_bad_book_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertBook(**kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"system": ""}, "system must be a non-empty string"),
        ({"templates": "disk <*> failed"}, "collection of strings"),
        ({"templates": ("ok", "")}, "each template must be a non-empty string"),
        ({"templates": ("ok", 3)}, "each template must be a non-empty string"),
        ({"window_id": ""}, "window_id must be a non-empty string"),
        ({"score": float("inf")}, "score must be a finite number"),
        ({"score": True}, "score must be a finite number"),
        ({"last_event_ms": 1.0}, "last_event_ms must be an integer"),
        ({"now_ms": None}, "now_ms must be an integer"),
    ],
)
def test_bad_verdicts_are_refused_and_change_nothing(change: dict[str, Any], message: str) -> None:
    book = AlertBook(TTL)
    observe(book, 1)
    before = book.snapshot()
    verdict: dict[str, Any] = {
        "system": "bgl",
        "templates": DISK,
        "window_id": "w2",
        "score": 0.5,
        "last_event_ms": 1,
        "now_ms": 1,
    }
    with pytest.raises(ValueError, match=message):
        book.observe(**{**verdict, **change})
    assert book.snapshot() == before


def test_the_module_is_pure_logic() -> None:
    """No Kafka, no torch, no clock reads: the inference worker owns those."""
    path = Path(__file__).resolve().parents[2] / "stream" / "inference" / "alerts.py"
    tree = ast.parse(path.read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in modules if m.split(".")[0] in {"aiokafka", "torch", "time", "datetime", "stream"}} - {
        "stream.errors",
        "stream.records.alerts",  # the Alert record: pure data and its checks (the test below)
    }


def test_the_alert_record_module_reads_no_clock_and_knows_no_kafka() -> None:
    path = Path(__file__).resolve().parents[2] / "stream" / "records" / "alerts.py"
    tree = ast.parse(path.read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in modules if m.split(".")[0] in {"aiokafka", "torch", "time"}}
    assert not {m for m in modules if m.startswith("stream.") and not m.startswith("stream.records")}
    # datetime only formats given times (rfc3339): no now() or today() anywhere
    calls = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not calls & {"now", "today", "utcnow", "time", "monotonic"}
