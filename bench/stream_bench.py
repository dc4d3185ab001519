"""Stream workers through Kafka: throughput against a plain consume loop, and peak memory with 10k templates.

Writes ``bench/results/stream.json``. Run with ``make bench-stream`` (starts a local Apache Kafka, or uses
``KAFKA_BOOTSTRAP_SERVERS``). Both sides of each comparison run in the same invocation on the same broker, because
absolute figures on a shared 2-core machine are noisy; the ratios are what to read.

1. **Throughput**: the 222k lines of HDFS_2pct are produced into the input topic first (a backlog), then one
   ``adaptlog run`` process works through them. Measured from the broker timestamp of the first record it writes
   to the ``lines`` topic to that of the last window, less the idle timeout that closes the final sessions.
   Baseline (the ceiling): a plain aiokafka consume loop reading the same backlog on the same broker.
2. **Memory**: peak RSS (VmHWM) of an ``adaptlog run`` process that mines 10k distinct templates, next to one
   that mines the same number of lines with one template each of 20 systems (baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.bench_results import machine, write_result  # noqa: E402
from harness.streaming import DATA, count_records, hdfs_system, settings_for, worker_env, write_systems_file  # noqa: E402
from stream.pipeline.kafka_clients import (  # noqa: E402
    assign_from_beginning,
    ensure_topics,
    make_consumer,
    topic_specs,
)
from stream.replay import ReplayRecord, replay, replay_records  # noqa: E402
from stream.settings import Settings, SystemSettings  # noqa: E402
from stream.tail import read_records  # noqa: E402

# Longer than the whole run, so that only the end of the stream closes sessions (one window per block), and
# subtracted from the measured time: the figure is the processing, not the wait for the idle close.
IDLE_MS = 30_000
BLOCK = re.compile(rb"blk_-?\d+")


async def produce_backlog(settings: Settings, records: list[ReplayRecord], system: str) -> None:
    await ensure_topics(settings, topic_specs(settings))
    await replay(settings, iter(records), system)


async def plain_consume(settings: Settings, topic: str, expected: int) -> float:
    """Seconds for a bare aiokafka loop to read ``expected`` records of ``topic`` from the beginning."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        await assign_from_beginning(consumer, topic)
        seen = 0
        started = time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            seen += sum(len(records) for records in batch.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def run_worker_until(
    settings: Settings, systems: dict[str, SystemSettings], expected_windows: int, work: Path, timeout_s: float
) -> tuple[int, float]:
    """Start ``adaptlog run``; stop it once ``expected_windows`` windows are out. Returns (peak RSS kB, seconds)."""
    systems_file = write_systems_file(work / f"systems-{uuid.uuid4().hex[:6]}.yaml", systems)
    env = worker_env(settings, systems_file, dict(os.environ))
    env["ADAPTLOG_TICK_INTERVAL_MS"] = "250"
    log = (work / "worker.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "stream", "run"], env=env, stdout=log, stderr=log)
    started = time.monotonic()
    peak_kb = 0
    try:
        while time.monotonic() - started < timeout_s:
            time.sleep(1.0)
            peak_kb = max(peak_kb, _vm_hwm_kb(process.pid))
            if asyncio.run(count_records(settings, settings.topics.windows)) >= expected_windows:
                break
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}; see {work / 'worker.log'}")
        else:
            raise RuntimeError(f"fewer than {expected_windows} windows after {timeout_s}s; see {work / 'worker.log'}")
        peak_kb = max(peak_kb, _vm_hwm_kb(process.pid))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return peak_kb, time.monotonic() - started


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def throughput(bootstrap: str, idempotent: bool, max_lines: int | None, work: Path) -> dict[str, Any]:
    settings = settings_for(
        bootstrap,
        f"bench-{uuid.uuid4().hex[:8]}",
        idempotent,
        checkpoint_interval_ms=Settings.model_fields["checkpoint_interval_ms"].default,  # production's, not tests'
        systems={"hdfs": hdfs_system(IDLE_MS)},
    )
    path = DATA / "hdfs" / "HDFS_2pct_blocks.log.gz"
    records = list(replay_records(path, "hdfs", settings.systems["hdfs"].line_format("hdfs")))[:max_lines]
    blocks = {b for r in records for b in BLOCK.findall(r.value)}
    asyncio.run(produce_backlog(settings, records, "hdfs"))
    baseline_s = asyncio.run(plain_consume(settings, settings.topics.logs, len(records)))
    run_worker_until(settings, dict(settings.systems), len(blocks), work, timeout_s=900)
    lines_ts = [r.timestamp for r in asyncio.run(read_records(settings, settings.topics.lines))]
    window_ts = [r.timestamp for r in asyncio.run(read_records(settings, settings.topics.windows))]
    if len(window_ts) != len(blocks):
        raise RuntimeError(f"{len(window_ts)} windows for {len(blocks)} blocks: sessions were split or lost")
    adaptlog_s = (max(window_ts) - min(lines_ts) - IDLE_MS) / 1000
    return {
        "dataset": "HDFS_2pct_blocks (session windows by block id)",
        "lines": len(records),
        "windows": len(window_ts),
        "plain_aiokafka_consume": {"seconds": round(baseline_s, 3), "lines_per_s": round(len(records) / baseline_s)},
        "adaptlog_run": {
            "seconds": round(adaptlog_s, 3),
            "lines_per_s": round(len(records) / adaptlog_s),
            "note": f"first record into the lines topic -> last window, less the {IDLE_MS} ms idle close",
        },
        "ratio_adaptlog_to_ceiling": round((len(records) / adaptlog_s) / (len(records) / baseline_s), 3),
    }


def synthetic_lines(count: int, templates: int, seed: int = 7) -> list[str]:
    """Lines with ``templates`` distinct word patterns (no numbers, so masking cannot merge them), a number each."""
    rng = random.Random(seed)
    words = [f"w{chr(97 + i % 26)}{chr(97 + (i // 26) % 26)}{chr(97 + (i // 676) % 26)}" for i in range(4000)]
    shapes = [" ".join(rng.sample(words, 6)) for _ in range(templates)]
    return [f"{shapes[i % templates]} value {i}" for i in range(count)]


def memory(bootstrap: str, idempotent: bool, templates: int, lines: int, work: Path) -> dict[str, Any]:
    raw = SystemSettings(format="raw", drain={"max_clusters": 100_000}, window={"kind": "count_tumbling", "size": 20})
    results: dict[str, Any] = {}
    for name, count in (("baseline_1_template", 1), (f"{templates}_templates", templates)):
        settings = settings_for(bootstrap, f"bench-{uuid.uuid4().hex[:8]}", idempotent, systems={"raw": raw})
        records = [ReplayRecord(text.encode(), [("system", b"raw")]) for text in synthetic_lines(lines, count)]
        asyncio.run(produce_backlog(settings, records, "raw"))
        peak_kb, seconds = run_worker_until(settings, {"raw": raw}, lines // 20, work, timeout_s=900)
        results[name] = {
            "templates": count,
            "lines": lines,
            "peak_rss_mib": round(peak_kb / 1024, 1),
            "seconds": round(seconds, 1),
        }
    results["extra_mib_for_templates"] = round(
        results[f"{templates}_templates"]["peak_rss_mib"] - results["baseline_1_template"]["peak_rss_mib"], 1
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lines", type=int, help="replay only this many HDFS lines (quick run)")
    parser.add_argument("--templates", type=int, default=10_000)
    parser.add_argument("--memory-lines", type=int, default=40_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stream.json")
    args = parser.parse_args(argv)
    from harness.broker.selection import bench_broker

    with bench_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {
            "machine": machine(),
            "broker": broker.describe(),
            "throughput": throughput(broker.bootstrap, broker.supports_idempotence, args.max_lines, work),
            "memory": memory(broker.bootstrap, broker.supports_idempotence, args.templates, args.memory_lines, work),
        }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
