"""Count windows: tumbling and sliding, with idle and flush tails."""

from __future__ import annotations

from stream.windowing import CountSliding, CountTumbling, Item, build


def item(n: int, arrival_ms: int | None = None, event_ms: int | None = None) -> Item:
    return Item(
        event_ms=n if event_ms is None else event_ms,
        arrival_ms=n if arrival_ms is None else arrival_ms,
        payload={"n": n},
    )


def ns(window) -> list[int]:
    return [i.payload["n"] for i in window.items]


def test_tumbling_2000_items_in_order_make_100_windows():
    windower = build(CountTumbling(size=20))
    closed = [w for n in range(2000) for w in windower.push(item(n)).closed]
    assert len(closed) == 100
    assert [ns(w) for w in closed] == [list(range(k * 20, k * 20 + 20)) for k in range(100)]
    assert all(w.reason == "count" and w.key == "" for w in closed)
    assert windower.open_count() == 0
    assert windower.flush().closed == []


def test_tumbling_window_span_is_min_and_max_event_time():
    windower = build(CountTumbling(size=3))
    windower.push(item(0, event_ms=50))
    windower.push(item(1, event_ms=10))
    (window,) = windower.push(item(2, event_ms=30)).closed
    assert (window.start_ms, window.end_ms) == (10, 50)
    assert ns(window) == [0, 1, 2]  # arrival order, not event order


def test_tumbling_idle_exactly_at_timeout_emits_partial():
    windower = build(CountTumbling(size=10, idle_timeout_ms=100))
    windower.push(item(0, arrival_ms=1000))
    windower.push(item(1, arrival_ms=1005))
    assert windower.tick(1104).closed == []  # 99 ms after the newest arrival
    (window,) = windower.tick(1105).closed
    assert window.reason == "idle" and ns(window) == [0, 1]
    assert windower.open_count() == 0
    assert windower.tick(10_000).closed == []


def test_tumbling_idle_uses_newest_arrival_not_last_pushed():
    windower = build(CountTumbling(size=10, idle_timeout_ms=100))
    windower.push(item(0, arrival_ms=2000))
    windower.push(item(1, arrival_ms=1000))  # another partition, older broker time
    assert windower.tick(1500).closed == []
    assert len(windower.tick(2100).closed) == 1


def test_tumbling_without_idle_timeout_never_closes_on_tick():
    windower = build(CountTumbling(size=10))
    windower.push(item(0))
    assert windower.tick(10**12).closed == []
    (window,) = windower.flush().closed
    assert window.reason == "flush"


def test_sliding_w20_s4_window_contents():
    windower = build(CountSliding(size=20, step=4))
    closed = []
    for n in range(40):
        out = windower.push(item(n))
        closed.extend(out.closed)
        # window i is emitted exactly when item i*4+19 arrives
        assert len(out.closed) == (1 if n >= 19 and (n - 19) % 4 == 0 else 0)
    assert [ns(w) for w in closed] == [list(range(i * 4, i * 4 + 20)) for i in range(6)]
    assert all(w.reason == "slide" for w in closed)


def test_sliding_flush_emits_truncated_next_window_covering_the_tail():
    windower = build(CountSliding(size=20, step=4))
    for n in range(22):
        windower.push(item(n))
    (tail,) = windower.flush().closed
    # window 1 on the step grid, truncated: it holds items 20 and 21, which no emitted window has
    assert tail.reason == "flush" and ns(tail) == list(range(4, 22))


def test_sliding_flush_right_after_a_window_emits_nothing():
    windower = build(CountSliding(size=20, step=4))
    for n in range(20):
        windower.push(item(n))
    assert windower.flush().closed == []


def test_sliding_fewer_than_size_items_idle_emits_them_all():
    windower = build(CountSliding(size=20, step=4, idle_timeout_ms=50))
    for n in range(7):
        windower.push(item(n, arrival_ms=100))
    assert windower.tick(149).closed == []
    (tail,) = windower.tick(150).closed
    assert tail.reason == "idle" and ns(tail) == list(range(7))


def test_sliding_idle_starts_a_new_segment():
    windower = build(CountSliding(size=4, step=2, idle_timeout_ms=10))
    for n in range(5):
        windower.push(item(n, arrival_ms=0))
    (tail,) = windower.tick(10).closed
    assert ns(tail) == [2, 3, 4]
    # after the lull numbering restarts: the next window is items 5..8, nothing from before the lull
    closed = [w for n in range(5, 9) for w in windower.push(item(n, arrival_ms=100)).closed]
    assert [ns(w) for w in closed] == [[5, 6, 7, 8]]


def test_sliding_step_equal_to_size_is_tumbling():
    windower = build(CountSliding(size=5, step=5))
    closed = [w for n in range(12) for w in windower.push(item(n)).closed] + windower.flush().closed
    assert [ns(w) for w in closed] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
