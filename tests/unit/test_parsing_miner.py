"""SystemParser: drain3's answers, bounded memory, and snapshots that continue exactly, on real logs."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable

import orjson
import pytest
from drain3.template_miner import TemplateMiner

from harness.streaming import DATA
from stream.errors import StateError
from stream.parsing.config import DEFAULT_MASKS, LOGHUB_SETTINGS, DrainParams, MaskRule, drain3_config
from stream.parsing.miner import ParsedTemplate, SystemParser


def hdfs_lines() -> list[str]:
    # <Date> <Time> <Pid> <Level> <Component>: <Content>
    with (DATA / "hdfs" / "HDFS_5k.log").open(encoding="utf-8") as handle:
        return [line.rstrip("\n").split(None, 5)[5] for line in handle]


def bgl_lines() -> list[str]:
    # <Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>
    with (DATA / "bgl" / "BGL_raw_labeled_6.8k.log").open(encoding="utf-8") as handle:
        return [(line.rstrip("\n").split(None, 9) + [""] * 10)[9] for line in handle]


def thunderbird_lines() -> list[str]:
    path = DATA / "parsing" / "Thunderbird" / "Thunderbird_2k.log_structured_corrected.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["Content"] for row in csv.DictReader(handle)]


CASES = {
    "HDFS": (hdfs_lines, LOGHUB_SETTINGS["HDFS"]),
    "BGL": (bgl_lines, LOGHUB_SETTINGS["BGL"]),
    "Thunderbird": (thunderbird_lines, LOGHUB_SETTINGS["Thunderbird"]),
}
# Small bounds so that cluster eviction, stale tree ids and cache eviction all happen within a few thousand lines.
TIGHT = DrainParams(depth=4, sim_th=0.5, max_clusters=40, match_cache_size=100)


def run(parser: SystemParser, lines: list[str]) -> list[tuple[int, str]]:
    return [(p.template_id, p.template) for p in map(parser.parse, lines)]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("max_clusters", [100_000, 30])
def test_without_cache_answers_are_drain3s(name: str, max_clusters: int) -> None:
    load, (params, masks) = CASES[name]
    params = dataclasses.replace(params, max_clusters=max_clusters, match_cache_size=0)
    lines = load()
    miner = TemplateMiner(config=drain3_config(params, masks))
    expected = [(r["cluster_id"], r["template_mined"]) for r in map(miner.add_log_message, lines)]
    parser = SystemParser(params, masks)
    assert run(parser, lines) == expected
    assert parser.templates() == {c.cluster_id: c.get_template() for c in miner.drain.clusters}


@pytest.mark.parametrize("name", list(CASES))
def test_cache_keeps_one_answer_per_masked_line(name: str) -> None:
    load, (params, masks) = CASES[name]
    parser = SystemParser(params, masks)
    first: dict[str, int] = {}
    for parsed in map(parser.parse, load()):
        assert first.setdefault(parsed.masked, parsed.template_id) == parsed.template_id


def test_parsed_template_is_frozen_and_masked() -> None:
    parser = SystemParser(*LOGHUB_SETTINGS["HDFS"])
    parsed = parser.parse("Receiving block blk_-160899 src: /10.250.19.102:54106 dest: /10.250.19.102:50010")
    assert parsed == ParsedTemplate(1, "Receiving block <BLK> src: /<IP> dest: /<IP>", parsed.masked)
    assert parsed.masked == parsed.template
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.template_id = 2  # type: ignore[misc]


def test_memory_bounds_hold() -> None:
    parser = SystemParser(TIGHT, DEFAULT_MASKS)
    last_id = 0
    for parsed in map(parser.parse, bgl_lines()):
        assert parser.cluster_count <= 40
        assert parser.cache_len <= 100
        assert parsed.template_id <= last_id + 1  # ids are a counter: never reused after eviction
        last_id = max(last_id, parsed.template_id)
    assert last_id > 40  # eviction did happen


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("tight", [False, True])
def test_restore_and_continue_equals_never_stopping(name: str, tight: bool) -> None:
    load, (params, masks) = CASES[name]
    if tight:
        params = TIGHT
    lines = load()
    uninterrupted = SystemParser(params, masks)
    expected = run(uninterrupted, lines)

    parser = SystemParser(params, masks)
    got: list[tuple[int, str]] = []
    for start in range(0, len(lines), len(lines) // 3 + 1):  # stop and restore twice
        got += run(parser, lines[start : start + len(lines) // 3 + 1])
        snapshot = orjson.loads(orjson.dumps(parser.snapshot()))  # JSON-serialisable, nothing pickled
        parser = SystemParser.restore(params, masks, snapshot)
    assert got == expected
    assert parser.snapshot() == uninterrupted.snapshot()


def test_snapshot_contents() -> None:
    params, masks = LOGHUB_SETTINGS["HDFS"]
    parser = SystemParser(params, masks)
    run(parser, hdfs_lines()[:500])
    snapshot = parser.snapshot()
    assert snapshot["format"] == "adaptlog.drain" and snapshot["version"] == 1
    assert snapshot["params"] == params.to_dict()
    assert snapshot["clusters_counter"] == max(c[0] for c in snapshot["clusters"])  # type: ignore[union-attr]
    assert sum(c[2] for c in snapshot["clusters"]) == 500  # type: ignore[union-attr]


def _good_snapshot() -> dict[str, object]:
    parser = SystemParser(TIGHT, DEFAULT_MASKS)
    run(parser, bgl_lines()[:1500])
    return orjson.loads(orjson.dumps(parser.snapshot()))


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: "not a dict",
        lambda s: {},
        lambda s: {**s, "format": "drain3-jsonpickle"},
        lambda s: {**s, "version": 99},
        lambda s: {**s, "clusters_counter": -1},
        lambda s: {**s, "clusters": "garbage"},
        lambda s: {**s, "clusters": [[1, "tokens", 1]]},
        lambda s: {**s, "clusters": [[10**9, ["a"], 1]]},
        lambda s: {**s, "clusters": [*s["clusters"], s["clusters"][0]]},
        lambda s: {**s, "tree": [[], {"3": "x"}]},
        lambda s: {**s, "tree": [[], {}]},  # clusters missing from the tree
        lambda s: {**s, "match_cache": [["line", "one"]]},
        lambda s: {**s, "masks": [["ip", r"\d+"]]},
    ],
)
def test_garbage_snapshot_raises_state_error(corrupt: Callable[[dict], object]) -> None:
    with pytest.raises(StateError):
        SystemParser.restore(TIGHT, DEFAULT_MASKS, corrupt(_good_snapshot()))


def test_restore_with_other_settings_is_refused() -> None:
    snapshot = _good_snapshot()
    with pytest.raises(StateError, match="params"):
        SystemParser.restore(dataclasses.replace(TIGHT, sim_th=0.7), DEFAULT_MASKS, snapshot)
    with pytest.raises(StateError, match="masks"):
        SystemParser.restore(TIGHT, [*DEFAULT_MASKS, MaskRule("x", "x")], snapshot)


def test_restore_keeps_routing_that_rebuilding_the_tree_would_lose() -> None:
    # "a x" gets its own first-token node; max_children=2 then sends "b x" and "c y" under the wildcard node,
    # and max_clusters=2 evicts "a x". Re-adding the live templates into a fresh tree would file "b x" under its
    # own node "b", so "d x" would no longer meet it and would open a new cluster; the saved tree keeps the route.
    params = DrainParams(depth=4, sim_th=0.4, max_children=2, max_clusters=2, match_cache_size=0)
    parser = SystemParser(params, [])
    assert [parser.parse(line).template_id for line in ("a x", "b x", "c y")] == [1, 2, 3]
    restored = SystemParser.restore(params, [], orjson.loads(orjson.dumps(parser.snapshot())))
    assert restored.parse("d x") == parser.parse("d x") == ParsedTemplate(2, "<*> x", "d x")
