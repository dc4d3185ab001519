"""``adaptlog demo``: the stream side end to end on one machine, with nothing to set up.

Starts the embedded broker (Tansu) unless a bootstrap server is configured, runs the stream workers, replays the
bundled Loghub samples (HDFS sessions by block, BGL in windows of 20) with a few bad records among them, and prints a
summary of the windows and dead letters. On a configured broker it uses topics with a fresh ``demo-`` prefix so it
never mixes with real traffic.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Any

from stream.pipeline.kafka_clients import ensure_topics, make_producer, topic_specs
from stream.pipeline.worker import run_worker
from stream.replay import read_block_labels, replay, replay_records
from stream.settings import Settings, SystemSettings, Topics
from stream.tail import read_json_records

BAD_RECORDS = [
    (b"\xff\xfe not UTF-8", [("system", b"bgl")]),
    (b'{"system": "bgl", "message": "truncated JSON', []),
    (b"a line from a system nobody configured", [("system", b"mainframe")]),
    (b'{"system": "hdfs", "message": "081109 203518 143 INFO dfs.DataNode: x", "ts": "not a time"}', []),
]


def _samples() -> Path:
    return Path(str(resources.files("stream.samples")))


def demo_settings(settings: Settings, bootstrap: str | None, idempotent: bool) -> Settings:
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    topics = Topics.prefixed(prefix)
    systems = dict(settings.systems)
    # Close the demo's last HDFS sessions soon after the replay ends (production uses a longer idle timeout).
    systems["hdfs"] = systems["hdfs"].model_copy(update={"window": {**systems["hdfs"].window, "idle_timeout_ms": 3000}})
    systems.setdefault("bgl", SystemSettings(format="bgl"))
    update: dict[str, Any] = {
        "topics": topics,
        "group_prefix": prefix,
        "systems": systems,
        "checkpoint_interval_ms": 1000,
    }
    if bootstrap is not None:
        update |= {"bootstrap_servers": bootstrap, "idempotent_producer": idempotent}
    return settings.model_copy(update=update)


async def run_demo(settings: Settings, timeout_s: float = 180.0) -> int:
    with ExitStack() as stack:
        if settings.bootstrap_servers:
            print(f"demo: using the configured broker {settings.bootstrap_servers}", flush=True)
            settings = demo_settings(settings, None, settings.idempotent_producer)
        else:
            from stream.embedded_broker import start_tansu

            print("demo: no ADAPTLOG_BOOTSTRAP_SERVERS set, starting the embedded broker (Tansu)...", flush=True)
            broker = start_tansu()
            stack.callback(broker.stop)
            print(f"demo: {broker.kind} at {broker.bootstrap}", flush=True)
            settings = demo_settings(settings, broker.bootstrap, broker.supports_idempotence)
        return await _demo(settings, timeout_s)


async def _demo(settings: Settings, timeout_s: float) -> int:
    started = time.monotonic()
    await ensure_topics(settings, topic_specs(settings))
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop, report_every_s=5))
    samples = _samples()
    hdfs_fmt = settings.systems["hdfs"].line_format("hdfs")
    bgl_fmt = settings.systems["bgl"].line_format("bgl")
    labels = read_block_labels(samples / "HDFS_5k_block_labels.csv")
    sent = await replay(settings, replay_records(samples / "HDFS_5k.log.gz", "hdfs", hdfs_fmt, labels), "hdfs")
    sent += await replay(settings, replay_records(samples / "BGL_2k.log.gz", "bgl", bgl_fmt), "bgl")
    await _send_bad_records(settings)
    print(f"demo: replayed {sent} lines and {len(BAD_RECORDS)} bad records; waiting for the windows...", flush=True)
    expected = len(labels) + 100  # HDFS_5k: 110 blocks; BGL_2k: 2000 lines / 20
    windows: list[dict[str, Any]] = []
    while time.monotonic() - started < timeout_s and len(windows) < expected:
        await asyncio.sleep(2)
        windows = await read_json_records(settings, settings.topics.windows)
        print(f"demo: {len(windows)}/{expected} windows closed", flush=True)
    dead = await read_json_records(settings, settings.topics.deadletter)
    stop.set()
    await worker
    _print_summary(windows, dead, sent, time.monotonic() - started)
    if len(windows) < expected:
        print(f"demo: FAILED, only {len(windows)} of {expected} windows closed in {timeout_s:.0f}s", file=sys.stderr)
        return 1
    return 0


async def _send_bad_records(settings: Settings) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for value, headers in BAD_RECORDS:
            await producer.send_and_wait(settings.topics.logs, value, headers=headers)
    finally:
        await producer.stop()


def _print_summary(windows: list[dict[str, Any]], dead: list[dict[str, Any]], sent: int, elapsed_s: float) -> None:
    print("\n=== adaptlog demo: summary ===")
    print(f"{sent} lines replayed in {elapsed_s:.1f}s (startup, replay, windowing and the idle close included)")
    by_system: Counter[tuple[str, str]] = Counter((w["system"], w["policy"]) for w in windows)
    for (system, policy), count in sorted(by_system.items()):
        mine = [w for w in windows if w["system"] == system]
        lines = sum(len(w["lines"]) for w in mine)
        anomalous = sum(w["label"] == "anomalous" for w in mine)
        templates = len({line["template_id"] for w in mine for line in w["lines"]})
        print(
            f"  {system:<8} {policy:<15} {count:>4} windows, {lines:>5} lines, {templates:>3} templates, "
            f"{anomalous:>3} windows labeled anomalous"
        )
    example = next((w for w in windows if w["label"] == "anomalous" and w["system"] == "hdfs"), None)
    if example is not None:
        print(f"  e.g. anomalous HDFS block {example['key']}: {len(example['lines'])} lines, first templates:")
        for line in example["lines"][:3]:
            print(f"    [{line['template_id']}] {line['template']}")
    print(f"{len(dead)} dead letters:")
    for letter in dead:
        print(f"  {letter['topic']}[{letter['partition']}]@{letter['offset']} {letter['stage']}: {letter['reason']}")
