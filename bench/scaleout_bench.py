"""One system's mining on 1, 2 and 4 ``adaptlog run`` workers through a real broker (issue "Scale one system across
workers", ``mining: keyed``).

Writes ``bench/results/scaleout.json``. Run with ``make bench-scaleout`` (starts a local Apache Kafka, or uses
``KAFKA_BOOTSTRAP_SERVERS``). Every figure is from one invocation on one broker (absolute rates on a shared 2-core
machine are noisy; read the ratios).

1. **Workers** (``workers``): HDFS_2pct (222k lines, session windows by block id) with ``mining: keyed``. N worker
   processes start on empty topics and join their groups; once each has logged an assignment, the 222k lines are
   replayed into ``logs`` (one input partition: replay keys records by system) and the workers work through them.
   lines/s from the broker time of the first ``lines`` record to that of the last window, less the idle timeout
   that closes the final sessions; the replay's own rate is recorded beside it, since it bounds what is measured.
2. **Templates** (``templates_identical``): every window line's (template_id, template) of each N against one
   ``KeyedParser`` fed the file in order, and every block's window whole (its lines, in source order).
3. **CPU path per core** (``cpu_path_lines_per_s_per_core``): the stage processors in one process (ingest with the
   Drain key, parse with the keyed miner, sessions), CPU time, against drain3 alone on the same lines' contents in
   the same run (``drain3_lines_per_s``).
4. **Baseline** (``whole_system_1_worker``): one worker mining HDFS whole (``mining: system``, as before keyed
   mining), in the same run: what keyed mining costs one worker, and what N keyed workers gain over it.

5. **BGL** (``bgl``): the same on BGL's 6.8k raw lines replayed ``--bgl-repeat`` times (the data holds no more raw
   BGL), count windows of 20 lines: a keyed system whose mined lines the session stage merges back into source
   order (``stream.pipeline.merge``). ``windows_identical``: every window (its lines' offsets, templates, text and
   labels, and its bounds) equal to one miner's reading the file in order; the CPU path keyed and merged against the
   whole-system path on the same lines, in the same run: what the merge costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from drain3.template_miner import TemplateMiner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.bench_results import cpu_seconds, machine, write_result  # noqa: E402
from harness.commands import start_adaptlog, stop_process  # noqa: E402
from harness.stages import comparable_windows, one_miner_windows  # noqa: E402
from harness.streaming import (  # noqa: E402
    DATA,
    block_lines,
    count_records,
    hdfs_system,
    settings_for,
    until_logged,
    worker_env,
    write_systems_file,
)
from stream.decode import Decoder  # noqa: E402
from stream.parsing.config import drain3_config  # noqa: E402
from stream.parsing.sharding import KeyedParser  # noqa: E402
from stream.pipeline.ingest_stage import IngestPartition  # noqa: E402
from stream.pipeline.kafka_clients import ensure_topics, topic_specs  # noqa: E402
from stream.pipeline.parse_stage import ParsePartition  # noqa: E402
from stream.pipeline.session_stage import SessionPartition  # noqa: E402
from stream.pipeline.stage import InputRecord  # noqa: E402
from stream.records import TICK, encode  # noqa: E402
from stream.replay import ReplayRecord, open_text, replay, replay_records  # noqa: E402
from stream.settings import Settings, SystemSettings  # noqa: E402
from stream.tail import read_records  # noqa: E402

PATH = DATA / "hdfs" / "HDFS_2pct_blocks.log.gz"
BGL_PATH = DATA / "bgl" / "BGL_raw_labeled_6.8k.log"
IDLE_MS = 10_000  # closes the final sessions; subtracted from the measured time where it closed the last window
WORKERS = (1, 2, 4)
BGL = SystemSettings(
    format="bgl",
    drain={"depth": 4, "sim_th": 0.5},
    window={"kind": "count_tumbling", "size": 20, "idle_timeout_ms": IDLE_MS},
)


def hdfs_settings(bootstrap: str, idempotent: bool, partitions: int, mining: str = "keyed") -> Settings:
    return bench_settings(bootstrap, idempotent, partitions, "hdfs", hdfs_system(IDLE_MS), mining)


def bench_settings(
    bootstrap: str, idempotent: bool, partitions: int, name: str, system: SystemSettings, mining: str = "keyed"
) -> Settings:
    return settings_for(
        bootstrap,
        f"scale-{uuid.uuid4().hex[:8]}",
        idempotent,
        checkpoint_interval_ms=Settings.model_fields["checkpoint_interval_ms"].default,  # production's
        internal_partitions=partitions,
        systems={name: system.model_copy(update={"mining": mining})},
    )


def run_workers(
    settings: Settings, workers: int, records: list[ReplayRecord], blocks: int, work: Path, broker_pid: int | None
) -> dict[str, Any]:
    """N workers joined, then the backlog replayed; returns the rate, the CPU seconds the workers and the broker
    spent from the replay's start to the last window (the broker shares this machine's 2 cores), and the windows."""
    asyncio.run(ensure_topics(settings, topic_specs(settings)))
    systems_file = write_systems_file(work / f"systems-{uuid.uuid4().hex[:6]}.yaml", dict(settings.systems))
    env = worker_env(settings, systems_file, dict(os.environ))
    env["ADAPTLOG_TICK_INTERVAL_MS"] = "250"
    logs = [work / f"worker-{workers}-{n}.log" for n in range(workers)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for log in logs:
            processes.append(start_adaptlog("run", env, log))
        until_logged(logs, "assigned", timeout_s=120)
        time.sleep(3)  # the last joiner's rebalance settles
        cpu_before = [cpu_seconds(p.pid) or 0.0 for p in processes], cpu_seconds(broker_pid)
        started = time.monotonic()
        asyncio.run(replay(settings, iter(records), next(iter(settings.systems))))
        replay_s = time.monotonic() - started
        while asyncio.run(count_records(settings, settings.topics.windows)) < blocks:
            if time.monotonic() - started > 900:
                raise RuntimeError(f"fewer than {blocks} windows after 900 s; see {work}")
            for process, log in zip(processes, logs, strict=True):
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited with {process.returncode}; see {log}")
            time.sleep(1.0)
        workers_cpu_s = sum((cpu_seconds(p.pid) or 0.0) - b for p, b in zip(processes, cpu_before[0], strict=True))
        broker_after = cpu_seconds(broker_pid)
        broker_cpu_s = broker_after - cpu_before[1] if broker_after is not None and cpu_before[1] is not None else None
    finally:
        for process in processes:
            stop_process(process)
    lines_ts = [r.timestamp for r in asyncio.run(read_records(settings, settings.topics.lines))]
    windows = asyncio.run(read_records(settings, settings.topics.windows))
    last = max(windows, key=lambda r: r.timestamp)
    # the idle timeout that closed the last window is waiting, not work (BGL's last count window closes full)
    waited_ms = IDLE_MS if orjson.loads(last.value)["reason"] == "idle" else 0
    seconds = (last.timestamp - min(lines_ts) - waited_ms) / 1000
    return {
        "lines_per_s": round(len(records) / seconds),
        "seconds": round(seconds, 3),
        "replay_lines_per_s": round(len(records) / replay_s),
        "workers_cpu_s": round(workers_cpu_s, 2),
        "broker_cpu_s": None if broker_cpu_s is None else round(broker_cpu_s, 2),
        "windows": [orjson.loads(r.value) for r in windows],
    }


def identical(windows: list[dict[str, Any]], expected: list[Any], truth: dict[str, list[int]]) -> dict[str, Any]:
    """Every line's template and id against one keyed miner; every block's window whole and in source order."""
    by_block = {w["key"]: w for w in windows}
    want = [(parsed.template_id, parsed.template) for parsed in expected]
    lines = [line for window in windows for line in window["lines"]]
    differing = sum((line["template_id"], line["template"]) != want[line["offset"]] for line in lines)
    whole = set(by_block) == set(truth) and all(
        [line["offset"] for line in by_block[block]["lines"]] == offsets for block, offsets in truth.items()
    )
    return {"lines_differing": differing, "windows_whole_in_source_order": whole}


def cpu_path(settings: Settings, records: list[ReplayRecord], contents: list[str]) -> dict[str, Any]:
    """Lines per CPU second through the three stage processors in one process, and drain3 alone on the contents."""
    topics = settings.topics
    name = next(iter(settings.systems))
    inputs = [InputRecord("logs", 0, i, name.encode(), r.value, 1_000 + i, r.headers) for i, r in enumerate(records)]
    partitions = settings.internal_partitions
    ingest = IngestPartition(settings, Decoder(settings), partitions)
    parses = [ParsePartition(settings, session_partitions=partitions) for _ in range(partitions)]
    sessions = [SessionPartition(settings, lines_partitions=partitions) for _ in range(partitions)]
    offsets: dict[tuple[str, int], int] = defaultdict(int)

    def record(topic: str, partition: int, key: bytes | None, value: bytes, now_ms: int) -> InputRecord:
        offsets[(topic, partition)] += 1
        return InputRecord(topic, partition, offsets[(topic, partition)], key, value, now_ms)

    windows = 0
    started = time.process_time()
    for start in range(0, len(inputs), 2000):
        now_ms = inputs[start].timestamp_ms
        for line_out in ingest.process_batch(inputs[start : start + 2000]):
            p = line_out.partition or 0
            for out in parses[p].process_batch([record(topics.lines, p, line_out.key, line_out.value, now_ms)]):
                if out.topic != topics.sessions:
                    windows += out.topic == topics.windows  # windowed by the parse stage (whole-system mining)
                    continue
                s = out.partition or 0
                routed = record(topics.sessions, s, out.key, out.value, now_ms)
                windows += sum(o.topic == topics.windows for o in sessions[s].process_batch([routed]))
    end_ms = inputs[-1].timestamp_ms + 3_600_000
    for s, session in enumerate(sessions):
        tick = record(topics.sessions, s, None, encode(TICK), end_ms)
        windows += sum(o.topic == topics.windows for o in session.process_batch([tick]))
    for p, parse in enumerate(parses):
        windows += sum(
            o.topic == topics.windows
            for o in parse.process_batch([record(topics.lines, p, None, encode(TICK), end_ms)])
        )
    ours_s = time.process_time() - started
    spec = settings.systems[name]
    miner = TemplateMiner(config=drain3_config(spec.drain_params(name), spec.mask_rules(name)))
    started = time.process_time()
    for content in contents:
        miner.add_log_message(content)
    drain3_s = time.process_time() - started
    return {
        "cpu_path_lines_per_s_per_core": round(len(inputs) / ours_s),
        "drain3_lines_per_s": round(len(contents) / drain3_s),
        "ratio_to_drain3": round(drain3_s / ours_s, 3),
        "windows": windows,
    }


def bgl_runs(broker: Any, counts: list[int], partitions: int, repeat: int, work: Path) -> dict[str, Any]:
    """BGL keyed with count windows (merged after mining) on N workers, against one miner's windows; the CPU path
    keyed and merged against the whole-system one; one worker mining it whole as the baseline."""
    text = [line for line in open_text(BGL_PATH) if line] * repeat
    path = work / "bgl.log"
    path.write_text("\n".join(text) + "\n")
    fmt = BGL.line_format("bgl")
    records = list(replay_records(path, "bgl", fmt))
    contents = [fmt.split(r.value.decode())[0] for r in records if r.value is not None]  # for drain3 alone
    expected = sorted(comparable_windows(one_miner_windows("bgl", BGL, path)))

    def settings(mining: str) -> Settings:
        return bench_settings(broker.bootstrap, broker.supports_idempotence, partitions, "bgl", BGL, mining)

    result: dict[str, Any] = {"dataset": f"{BGL_PATH.name} x {repeat}", "lines": len(records), "windows": len(expected)}
    result["cpu_path_keyed_merged"] = cpu_path(settings("keyed"), records, contents)
    result["cpu_path_whole_system"] = cpu_path(settings("system"), records, contents)
    workers: dict[str, Any] = {}
    for n in counts:
        run = run_workers(settings("keyed"), n, records, len(expected), work, broker.pid)
        unique = {w["window_id"]: w for w in run.pop("windows")}  # a rebalance may send a window twice
        run["windows_identical"] = sorted(comparable_windows(list(unique.values()))) == expected
        workers[str(n)] = run
        print(f"BGL {n} workers: {run}", file=sys.stderr, flush=True)
    baseline = run_workers(settings("system"), 1, records, len(expected), work, broker.pid)
    baseline.pop("windows")
    result.update(workers=workers, whole_system_1_worker=baseline)
    result["windows_identical"] = all(run["windows_identical"] for run in workers.values())
    if "1" in workers and "2" in workers:
        result["speedup_2_workers"] = round(workers["2"]["lines_per_s"] / workers["1"]["lines_per_s"], 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lines", type=int, help="only the first N HDFS lines (quick run)")
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scaleout.json")
    parser.add_argument("--bgl-repeat", type=int, default=20, help="BGL's 6.8k raw lines replayed this many times")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    partitions = max(counts)  # every worker can own a lines and a sessions partition
    text = [line for line in open_text(PATH) if line][: args.max_lines]
    truth = block_lines(PATH, args.max_lines)
    from harness.broker.selection import bench_broker

    with bench_broker() as broker:
        result: dict[str, Any] = {"machine": machine(), "broker": broker.describe(), "dataset": PATH.name}
        probe = hdfs_settings(broker.bootstrap, broker.supports_idempotence, partitions)
        fmt = probe.systems["hdfs"].line_format("hdfs")
        records = list(replay_records(PATH, "hdfs", fmt))[: args.max_lines]
        contents = [fmt.split(line)[0] for line in text]
        one_miner = KeyedParser(probe.systems["hdfs"].drain_params("hdfs"), probe.systems["hdfs"].mask_rules("hdfs"))
        expected = [one_miner.parse(content) for content in contents]
        result.update({"lines": len(records), "blocks": len(truth)})
        result.update(cpu_path(probe, records, contents))
        workers: dict[str, Any] = {}
        checks = []
        with tempfile.TemporaryDirectory() as tmp:
            for n in counts:
                settings = hdfs_settings(broker.bootstrap, broker.supports_idempotence, partitions)
                run = run_workers(settings, n, records, len(truth), Path(tmp), broker.pid)
                check = identical(run.pop("windows"), expected, truth)
                checks.append(check)
                workers[str(n)] = {**run, **check}
                print(f"{n} workers: {workers[str(n)]}", file=sys.stderr, flush=True)
            whole = hdfs_settings(broker.bootstrap, broker.supports_idempotence, partitions, mining="system")
            baseline = run_workers(whole, 1, records, len(truth), Path(tmp), broker.pid)
            blocks_whole = {w["key"] for w in baseline.pop("windows")} == set(truth)
            result["whole_system_1_worker"] = {**baseline, "every_block_windowed": blocks_whole}
        result["workers"] = workers
        result["templates_identical"] = all(
            c["lines_differing"] == 0 and c["windows_whole_in_source_order"] for c in checks
        )
        if "1" in workers and "2" in workers:
            result["speedup_2_workers"] = round(workers["2"]["lines_per_s"] / workers["1"]["lines_per_s"], 3)
        whole_rate = result["whole_system_1_worker"]["lines_per_s"]
        result["speedup_over_whole_system_1_worker"] = {
            n: round(run["lines_per_s"] / whole_rate, 3) for n, run in workers.items()
        }
        with tempfile.TemporaryDirectory() as tmp:
            result["bgl"] = bgl_runs(broker, counts, partitions, args.bgl_repeat, Path(tmp))
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
