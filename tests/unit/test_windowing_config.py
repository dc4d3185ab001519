"""Policy validation, dict round-trips, build dispatch and snapshot refusal."""

from __future__ import annotations

import orjson
import pytest

from stream.errors import ConfigError, StateError
from stream.windowing import (
    CountSliding,
    CountTumbling,
    EventTumbling,
    Item,
    Session,
    build,
    policy_from_dict,
    policy_to_dict,
)

POLICIES = [
    CountTumbling(size=10, idle_timeout_ms=500),
    CountSliding(size=20, step=4),
    EventTumbling(size_ms=1000, grace_ms=200, idle_timeout_ms=5000),
    Session(gap_ms=30_000, max_lines=100, max_duration_ms=600_000, idle_timeout_ms=60_000),
]


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: CountTumbling(size=0), "window.size"),
        (lambda: CountTumbling(size=True), "window.size"),
        (lambda: CountTumbling(size=5, idle_timeout_ms=0), "window.idle_timeout_ms"),
        (lambda: CountSliding(size=20, step=21), "window.step"),
        (lambda: CountSliding(size=20, step=0), "window.step"),
        (lambda: EventTumbling(size_ms=0), "window.size_ms"),
        (lambda: EventTumbling(size_ms=10, grace_ms=-1), "window.grace_ms"),
        (lambda: EventTumbling(size_ms=10, max_future_ms=-1), "window.max_future_ms"),
        (lambda: Session(gap_ms=-1), "window.gap_ms"),
        (lambda: Session(gap_ms=10, max_lines=0), "window.max_lines"),
        (lambda: Session(gap_ms=10, max_duration_ms=-5), "window.max_duration_ms"),
        (lambda: Session(gap_ms="10"), "window.gap_ms"),
        (lambda: Session(gap_ms=10, watermark_grace_ms=-1), "window.watermark_grace_ms"),
    ],
)
def test_invalid_policy_names_the_field(make, setting):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.setting == setting


def test_sliding_step_equal_to_size_is_allowed():
    assert CountSliding(size=5, step=5).step == 5


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_dict_round_trip(policy):
    d = policy_to_dict(policy)
    assert policy_from_dict(orjson.loads(orjson.dumps(d))) == policy


def test_policy_from_dict_optional_fields_may_be_left_out():
    assert policy_from_dict({"kind": "session", "gap_ms": 5}) == Session(gap_ms=5)


def test_unknown_kind_is_config_error():
    with pytest.raises(ConfigError) as info:
        policy_from_dict({"kind": "hopping", "size": 3})
    assert info.value.setting == "window.kind"
    assert "hopping" in str(info.value)


def test_unknown_field_is_named():
    with pytest.raises(ConfigError) as info:
        policy_from_dict({"kind": "count_tumbling", "size": 3, "sise": 4, "zz": 1})
    assert info.value.setting == "window.sise"
    assert "zz" in info.value.problem


def test_missing_required_field_is_named():
    with pytest.raises(ConfigError) as info:
        policy_from_dict({"kind": "count_sliding", "size": 3})
    assert info.value.setting == "window.step"


def test_invalid_value_in_dict_is_named():
    with pytest.raises(ConfigError) as info:
        policy_from_dict({"kind": "event_tumbling", "size_ms": -1})
    assert info.value.setting == "window.size_ms"


def test_build_rejects_non_policy():
    with pytest.raises(ConfigError):
        build({"kind": "session"})  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", POLICIES)
def test_snapshot_carries_version_and_policy(policy):
    windower = build(policy)
    windower.push(Item(event_ms=1, arrival_ms=1, payload={"m": "x"}), key="k")
    snap = orjson.loads(orjson.dumps(windower.snapshot()))
    assert snap["version"] == 1
    assert snap["policy"] == policy_to_dict(policy)
    assert build(policy, snap).snapshot() == snap


@pytest.mark.parametrize("policy", POLICIES)
def test_snapshot_under_other_policy_is_state_error(policy):
    snap = build(policy).snapshot()
    other = Session(gap_ms=1) if not isinstance(policy, Session) else Session(gap_ms=2)
    with pytest.raises(StateError):
        build(other, snap)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: "not a snapshot",
        lambda s: {**s, "version": 99},
        lambda s: {**s, "state": []},
        lambda s: {**s, "state": {}},
        lambda s: {**s, "state": {k: "x" for k in s["state"]}},
    ],
)
def test_malformed_snapshot_is_state_error(policy, corrupt):
    windower = build(policy)
    windower.push(Item(event_ms=1, arrival_ms=1, payload={}), key="k")
    with pytest.raises(StateError):
        build(policy, corrupt(windower.snapshot()))


def test_malformed_item_in_snapshot_is_state_error():
    policy = CountTumbling(size=10)
    windower = build(policy)
    windower.push(Item(event_ms=1, arrival_ms=1, payload={}))
    snap = windower.snapshot()
    snap["state"]["buffer"][0] = [1, "late", {}]
    with pytest.raises(StateError):
        build(policy, snap)


def test_full_buffer_in_snapshot_is_state_error():
    policy = CountTumbling(size=2)
    snap = build(policy).snapshot()
    snap["state"]["buffer"] = [[1, 1, {}], [2, 2, {}]]
    snap["state"]["last_arrival_ms"] = 2
    with pytest.raises(StateError):
        build(policy, snap)
