"""Stream workers as separate processes: SIGKILL mid-replay and restart, and two workers sharing the partitions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.broker.running import RunningBroker
from harness.commands import start_adaptlog, stop_process
from harness.stages import comparable_windows, one_miner_windows
from harness.streaming import (
    DATA,
    block_lines,
    check_sessions,
    hdfs_system,
    read_topic,
    settings_for,
    until_logged,
    worker_env,
    write_systems_file,
)
from stream.parsing.sharding import KeyedParser
from stream.pipeline.kafka_clients import ensure_topics, topic_specs
from stream.replay import open_text, replay, replay_records
from stream.settings import Settings, SystemSettings, Topics
from stream.tail import read_records

pytestmark = [pytest.mark.broker, pytest.mark.slow]

# The group drops a killed worker after 6 s (aiokafka's default is 10 s), so its partitions move sooner.
FAST_TAKEOVER = '{"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}'


@contextmanager
def worker_process(settings: Settings, systems_file: Path, log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    process = start_adaptlog("run", worker_env(settings, systems_file, {**os.environ, **env}), log)
    try:
        yield process
    finally:
        stop_process(process)


def test_sigkill_mid_replay_loses_and_corrupts_no_window(
    kafka_broker: RunningBroker, topic_prefix: str, tmp_path: Path
) -> None:
    # Idle timeout well above a restart's pause (the restarted worker gets the partitions once the group drops the
    # killed member: a 6 s session timeout, told to both below), so only the end of the stream closes sessions.
    settings = settings_for(
        kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence, systems={"hdfs": hdfs_system(20_000)}
    )
    systems_file = write_systems_file(tmp_path / "systems.yaml", dict(settings.systems))
    path = DATA / "hdfs" / "HDFS_2pct_blocks.log.gz"
    truth = block_lines(path)
    log = tmp_path / "worker.log"

    async def scenario() -> tuple[list[dict], bool]:
        await ensure_topics(settings, topic_specs(settings))
        fmt = settings.systems["hdfs"].line_format("hdfs")
        feeding = asyncio.create_task(replay(settings, replay_records(path, "hdfs", fmt), "hdfs", rate=20_000))
        with worker_process(settings, systems_file, log, ADAPTLOG_CONSUMER_OPTIONS=FAST_TAKEOVER) as first:
            await asyncio.sleep(8)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        killed_mid_replay = not feeding.done()
        with worker_process(settings, systems_file, log, ADAPTLOG_CONSUMER_OPTIONS=FAST_TAKEOVER):
            await feeding
            windows = await read_topic(settings, settings.topics.windows, until=len(truth), timeout_s=240)
        return windows, killed_mid_replay

    windows, killed_mid_replay = asyncio.run(scenario())
    assert killed_mid_replay, "the worker was killed after the replay had finished: the test proves nothing"
    check_sessions(windows, truth)


def test_two_workers_mine_one_keyed_system_as_one_miner_would_through_a_sigkill(
    kafka_broker: RunningBroker, topic_prefix: str, tmp_path: Path
) -> None:
    """HDFS (session windows) and BGL (count windows) mined by Drain key (``mining: keyed``) on two workers, one
    SIGKILLed mid-replay (the other takes its partitions over from its checkpoints). Every HDFS line gets the template
    and id one ``KeyedParser`` gives it, every block's window is complete and in source order, BGL's merged windows
    are exactly one miner's, and both systems' lines spread over several ``lines`` partitions (so both workers mined
    them)."""
    # The survivor takes the killed worker's partitions over once the group drops it (FAST_TAKEOVER), then a
    # rebalance. Sessions stay open 15 s idle, so none closes while
    # its lines on the killed worker's partitions wait for the take-over.
    hdfs = hdfs_system(15_000).model_copy(update={"mining": "keyed"})

    bgl = SystemSettings(
        format="bgl", drain={"depth": 4, "sim_th": 0.5}, window={"kind": "count_tumbling", "size": 20}, mining="keyed"
    )
    # BGL has an input topic of its own, so each file's line numbers are its input offsets (the truth's positions)
    inputs = (Topics.prefixed(topic_prefix).logs, f"{topic_prefix}bgl-logs")
    settings = settings_for(
        kafka_broker.bootstrap,
        topic_prefix,
        kafka_broker.supports_idempotence,
        systems={"hdfs": hdfs, "bgl": bgl},
        input_topics=inputs,
    )
    systems_file = write_systems_file(tmp_path / "systems.yaml", dict(settings.systems))
    hdfs_path, bgl_path = DATA / "hdfs" / "HDFS_5k.log", DATA / "bgl" / "BGL_2k.log"
    truth = block_lines(hdfs_path)
    fmt = hdfs.line_format("hdfs")

    async def scenario() -> tuple[list[dict], list[dict], bool]:
        await ensure_topics(settings, topic_specs(settings))
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        with (
            worker_process(settings, systems_file, logs[0], ADAPTLOG_CONSUMER_OPTIONS=FAST_TAKEOVER) as first,
            worker_process(settings, systems_file, logs[1], ADAPTLOG_CONSUMER_OPTIONS=FAST_TAKEOVER),
        ):
            await asyncio.to_thread(until_logged, logs, "assigned")  # both join the groups before the data arrives
            await asyncio.sleep(1)  # and the rest of their stages' rebalances settle
            feeding = asyncio.gather(
                replay(settings, replay_records(hdfs_path, "hdfs", fmt), "hdfs", rate=1000),
                replay(settings, replay_records(bgl_path, "bgl", bgl.line_format("bgl")), "bgl", inputs[1], rate=500),
            )
            await asyncio.sleep(2)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed_mid_replay = not feeding.done()
            await feeding
            windows = await read_topic(settings, settings.topics.windows, until=len(truth) + 100, timeout_s=180)
        lines = await read_records(settings, settings.topics.lines)
        # the partitions that held a system's lines (not only its progress marks, which go to every partition)
        spread = {
            system: {r.partition for r in lines if r.key == f"{system}\x1f".encode() and b'"rows":[[' in r.value}
            for system in ("hdfs", "bgl")
        }
        return windows, spread, killed_mid_replay

    windows, spread, killed_mid_replay = asyncio.run(scenario())
    assert killed_mid_replay, "the worker was killed after the replay had finished: the test proves nothing"
    for name in ("a.log", "b.log"):
        assert "assigned" in (tmp_path / name).read_text(), f"worker {name} never got partitions"
    assert len(spread["hdfs"]) >= 2 and len(spread["bgl"]) >= 2, spread  # each system's mining spread out
    check_sessions([w for w in windows if w["system"] == "hdfs"], truth)
    one_miner = KeyedParser(hdfs.drain_params("hdfs"), hdfs.mask_rules("hdfs"))
    expected = [one_miner.parse(fmt.split(line)[0]) for line in open_text(hdfs_path) if line]
    mined = {line["offset"]: line for w in windows if w["system"] == "hdfs" for line in w["lines"]}
    assert len(mined) == len(expected)
    for offset, line in mined.items():
        assert (line["template_id"], line["template"]) == (expected[offset].template_id, expected[offset].template)
    bgl_windows = {w["window_id"]: w for w in windows if w["system"] == "bgl"}  # a replay may send one twice
    assert len(bgl_windows) == 100
    one_miner = comparable_windows(one_miner_windows("bgl", bgl, bgl_path))
    assert sorted(comparable_windows(list(bgl_windows.values()))) == sorted(one_miner)
    # The same masked line gets the same template id wherever it was windowed.
    templates: dict[tuple[str, str], set[int]] = defaultdict(set)
    for window in windows:
        for line in window["lines"]:
            templates[(window["system"], line["masked"])].add(line["template_id"])
    assert all(len(ids) == 1 for ids in templates.values())
