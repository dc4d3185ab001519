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
from harness.streaming import (
    DATA,
    block_lines,
    check_sessions,
    hdfs_system,
    read_topic,
    settings_for,
    worker_env,
    write_systems_file,
)
from stream.pipeline.kafka_clients import ensure_topics, topic_specs
from stream.replay import replay, replay_records
from stream.settings import Settings, SystemSettings

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@contextmanager
def worker_process(settings: Settings, systems_file: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = start_adaptlog("run", worker_env(settings, systems_file, dict(os.environ)), log)
    try:
        yield process
    finally:
        stop_process(process)


def test_sigkill_mid_replay_loses_and_corrupts_no_window(
    kafka_broker: RunningBroker, topic_prefix: str, tmp_path: Path
) -> None:
    # Idle timeout well above a restart's pause, so only the end of the stream closes sessions.
    settings = settings_for(
        kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence, systems={"hdfs": hdfs_system(30_000)}
    )
    systems_file = write_systems_file(tmp_path / "systems.yaml", dict(settings.systems))
    path = DATA / "hdfs" / "HDFS_2pct_blocks.log.gz"
    truth = block_lines(path)
    log = tmp_path / "worker.log"

    async def scenario() -> tuple[list[dict], bool]:
        await ensure_topics(settings, topic_specs(settings))
        fmt = settings.systems["hdfs"].line_format("hdfs")
        feeding = asyncio.create_task(replay(settings, replay_records(path, "hdfs", fmt), "hdfs", rate=20_000))
        with worker_process(settings, systems_file, log) as first:
            await asyncio.sleep(8)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        killed_mid_replay = not feeding.done()
        with worker_process(settings, systems_file, log):
            await feeding
            windows = await read_topic(settings, settings.topics.windows, until=len(truth), timeout_s=240)
        return windows, killed_mid_replay

    windows, killed_mid_replay = asyncio.run(scenario())
    assert killed_mid_replay, "the worker was killed after the replay had finished: the test proves nothing"
    check_sessions(windows, truth)


def test_two_workers_share_partitions_and_agree_on_templates(
    kafka_broker: RunningBroker, topic_prefix: str, tmp_path: Path
) -> None:
    bgl = SystemSettings(format="bgl", drain={"depth": 4, "sim_th": 0.5}, window={"kind": "count_tumbling", "size": 20})
    settings = settings_for(
        kafka_broker.bootstrap,
        topic_prefix,
        kafka_broker.supports_idempotence,
        systems={"hdfs": hdfs_system(5000), "bgl": bgl},
    )
    systems_file = write_systems_file(tmp_path / "systems.yaml", dict(settings.systems))
    hdfs_path, bgl_path = DATA / "hdfs" / "HDFS_5k.log", DATA / "bgl" / "BGL_2k.log"
    truth = block_lines(hdfs_path)

    async def scenario() -> list[dict]:
        await ensure_topics(settings, topic_specs(settings))
        with (
            worker_process(settings, systems_file, tmp_path / "a.log"),
            worker_process(settings, systems_file, tmp_path / "b.log"),
        ):
            await asyncio.sleep(6)  # both join the groups before the data arrives
            await replay(
                settings, replay_records(hdfs_path, "hdfs", settings.systems["hdfs"].line_format("hdfs")), "hdfs"
            )
            await replay(settings, replay_records(bgl_path, "bgl", bgl.line_format("bgl")), "bgl")
            return await read_topic(settings, settings.topics.windows, until=len(truth) + 100, timeout_s=180)

    windows = asyncio.run(scenario())
    for name in ("a.log", "b.log"):
        assert "assigned" in (tmp_path / name).read_text(), f"worker {name} never got partitions"
    check_sessions([w for w in windows if w["system"] == "hdfs"], truth)
    bgl_windows = {w["window_id"]: w for w in windows if w["system"] == "bgl"}
    assert len(bgl_windows) == 100
    # The same masked line gets the same template id wherever it was windowed.
    templates: dict[tuple[str, str], set[int]] = defaultdict(set)
    for window in windows:
        for line in window["lines"]:
            templates[(window["system"], line["masked"])].add(line["template_id"])
    assert all(len(ids) == 1 for ids in templates.values())
