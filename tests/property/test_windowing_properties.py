"""Property tests on random push/tick sequences: no line lost or duplicated, caps respected, and
snapshot -> build -> continue is indistinguishable from never stopping, for every policy."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.windowing import (
    CountSliding,
    CountTumbling,
    Emitted,
    EventTumbling,
    Item,
    Session,
    Windower,
    WindowPolicy,
    build,
)

KEYS = ["a", "b", "c"]

# ("push", event jitter, arrival advance, key) | ("tick", clock advance)
push_op = st.tuples(st.just("push"), st.integers(-300, 300), st.integers(0, 40), st.sampled_from(KEYS))
tick_op = st.tuples(st.just("tick"), st.integers(0, 400))
ops_strategy = st.lists(st.one_of(push_op, push_op, push_op, tick_op), max_size=80)
idle = st.one_of(st.none(), st.integers(1, 300))

count_tumbling = st.builds(CountTumbling, size=st.integers(1, 7), idle_timeout_ms=idle)
count_sliding = st.integers(1, 7).flatmap(
    lambda size: st.builds(CountSliding, size=st.just(size), step=st.integers(1, size), idle_timeout_ms=idle)
)
event_tumbling = st.builds(
    EventTumbling,
    size_ms=st.integers(1, 300),
    grace_ms=st.integers(0, 300),
    idle_timeout_ms=idle,
    max_future_ms=st.one_of(st.none(), st.integers(0, 300)),
)
session = st.builds(
    Session,
    gap_ms=st.integers(0, 200),
    max_lines=st.one_of(st.none(), st.integers(1, 6)),
    max_duration_ms=st.one_of(st.none(), st.integers(0, 400)),
    idle_timeout_ms=idle,
    watermark_grace_ms=st.one_of(st.none(), st.integers(0, 300)),
)
any_policy = st.one_of(count_tumbling, count_sliding, event_tumbling, session)


def concrete(ops: list[tuple]) -> list[tuple[str, Any, str]]:
    """Turn relative ops into absolute calls; arrival time moves forward, event time jitters around it."""
    clock = 10_000
    calls: list[tuple[str, Any, str]] = []
    for n, op in enumerate(ops):
        if op[0] == "push":
            _, jitter, advance, key = op
            clock += advance
            calls.append(("push", Item(event_ms=clock + jitter, arrival_ms=clock, payload={"id": n, "k": key}), key))
        else:
            clock += op[1]
            calls.append(("tick", clock, ""))
    return calls


def run(windower: Windower, calls: list[tuple[str, Any, str]]) -> list[Emitted]:
    out = []
    for kind, arg, key in calls:
        out.append(windower.push(arg, key) if kind == "push" else windower.tick(arg))
    return out


def pushed_ids(calls) -> list[int]:
    return [arg.payload["id"] for kind, arg, _ in calls if kind == "push"]


def collect(outputs: list[Emitted]):
    windows = [w for e in outputs for w in e.closed]
    late = [i for e in outputs for i in e.late]
    return windows, late


@settings(max_examples=150, deadline=None)
@given(policy=any_policy, ops=ops_strategy, data=st.data())
def test_snapshot_resume_is_identical_to_never_stopping(policy: WindowPolicy, ops, data):
    calls = concrete(ops)
    cut = data.draw(st.integers(0, len(calls)), label="cut")
    straight = build(policy)
    expected = run(straight, calls)
    expected_snapshot = straight.snapshot()
    expected.append(straight.flush())

    first = build(policy)
    got = run(first, calls[:cut])
    snap = orjson.loads(orjson.dumps(first.snapshot()))  # must survive the real serializer
    second = build(policy, snap)
    got += run(second, calls[cut:])
    assert second.snapshot() == expected_snapshot
    got.append(second.flush())
    assert got == expected
    assert second.open_count() == 0


@settings(max_examples=50, deadline=None)
@given(policy=any_policy, ops=ops_strategy)
def test_same_calls_same_outputs(policy, ops):
    calls = concrete(ops)
    assert run(build(policy), calls) == run(build(policy), calls)


@settings(max_examples=150, deadline=None)
@given(policy=count_tumbling, ops=ops_strategy)
def test_count_tumbling_every_item_in_exactly_one_window(policy: CountTumbling, ops):
    calls = concrete(ops)
    windower = build(policy)
    windows, late = collect([*run(windower, calls), windower.flush()])
    assert late == []
    assert sorted(i.payload["id"] for w in windows for i in w.items) == pushed_ids(calls)
    assert all(len(w.items) == policy.size for w in windows if w.reason == "count")
    assert all(0 < len(w.items) <= policy.size for w in windows)


@settings(max_examples=150, deadline=None)
@given(policy=event_tumbling, ops=ops_strategy)
def test_event_tumbling_items_in_windows_plus_late_plus_future_equals_pushed(policy: EventTumbling, ops):
    calls = concrete(ops)
    windower = build(policy)
    outputs = [*run(windower, calls), windower.flush()]
    windows, late = collect(outputs)
    future = [i for e in outputs for i in e.future]
    in_windows = [i.payload["id"] for w in windows for i in w.items]
    assert sorted(in_windows + [i.payload["id"] for i in late + future]) == pushed_ids(calls)
    limit = policy.max_future_ms
    assert all(limit is not None and i.event_ms - i.arrival_ms > limit for i in future)
    assert all(limit is None or i.event_ms - i.arrival_ms <= limit for w in windows for i in w.items)
    for w in windows:
        assert w.end_ms - w.start_ms == policy.size_ms and w.start_ms % policy.size_ms == 0
        assert all(w.start_ms <= i.event_ms < w.end_ms for i in w.items)
    starts = [w.start_ms for w in windows]
    assert starts == sorted(set(starts))  # each bucket closes once, in event-time order


@settings(max_examples=150, deadline=None)
@given(policy=count_sliding, ops=ops_strategy)
def test_count_sliding_every_item_in_at_least_one_window(policy: CountSliding, ops):
    calls = concrete(ops)
    windower = build(policy)
    windows, late = collect([*run(windower, calls), windower.flush()])
    assert late == []
    seen = {i.payload["id"] for w in windows for i in w.items}
    assert seen == set(pushed_ids(calls))
    assert all(0 < len(w.items) <= policy.size for w in windows)
    assert all(len(w.items) == policy.size for w in windows if w.reason == "slide")
    if policy.idle_timeout_ms is None:
        # without idle segments, an item is in at most ceil(size / step) windows (+1 for the flush tail)
        cap = -(-policy.size // policy.step) + 1
        assert max(Counter(i.payload["id"] for w in windows for i in w.items).values(), default=0) <= cap


@settings(max_examples=150, deadline=None)
@given(policy=session, ops=ops_strategy)
def test_sessions_partition_each_key_without_overlap(policy: Session, ops):
    calls = concrete(ops)
    windower = build(policy)
    windows, late = collect([*run(windower, calls), windower.flush()])
    assert late == []
    assert sorted((w.key, i.payload["id"]) for w in windows for i in w.items) == sorted(
        (key, arg.payload["id"]) for kind, arg, key in calls if kind == "push"
    )
    for key in KEYS:
        mine = [[i.payload["id"] for i in w.items] for w in windows if w.key == key]
        for earlier, later in pairwise(mine):
            assert max(earlier) < min(later)  # closed sessions of one key never overlap in arrival order
    for w in windows:
        assert all(i.payload["k"] == w.key for i in w.items)
        if policy.max_lines is not None:
            assert len(w.items) <= policy.max_lines
        if policy.max_duration_ms is not None:
            assert w.end_ms - w.start_ms <= policy.max_duration_ms
        assert (w.start_ms, w.end_ms) == (min(i.event_ms for i in w.items), max(i.event_ms for i in w.items))
