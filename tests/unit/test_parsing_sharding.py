"""Sharding one system's mining by Drain's first token level (stream.parsing.sharding), on real Thunderbird lines."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from harness.streaming import DATA
from stream.errors import ConfigError, StateError
from stream.parsing.config import DEFAULT_MASKS, DrainParams
from stream.parsing.fastdrain import FastDrain
from stream.parsing.miner import SystemParser
from stream.parsing.sharding import KEYED_FORMAT, KeyedDrain, KeyedParser, drain_key, shard_of
from stream.replay import replay_records
from stream.settings import load_settings

PARAMS = DrainParams()


def test_the_key_is_the_token_count_and_the_first_token_as_drain_files_it() -> None:
    assert drain_key("Receiving block <*> src: <*>", PARAMS) == "5 Receiving"
    assert drain_key("  node-17 is up  ", PARAMS) == "3 <*>"  # a digit: the wildcard child, as drain3 files it
    assert drain_key("node-17 is up", dataclasses.replace(PARAMS, parametrize_numeric_tokens=False)) == "3 node-17"
    assert drain_key("a=b,c", dataclasses.replace(PARAMS, extra_delimiters=("=", ","))) == "3 a"
    # no first token level: one token (its clusters sit on the count node), nothing, or depth 3
    assert drain_key("shutdown", PARAMS) == "1"
    assert drain_key("   ", PARAMS) == "0"
    assert drain_key("Receiving block", dataclasses.replace(PARAMS, depth=3)) == "2"


def test_shards_are_stable_numbers_and_at_least_one() -> None:
    # CRC-32 of the key (3063630620 for "7 Receiving"): the same in every process, unlike Python's salted hash
    keys = ("7 Receiving", "11 BLOCK*", "6 PacketResponder", "8 Received")
    assert [shard_of(key, 4) for key in keys] == [0, 1, 2, 1]
    assert [shard_of(key, 1) for key in keys] == [0, 0, 0, 0]
    with pytest.raises(ConfigError, match="shards"):
        shard_of("7 Receiving", 0)


def test_a_first_token_with_no_child_falls_through_in_drain3_and_not_in_the_keyed_level() -> None:
    lines = ["sshd2 startup succeeded", "xinetd startup succeeded"]
    drain3_like = SystemParser(PARAMS, DEFAULT_MASKS)
    keyed = SystemParser(PARAMS, DEFAULT_MASKS, drain=KeyedDrain)
    # "sshd2" holds a digit, so its cluster sits under the wildcard child; drain3 searches "xinetd" there too
    assert [drain3_like.parse(line).template for line in lines][-1] == "<*> startup succeeded"
    assert [keyed.parse(line).template for line in lines][-1] == "xinetd startup succeeded"


def thunderbird_lines() -> list[str]:
    fmt = load_settings().systems["thunderbird"].line_format("thunderbird")
    records = replay_records(DATA / "thunderbird" / "Thunderbird_19k.log.gz", "thunderbird", fmt)
    return [fmt.split(r.value.decode())[0] for r in records if r.value is not None]


def mined(drain: type[FastDrain], lines: list[str], shards: int) -> list[str]:
    """Each line's template when it is mined, the lines partitioned by key onto ``shards`` miners."""
    spec = load_settings().systems["thunderbird"]
    params, masks = spec.drain_params("thunderbird"), spec.mask_rules("thunderbird")
    parsers = [SystemParser(params, masks, drain=drain) for _ in range(shards)]
    mask = parsers[0]._mask
    return [parsers[shard_of(drain_key(mask(line), params), shards)].parse(line).template for line in lines]


def test_keyed_mining_gives_every_line_one_template_however_the_system_is_sharded() -> None:
    lines = thunderbird_lines()
    assert len(lines) > 19_000
    one = mined(KeyedDrain, lines, 1)
    for shards in (2, 3, 4):
        assert mined(KeyedDrain, lines, shards) == one, shards
    # drain3's first level does not shard exactly on the same lines (its fall-through reaches other keys' clusters)
    drain3_one = mined(FastDrain, lines, 1)
    assert mined(FastDrain, lines, 2) != drain3_one
    # and the keyed level answers as drain3 does on all but a handful of lines (bench/shard_bench.py: 10 of 19,350)
    differing = sum(a != b for a, b in zip(one, drain3_one, strict=True))
    assert 0 < differing <= 0.001 * len(lines)


def thunderbird_settings(**bounds: int) -> tuple[DrainParams, list]:
    spec = load_settings().systems["thunderbird"]
    return dataclasses.replace(spec.drain_params("thunderbird"), **bounds), spec.mask_rules("thunderbird")


def keyed_answers(lines: list[str], shards: int, **bounds: int) -> list[tuple[int, str]]:
    """(id, template) of each line, the system's keys partitioned over ``shards`` KeyedParsers (one per worker)."""
    params, masks = thunderbird_settings(**bounds)
    workers = [KeyedParser(params, masks) for _ in range(shards)]
    router = KeyedParser(params, masks)  # a router only masks and keys
    out = []
    for line in lines:
        key, masked = router.key_of(line)
        parsed = workers[shard_of(key, shards)].parse_keyed(key, masked)
        out.append((parsed.template_id, parsed.template))
    return out


@pytest.mark.parametrize("bounds", [{}, {"max_clusters": 3, "match_cache_size": 2}], ids=["default", "tight"])
def test_keyed_parsers_give_every_line_one_id_and_template_whichever_worker_owns_its_key(bounds: dict) -> None:
    lines = thunderbird_lines()
    one = keyed_answers(lines, 1, **bounds)
    for shards in (2, 3, 4):
        assert keyed_answers(lines, shards, **bounds) == one, shards
    assert len({template_id for template_id, _ in one}) > 300
    assert all(0 < template_id < 2**63 for template_id, _ in one)
    if not bounds:  # with nothing evicted, per-key parsers answer as one keyed Drain does
        assert [template for _, template in one] == mined(KeyedDrain, lines, 1)


def test_a_keyed_parser_restored_mid_stream_continues_as_one_that_never_stopped() -> None:
    lines = thunderbird_lines()
    params, masks = thunderbird_settings(max_clusters=50, match_cache_size=20)
    running = KeyedParser(params, masks)
    first = [running.parse(line) for line in lines[:9000]]
    restored = KeyedParser.restore(params, masks, orjson.loads(orjson.dumps(running.snapshot())))
    assert restored.keys == running.keys and restored.templates() == running.templates()
    assert [restored.parse(line) for line in lines[9000:]] == [running.parse(line) for line in lines[9000:]]
    assert first[0].template_id == KeyedParser(params, masks).parse(lines[0]).template_id  # ids name the key


@pytest.mark.parametrize(
    "snapshot",
    [None, {"format": "adaptlog.drain"}, {"format": KEYED_FORMAT, "version": 2, "keys": {}},
     {"format": KEYED_FORMAT, "version": 1, "keys": []}, {"format": KEYED_FORMAT, "version": 1, "keys": {"3 a": {}}}],
)  # fmt: skip
def test_a_malformed_keyed_snapshot_is_a_state_error(snapshot: object) -> None:
    with pytest.raises(StateError):
        KeyedParser.restore(PARAMS, DEFAULT_MASKS, snapshot)
