"""The stream worker's per-line CPU path against plain drain3: decode + mask + Drain + window, no Kafka I/O.

Ours: each raw record goes through the real stage processors exactly as ``adaptlog run`` feeds them (ingest:
decode and validate; parse: mask, mine, window or route by session key; session: session windows), including the
JSON envelopes the stages exchange. Baseline: drain3's ``TemplateMiner.add_log_message`` with the same mask rules
and Drain settings on the content of the same lines (cut out beforehand, outside the timing: drain3 alone does no
decoding and no windowing, so the comparison favours it). Best of ``--repeat``, sides alternated per round. Each part
of the per-line work is also timed alone (decode, mask + mine, session keys, window pushes); what the stages take
beyond their sum, ``stages_records_routing``, is the records between the stages (JSON envelopes, per-line dicts and
objects), dedup and routing.

Times are the process's CPU time (``time.process_time``; ``--clock wall`` for wall time, as before 2026-12): on the
shared 2-core machine other processes moved wall-time figures by 30% between two runs of one version, which hid
changes of 10%. Run against another checkout (its ``stream``, this bench) to compare versions in the same minute::

    python bench/pipeline_bench.py [--max-lines N] [--repeat 3] [--clock cpu|wall]   -> bench/results/pipeline.json
    PYTHONPATH=/path/to/other/checkout python bench/pipeline_bench.py --out /tmp/pipeline-before.json
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from drain3.template_miner import TemplateMiner

ROOT = Path(__file__).resolve().parents[1]
# Another checkout given by PYTHONPATH comes first: its stream package is the one measured.
if os.environ.get("PYTHONPATH"):
    sys.path.append(str(ROOT))
else:
    sys.path.insert(0, str(ROOT))

import stream  # noqa: E402
from harness.streaming import DATA  # noqa: E402
from stream.decode import Decoder, RawRecord  # noqa: E402
from stream.gc_policy import tune_for_throughput  # noqa: E402
from stream.parsing.config import drain3_config  # noqa: E402
from stream.parsing.miner import SystemParser  # noqa: E402
from stream.pipeline.ingest_stage import IngestPartition  # noqa: E402
from stream.pipeline.parse_stage import ParsePartition, session_keys  # noqa: E402
from stream.pipeline.session_stage import SessionPartition  # noqa: E402
from stream.pipeline.stage import InputRecord  # noqa: E402
from stream.records import TICK, encode  # noqa: E402
from stream.replay import replay_records  # noqa: E402
from stream.settings import Settings, load_settings  # noqa: E402
from stream.windowing import Item, build  # noqa: E402

# system -> file; the built-in systems give format, Loghub masks, Drain settings and windows (HDFS: sessions by
# block id; BGL and Thunderbird: tumbling windows of 20 lines).
DATASETS = {
    "hdfs": DATA / "hdfs" / "HDFS_2pct_blocks.log.gz",
    "bgl": DATA / "bgl" / "BGL_raw_labeled_6.8k.log",
    "thunderbird": DATA / "thunderbird" / "Thunderbird_19k.log.gz",
}
Clock = Callable[[], float]
CLOCKS: dict[str, Clock] = {"cpu": time.process_time, "wall": time.perf_counter}


def input_records(settings: Settings, system: str, max_lines: int | None) -> list[InputRecord]:
    fmt = settings.systems[system].line_format(system)
    replayed = list(replay_records(DATASETS[system], system, fmt))[:max_lines]
    return [InputRecord("logs", 0, i, system.encode(), r.value, 1_000 + i, r.headers) for i, r in enumerate(replayed)]


def time_stages(
    settings: Settings, records: list[InputRecord], clock: Clock, fetch: int = 2000
) -> tuple[float, int, int]:
    """Seconds through ingest -> parse -> session, windows closed, templates. Input is handed over in chunks of
    ``fetch`` records, as the consumer's getmany does; the internal records in between are batches of lines."""
    ingest = IngestPartition(settings, Decoder(settings))
    parse, session = ParsePartition(settings), SessionPartition(settings)
    topics = settings.topics
    windows = lines_offset = sessions_offset = 0
    started = clock()
    for start in range(0, len(records), fetch):
        chunk = records[start : start + fetch]
        now_ms = chunk[0].timestamp_ms
        for line_out in ingest.process_batch(chunk):
            lines_record = InputRecord(topics.lines, 0, lines_offset, line_out.key, line_out.value, now_ms)
            lines_offset += 1
            for out in parse.process_batch([lines_record]):
                if out.topic == topics.sessions:
                    keyed = InputRecord(topics.sessions, 0, sessions_offset, out.key, out.value, now_ms)
                    sessions_offset += 1
                    windows += sum(o.topic == topics.windows for o in session.process_batch([keyed]))
                else:
                    windows += out.topic == topics.windows
    # The stream's end: a tick past every idle timeout closes the open sessions and windows (timed too).
    end_ms = records[-1].timestamp_ms + 3_600_000 if records else 0
    tick = encode(TICK)
    closing = parse.process_batch([InputRecord(topics.lines, 0, lines_offset, None, tick, end_ms)])
    windows += sum(o.topic == topics.windows for o in closing)
    windows += len(session.process_batch([InputRecord(topics.sessions, 0, sessions_offset, None, tick, end_ms)]))
    seconds = clock() - started
    templates = sum(len(s["parser"]["clusters"]) for s in parse.snapshot()["systems"].values())
    return seconds, windows, templates


def time_parts(settings: Settings, system: str, records: list[InputRecord], clock: Clock) -> dict[str, float]:
    """Seconds of each part of the per-line work, alone: decode, mask + mine, session keys, windowing (pushes into
    the system's windower). The stages' time beyond their sum is their records (JSON envelopes, per-line dicts and
    objects), dedup and routing."""
    spec = settings.systems[system]
    decoder = Decoder(settings)
    raws = [RawRecord(r.topic, r.partition, r.offset, r.value, r.headers, r.timestamp_ms) for r in records]
    seconds: dict[str, float] = {}
    started = clock()
    lines = [decoder.decode_lines(raw)[0] for raw in raws]  # the bench's data holds no bad line
    seconds["decode"] = clock() - started
    parser = SystemParser(spec.drain_params(system), spec.mask_rules(system))
    started = clock()
    for line in lines:
        parser.parse(line.content)  # type: ignore[union-attr]
    seconds["mask_mine"] = clock() - started
    regex = re.compile(spec.session_key_pattern) if spec.window_kind == "session" and spec.session_key_pattern else None
    started = clock()
    keys = [session_keys(regex, line.content) if regex else [""] for line in lines]  # type: ignore[union-attr]
    seconds["session_keys"] = clock() - started if regex else 0.0
    windower = build(spec.window_policy, None)
    started = clock()
    for line, line_keys in zip(lines, keys, strict=True):
        for key in line_keys:
            windower.push(Item(line.event_ms, 0, {}), key=key)  # type: ignore[union-attr]
    seconds["window_push"] = clock() - started
    return seconds


def time_drain3(settings: Settings, system: str, contents: list[str], clock: Clock) -> tuple[float, int]:
    spec = settings.systems[system]
    miner = TemplateMiner(config=drain3_config(spec.drain_params(system), spec.mask_rules(system)))
    add = miner.add_log_message
    started = clock()
    for content in contents:
        add(content)
    return clock() - started, len(miner.drain.clusters)


def bench(settings: Settings, system: str, max_lines: int | None, repeat: int, clock: Clock) -> dict[str, Any]:
    records = input_records(settings, system, max_lines)
    fmt = settings.systems[system].line_format(system)
    contents = [fmt.split(r.value.decode())[0] for r in records if r.value is not None]
    best = {"adaptlog": float("inf"), "drain3": float("inf")}
    windows = templates = drain3_templates = 0
    for _ in range(repeat):
        gc.collect()
        seconds, drain3_templates = time_drain3(settings, system, contents, clock)
        best["drain3"] = min(best["drain3"], seconds)
        gc.collect()
        seconds, windows, templates = time_stages(settings, records, clock)
        best["adaptlog"] = min(best["adaptlog"], seconds)
        gc.collect()
        for part, seconds in time_parts(settings, system, records, clock).items():
            best[part] = min(best.get(part, float("inf")), seconds)
    lines = len(records)
    parts = {
        part: round(best[part] / lines * 1e6, 2) for part in ("decode", "mask_mine", "session_keys", "window_push")
    }
    parts["stages_records_routing"] = round(best["adaptlog"] / lines * 1e6 - sum(parts.values()), 2)
    return {
        "lines": lines,
        "adaptlog_decode_mask_drain_window": {
            "seconds": round(best["adaptlog"], 3),
            "lines_per_s": round(lines / best["adaptlog"]),
            "windows": windows,
            "templates": templates,
        },
        "drain3_add_log_message": {
            "seconds": round(best["drain3"], 3),
            "lines_per_s": round(lines / best["drain3"]),
            "templates": drain3_templates,
        },
        "ratio": round(best["drain3"] / best["adaptlog"], 2),
        # us a line, each part alone (time_parts); the last is the stages' time less the others
        "parts_us_per_line": parts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lines", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = parser.parse_args(argv)
    settings = load_settings()
    tune_for_throughput()  # as `adaptlog run` sets it
    results: dict[str, Any] = {
        system: bench(settings, system, args.max_lines, args.repeat, CLOCKS[args.clock]) for system in DATASETS
    }
    results["run"] = {"clock": args.clock, "stream": str(Path(stream.__file__).parent)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    for system in DATASETS:
        result = results[system]
        ours, theirs = result["adaptlog_decode_mask_drain_window"], result["drain3_add_log_message"]
        print(
            f"{system:<12} {result['lines']:>7} lines  adaptlog {ours['lines_per_s']:>8} lines/s "
            f"({ours['templates']} templates, {ours['windows']} windows)  drain3 {theirs['lines_per_s']:>8} lines/s "
            f"({theirs['templates']} templates)  ratio {result['ratio']}"
        )
        print(f"{'':<12} us a line: " + ", ".join(f"{part} {us}" for part, us in result["parts_us_per_line"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
