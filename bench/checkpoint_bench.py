"""Checkpoints of the session stage with all 11,501 HDFS_2pct blocks open: whole state against the changelog.

Writes ``bench/results/checkpoint.json``. Run with ``make bench-checkpoint`` (starts a local Apache Kafka, or uses
``KAFKA_BOOTSTRAP_SERVERS``). Both sides run in the same invocation on the same broker and the same state:

* **before** (baseline): the whole state in one format-1 record, as every build before the changelog wrote it
  (``snapshot()``, orjson, zlib level 1, one acknowledged send);
* **after**: ``CheckpointStore.save`` of the session stage's ``state_changes()`` (the sessions changed since the
  previous checkpoint, then the head, then tombstones of the versions they replace).

The HDFS_2pct lines go through the real ingest, parse and session processors in this process, all into one session
partition (the worst case: every block's state in one checkpoint; no ticks, so nothing closes). For each interval of
K lines the stage first takes in all but the last K lines and checkpoints (priming the changelog), then takes in the
last K and checkpoints again, which is what is measured: with every block open. The intervals: 400 lines (about
5 s of the whole HDFS cluster live, 11.2M lines in 38.7 h), 22,500 and 112,500 (1 s and 5 s of a backlog at the
stream's measured 22.5k lines/s). Also measured: the first checkpoint (every session written both ways) and the
restore of each (read the state partition, decode, rebuild the processor).

Seconds are wall time of the checkpoint's state part (encode and acknowledged writes), the part the runner's pause
scales with; the broker runs on the same 2 cores. ``--max-lines`` shortens the data for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline_bench import input_records  # noqa: E402
from harness.bench_results import machine, write_result  # noqa: E402
from harness.streaming import settings_for  # noqa: E402
from stream.decode import Decoder  # noqa: E402
from stream.gc_policy import tune_for_throughput  # noqa: E402
from stream.pipeline.changelog import encode_whole_state  # noqa: E402
from stream.pipeline.checkpoint import CheckpointStore  # noqa: E402
from stream.pipeline.ingest_stage import IngestPartition  # noqa: E402
from stream.pipeline.kafka_clients import ensure_topics, make_producer, topic_specs  # noqa: E402
from stream.pipeline.parse_stage import ParsePartition  # noqa: E402
from stream.pipeline.session_stage import STAGE, SessionPartition  # noqa: E402
from stream.pipeline.stage import InputRecord  # noqa: E402
from stream.settings import Settings  # noqa: E402

INTERVALS = {
    400: "about 5 s of the whole HDFS cluster, live (80 lines/s)",
    22_500: "1 s of a backlog at 22.5k lines/s",
    112_500: "5 s of a backlog at 22.5k lines/s",
}
WHOLE, CHANGELOG = 0, 1  # the sessions-topic partitions whose checkpoints the two sides write


class Stages:
    """ingest -> parse -> session in this process, as ``adaptlog run`` feeds them (pipeline_bench's way)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ingest = IngestPartition(settings, Decoder(settings))
        self.parse = ParsePartition(settings)
        self.session = SessionPartition(settings)
        self._lines_offset = self._sessions_offset = 0

    def take(self, records: list[InputRecord], fetch: int = 2000) -> None:
        topics = self.settings.topics
        for start in range(0, len(records), fetch):
            for line_out in self.ingest.process_batch(records[start : start + fetch]):
                lines = InputRecord(topics.lines, 0, self._lines_offset, line_out.key, line_out.value, 1_000)
                self._lines_offset += 1
                for out in self.parse.process_batch([lines]):
                    if out.topic == topics.sessions:
                        routed = InputRecord(topics.sessions, 0, self._sessions_offset, out.key, out.value, 1_000)
                        self._sessions_offset += 1
                        self.session.process_batch([routed])

    def open_sessions(self) -> int:
        return sum(stats.open_windows for stats in self.session.system_stats())


async def checkpoint_whole(settings: Settings, producer: Any, stages: Stages, offset: int) -> dict[str, Any]:
    started = time.perf_counter()
    value = encode_whole_state(offset, stages.session.snapshot())
    key = f"{STAGE}/{settings.topics.sessions}/{WHOLE}".encode()
    await producer.send_and_wait(settings.topics.state, value, key=key, partition=WHOLE)
    return {"bytes": len(key) + len(value), "seconds": round(time.perf_counter() - started, 4)}


async def checkpoint_changelog(
    store: CheckpointStore, settings: Settings, stages: Stages, offset: int
) -> dict[str, Any]:
    started = time.perf_counter()
    changes = stages.session.state_changes()
    written = await store.save(STAGE, settings.topics.sessions, CHANGELOG, offset, changes)
    return {
        "bytes": written,
        "seconds": round(time.perf_counter() - started, 4),
        "sessions_written": len(changes.entries),
    }


async def restore_seconds(settings: Settings, producer: Any, partition: int) -> float:
    started = time.perf_counter()
    checkpoint = (await CheckpointStore(settings, producer).load(STAGE, settings.topics.sessions, [partition]))[
        partition
    ]
    SessionPartition(settings, checkpoint)
    return round(time.perf_counter() - started, 3)


def ratios(whole: dict[str, Any], changelog: dict[str, Any]) -> dict[str, float]:
    return {
        "bytes_after_over_before": round(changelog["bytes"] / whole["bytes"], 4),
        "seconds_after_over_before": round(changelog["seconds"] / whole["seconds"], 4),
    }


async def interval(settings: Settings, records: list[InputRecord], lines: int, first: bool) -> dict[str, Any]:
    """Prime with all but the last ``lines`` lines, then measure the checkpoint after them (on fresh topics)."""
    await ensure_topics(settings, topic_specs(settings))
    producer = make_producer(settings)
    await producer.start()
    try:
        store = CheckpointStore(settings, producer)
        await store.load(STAGE, settings.topics.sessions, [CHANGELOG])
        stages = Stages(settings)
        stages.take(records[:-lines])
        open_then = stages.open_sessions()
        primed_whole = await checkpoint_whole(settings, producer, stages, 1)
        primed_changelog = await checkpoint_changelog(store, settings, stages, 1)
        stages.take(records[-lines:])
        # whole state twice around the changelog's one (it cannot repeat: its changes are taken), the best kept
        whole = [await checkpoint_whole(settings, producer, stages, 2)]
        changelog = await checkpoint_changelog(store, settings, stages, 2)
        whole.append(await checkpoint_whole(settings, producer, stages, 2))
        best_whole = min(whole, key=lambda w: w["seconds"])
        result: dict[str, Any] = {
            "lines": lines,
            "what": INTERVALS.get(lines, ""),
            "open_sessions": stages.open_sessions(),
            "before_whole_state": best_whole,
            "after_changelog": changelog,
            **ratios(best_whole, changelog),
        }
        if first:
            result["first_checkpoint"] = {
                "open_sessions": open_then,
                "before_whole_state": primed_whole,
                "after_changelog": primed_changelog,
                "note": f"every open session is written both ways (after the first {len(records) - lines} lines)",
            }
            result["restore_seconds"] = {
                "before_whole_state": await restore_seconds(settings, producer, WHOLE),
                "after_changelog": await restore_seconds(settings, producer, CHANGELOG),
                "note": "the changelog not yet compacted: the primed versions and their tombstones are read too",
            }
            result["whole_state_json_bytes"] = len(orjson.dumps(stages.session.snapshot()))
        return result
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lines", type=int, default=None)
    parser.add_argument("--intervals", type=int, nargs="+", default=list(INTERVALS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "checkpoint.json")
    args = parser.parse_args(argv)
    tune_for_throughput()  # as `adaptlog run` does
    from harness.broker.selection import bench_broker

    with bench_broker() as broker:
        base = settings_for(broker.bootstrap, "bench", broker.supports_idempotence)
        records = input_records(base, "hdfs", args.max_lines)
        runs = []
        for index, lines in enumerate(args.intervals):
            settings = settings_for(broker.bootstrap, f"ckpt-{uuid.uuid4().hex[:8]}", broker.supports_idempotence)
            runs.append(asyncio.run(interval(settings, records, lines, first=index == 0)))
            print(orjson.dumps(runs[-1]).decode(), flush=True)
        result = {
            "data": "HDFS_2pct_blocks.log.gz",
            "lines": len(records),
            "broker": broker.describe(),
            "machine": machine(),
            "intervals": runs,
        }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
