"""Session windows: gap boundaries, out-of-order lines, caps, idle, resume."""

from __future__ import annotations

import orjson

from stream.windowing import Item, Session, build


def item(event_ms: int, arrival_ms: int = 0, n: int = 0) -> Item:
    return Item(event_ms=event_ms, arrival_ms=arrival_ms, payload={"n": n})


def events(window) -> list[int]:
    return [i.event_ms for i in window.items]


def test_exact_gap_joins():
    windower = build(Session(gap_ms=1000))
    windower.push(item(0), "blk")
    assert windower.push(item(1000), "blk").closed == []
    (window,) = windower.flush().closed
    assert events(window) == [0, 1000] and window.key == "blk"


def test_gap_plus_1ms_splits():
    windower = build(Session(gap_ms=1000))
    windower.push(item(0), "blk")
    (window,) = windower.push(item(1001), "blk").closed
    assert (window.reason, events(window), window.start_ms, window.end_ms) == ("gap", [0], 0, 0)
    (rest,) = windower.flush().closed
    assert events(rest) == [1001]


def test_gap_is_measured_from_the_newest_event_not_the_last_pushed():
    windower = build(Session(gap_ms=100))
    windower.push(item(500), "k")
    windower.push(item(450), "k")  # out of order, within the session
    assert windower.push(item(600), "k").closed == []  # 100 after max 500
    assert windower.push(item(701), "k").closed[0].reason == "gap"


def test_out_of_order_within_session_joins_and_widens_start():
    windower = build(Session(gap_ms=100))
    windower.push(item(1000), "k")
    windower.push(item(950), "k")
    assert windower.push(item(850), "k").closed == []  # exactly gap before the session start
    (window,) = windower.flush().closed
    assert (window.start_ms, window.end_ms, events(window)) == (850, 1000, [1000, 950, 850])


def test_line_more_than_gap_before_session_start_opens_a_new_session():
    windower = build(Session(gap_ms=100))
    windower.push(item(1000), "k")
    out = windower.push(item(899), "k")
    assert out.late == [] and [events(w) for w in out.closed] == [[1000]]
    assert [events(w) for w in windower.flush().closed] == [[899]]


def test_keys_are_independent():
    windower = build(Session(gap_ms=10))
    windower.push(item(0), "a")
    windower.push(item(100), "b")
    assert windower.open_count() == 2
    assert windower.push(item(5), "a").closed == []
    assert [w.key for w in windower.flush().closed] == ["a", "b"]


def test_max_lines_closes_right_after_the_filling_line():
    windower = build(Session(gap_ms=1000, max_lines=3))
    assert windower.push(item(0), "k").closed == []
    assert windower.push(item(1), "k").closed == []
    (window,) = windower.push(item(2), "k").closed
    assert (window.reason, events(window)) == ("max_lines", [0, 1, 2])
    assert windower.open_count() == 0


def test_max_duration_exactly_joins_and_1ms_more_closes_before_the_line():
    windower = build(Session(gap_ms=1000, max_duration_ms=500))
    windower.push(item(0), "k")
    assert windower.push(item(500), "k").closed == []
    (window,) = windower.push(item(501), "k").closed
    assert (window.reason, events(window)) == ("max_duration", [0, 500])
    assert [events(w) for w in windower.flush().closed] == [[501]]


def test_gap_wins_over_max_duration():
    windower = build(Session(gap_ms=10, max_duration_ms=5))
    windower.push(item(0), "k")
    assert windower.push(item(50), "k").closed[0].reason == "gap"


def test_idle_tick_closes_only_idle_sessions():
    windower = build(Session(gap_ms=10_000, idle_timeout_ms=100))
    windower.push(item(0, arrival_ms=1000), "a")
    windower.push(item(0, arrival_ms=1050), "b")
    assert windower.tick(1099).closed == []
    (window,) = windower.tick(1100).closed
    assert (window.key, window.reason) == ("a", "idle")
    assert windower.open_count() == 1
    assert [w.key for w in windower.tick(1150).closed] == ["b"]


def test_new_line_after_idle_opens_a_new_session_for_the_key():
    windower = build(Session(gap_ms=10_000, idle_timeout_ms=100))
    windower.push(item(0, arrival_ms=0), "a")
    windower.tick(100)
    assert windower.push(item(1, arrival_ms=200), "a").closed == []
    assert [events(w) for w in windower.flush().closed] == [[1]]


def test_resume_from_snapshot_mid_session():
    policy = Session(gap_ms=100, max_lines=4, idle_timeout_ms=1000)
    windower = build(policy)
    windower.push(item(0, arrival_ms=10, n=1), "k")
    windower.push(item(50, arrival_ms=20, n=2), "k")
    snap = orjson.loads(orjson.dumps(windower.snapshot()))
    resumed = build(policy, snap)
    assert resumed.open_count() == 1
    assert resumed.push(item(150, arrival_ms=30, n=3), "k").closed == []  # gap measured from restored max 50
    (window,) = resumed.push(item(160, arrival_ms=40, n=4), "k").closed
    assert window.reason == "max_lines"
    assert [i.payload["n"] for i in window.items] == [1, 2, 3, 4]


def test_resume_keeps_idle_clock():
    policy = Session(gap_ms=100, idle_timeout_ms=1000)
    windower = build(policy)
    windower.push(item(0, arrival_ms=500), "k")
    resumed = build(policy, windower.snapshot())
    assert resumed.tick(1499).closed == []
    assert resumed.tick(1500).closed[0].reason == "idle"


def test_watermark_closes_a_quiet_key_once_another_key_is_gap_plus_grace_past_it():
    windower = build(Session(gap_ms=10, watermark_grace_ms=5))
    windower.push(item(0), "a")
    windower.push(item(3), "b")
    assert windower.push(item(15), "c").closed == []  # exactly gap + grace past a's newest line: a stays open
    (window,) = windower.push(item(16), "c").closed  # 1 ms more
    assert (window.key, window.reason, events(window)) == ("a", "watermark", [0])
    (window,) = windower.push(item(19), "c").closed
    assert (window.key, window.reason) == ("b", "watermark")
    assert windower.open_count() == 1


def test_watermark_closes_in_newest_event_then_opening_order():
    windower = build(Session(gap_ms=10, watermark_grace_ms=0))
    for key, event in [("x", 5), ("y", 3), ("z", 5)]:
        windower.push(item(event), key)
    closed = windower.push(item(100), "w").closed
    assert [w.key for w in closed] == ["y", "x", "z"]


def test_a_line_behind_the_watermark_opens_its_own_session():
    windower = build(Session(gap_ms=10, watermark_grace_ms=0))
    windower.push(item(0), "a")
    assert [w.key for w in windower.push(item(20), "b").closed] == ["a"]
    (straggler,) = windower.push(item(5), "a").closed  # a's session is gone; the line forms one, closed at once
    assert (straggler.key, straggler.reason, events(straggler)) == ("a", "watermark", [5])


def test_without_watermark_grace_keys_stay_independent():
    windower = build(Session(gap_ms=10))
    windower.push(item(0), "a")
    assert windower.push(item(10_000), "b").closed == []
    assert windower.open_count() == 2


def test_resume_keeps_the_watermark_and_reads_snapshots_written_before_it():
    policy = Session(gap_ms=10, watermark_grace_ms=0)
    windower = build(policy)
    for key, event in [("a", 3), ("b", 5), ("c", 12)]:
        assert windower.push(item(event), key).closed == []
    snap = orjson.loads(orjson.dumps(windower.snapshot()))
    assert snap["state"]["watermark_ms"] == 12
    resumed = build(policy, snap)
    assert resumed.snapshot() == windower.snapshot()
    assert resumed.push(item(13), "a").closed == []  # exactly the gap: a's line joins it, and a is not behind
    assert [w.key for w in resumed.push(item(16), "c").closed] == ["b"]
    # The previous version wrote neither the policy field nor the watermark.
    old = Session(gap_ms=10)
    legacy = build(old).snapshot()
    legacy["state"] = {"sessions": snap["state"]["sessions"]}
    del legacy["policy"]["watermark_grace_ms"]
    assert build(old, legacy).open_count() == 3
