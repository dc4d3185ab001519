"""Event-time tumbling windows: watermark and grace boundaries, late lines, idle."""

from __future__ import annotations

import pytest

from stream.errors import StateError
from stream.windowing import Emitted, EventTumbling, Item, build


def item(event_ms: int, arrival_ms: int = 0, n: int = 0) -> Item:
    return Item(event_ms=event_ms, arrival_ms=arrival_ms, payload={"n": n})


def test_bucket_closes_when_watermark_reaches_its_end_exactly():
    windower = build(EventTumbling(size_ms=1000))
    windower.push(item(10))
    assert windower.push(item(999)).closed == []
    (window,) = windower.push(item(1000)).closed
    assert (window.start_ms, window.end_ms, window.reason) == (0, 1000, "watermark")
    assert [i.event_ms for i in window.items] == [10, 999]


def test_line_exactly_at_grace_still_joins():
    windower = build(EventTumbling(size_ms=1000, grace_ms=200))
    windower.push(item(500))
    out = windower.push(item(1199))  # watermark 999: bucket [0, 1000) still open
    assert out.closed == []
    out = windower.push(item(0))  # 1199 ms behind the newest line, within size + grace
    assert out.late == [] and out.closed == []
    (window,) = windower.push(item(1200)).closed  # watermark 1000 == end
    assert [i.event_ms for i in window.items] == [500, 0]


def test_line_one_ms_late_goes_to_late_list():
    windower = build(EventTumbling(size_ms=1000, grace_ms=200))
    windower.push(item(500))
    assert len(windower.push(item(1200)).closed) == 1
    late = item(999, n=7)
    out = windower.push(late)
    assert out.late == [late] and out.closed == []
    assert windower.open_count() == 1  # only [1000, 2000); the late line opened nothing


def test_out_of_order_within_grace_lands_in_its_bucket():
    windower = build(EventTumbling(size_ms=100, grace_ms=150))
    for e in (120, 50, 180, 10, 240):
        assert windower.push(item(e)).late == []
    (window,) = windower.push(item(250)).closed  # watermark 100
    assert (window.start_ms, [i.event_ms for i in window.items]) == (0, [50, 10])


def test_jump_closes_several_buckets_in_order():
    windower = build(EventTumbling(size_ms=10, grace_ms=30))
    for e in (25, 5, 15):
        assert windower.push(item(e)).late == []
    closed = windower.push(item(100)).closed
    assert [(w.start_ms, w.end_ms) for w in closed] == [(0, 10), (10, 20), (20, 30)]


def test_negative_event_times_bucket_by_floor():
    windower = build(EventTumbling(size_ms=10))
    windower.push(item(-1))
    (window,) = windower.push(item(0)).closed
    assert (window.start_ms, window.end_ms) == (-10, 0)


def test_idle_tick_closes_all_open_buckets_then_their_lines_are_late():
    windower = build(EventTumbling(size_ms=1000, grace_ms=5000, idle_timeout_ms=100))
    windower.push(item(500, arrival_ms=10))
    windower.push(item(2500, arrival_ms=20))
    assert windower.tick(119).closed == []
    closed = windower.tick(120).closed
    assert [(w.start_ms, w.reason) for w in closed] == [(0, "idle"), (2000, "idle")]
    assert windower.open_count() == 0
    assert windower.push(item(1500, arrival_ms=200)).late != []  # older than the idle-closed bucket
    assert windower.push(item(3000, arrival_ms=200)).late == []


def test_late_line_counts_as_arrival_for_idle():
    windower = build(EventTumbling(size_ms=1000, idle_timeout_ms=100))
    windower.push(item(1500, arrival_ms=0))
    windower.push(item(2000, arrival_ms=0))  # closes [1000, 2000)
    assert windower.push(item(1200, arrival_ms=90)).late
    assert windower.tick(150).closed == []  # the late line arrived 60 ms ago


def test_flush_closes_everything_and_resume_keeps_frontier():
    policy = EventTumbling(size_ms=1000)
    windower = build(policy)
    windower.push(item(100))
    windower.push(item(1100))
    resumed = build(policy, windower.snapshot())
    assert resumed.push(item(900)).late  # [0, 1000) closed before the snapshot
    assert [w.reason for w in resumed.flush().closed] == ["flush"]


def test_a_line_further_ahead_of_its_arrival_than_max_future_ms_is_future_and_moves_nothing():
    windower = build(EventTumbling(size_ms=1000, max_future_ms=5000))
    assert windower.push(item(100, arrival_ms=0)) == Emitted()
    exactly = windower.push(item(5_000, arrival_ms=0))  # exactly max_future_ms ahead: accepted
    assert exactly.future == [] and [w.start_ms for w in exactly.closed] == [0]
    future = item(106_001, arrival_ms=101_000)  # 1 ms more than max_future_ms ahead
    assert windower.push(future) == Emitted(future=[future])
    # The watermark did not move to 106001: the next ordinary line is neither late nor closes anything.
    assert windower.push(item(5_500, arrival_ms=101_001)) == Emitted()
    (last,) = windower.flush().closed
    assert (last.start_ms, [i.event_ms for i in last.items]) == (5_000, [5_000, 5_500])


def test_max_future_ms_none_accepts_any_event_time():
    windower = build(EventTumbling(size_ms=1000, max_future_ms=None))
    assert windower.push(item(10**12, arrival_ms=0)).future == []


def test_a_snapshot_written_before_max_future_ms_existed_resumes():
    policy = EventTumbling(size_ms=1000, grace_ms=200)
    windower = build(policy)
    windower.push(item(100))
    snapshot = windower.snapshot()
    del snapshot["policy"]["max_future_ms"]  # as the previous version wrote it
    resumed = build(policy, snapshot)
    assert resumed.snapshot() == windower.snapshot()
    with pytest.raises(StateError):  # another value than the default is another policy
        build(EventTumbling(size_ms=1000, grace_ms=200, max_future_ms=5), snapshot)
