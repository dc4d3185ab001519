"""The ingest stage's per-line cost for each input format: decode, validate, encode into ``lines`` envelopes.

Every case feeds the same HDFS lines (HDFS_2pct, each with its own time) through the real ingest stage
(``IngestPartition.process_batch``, fetches of 2000 records), as ``adaptlog run`` does: raw text lines (the
baseline, measured in the same run), adaptlog's json records, and each shipper preset's records as harness/shippers.py
builds them (otel: 50 log records a Kafka record). Best of ``--repeat``, cases alternated per round; CPU time of
the process (``time.process_time``), which other processes on a shared machine disturb far less than wall time.

Run against another checkout to compare code versions on the same machine in the same minute (only the raw and
json cases exist before input formats did)::

    python bench/decode_bench.py [--max-lines N] [--repeat 5] [--cases raw,json]   -> bench/results/decode.json
    PYTHONPATH=/path/to/other/checkout python bench/decode_bench.py --cases raw,json --out /tmp/decode-before.json
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
# Another checkout given by PYTHONPATH comes first: its stream package is the one measured.
if os.environ.get("PYTHONPATH"):
    sys.path.append(str(ROOT))
else:
    sys.path.insert(0, str(ROOT))

from stream.decode import Decoder  # noqa: E402
from stream.gc_policy import tune_for_throughput  # noqa: E402
from stream.pipeline.ingest_stage import IngestPartition  # noqa: E402
from stream.pipeline.stage import InputRecord  # noqa: E402
from stream.settings import Settings, load_settings  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TOPIC = "logs"
NOW_MS = 1_765_000_000_000


def timed_lines(max_lines: int) -> list[tuple[str, int]]:
    fmt = load_settings().systems["hdfs"].line_format("hdfs")
    with gzip.open(DATA / "hdfs" / "HDFS_2pct_blocks.log.gz", "rt", encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for _, line in zip(range(max_lines), handle, strict=False)]
    return [(line, fmt.split(line)[1]) for line in lines]  # type: ignore[misc]


def cases(lines: list[tuple[str, int]], wanted: set[str] | None) -> dict[str, tuple[dict[str, Any], list[bytes], Any]]:
    """name -> (settings overrides, record values, headers) for the wanted cases."""
    sys.path.insert(0, str(ROOT))  # this checkout's harness.shippers, whichever stream package is measured
    from harness import shippers

    builders: dict[str, Callable[[], list[bytes]]] = {
        "raw": lambda: [text.encode() for text, _ in lines],
        "json": lambda: [orjson.dumps({"system": "hdfs", "message": text, "ts": ms}) for text, ms in lines],
        "fluent-bit": lambda: shippers.fluent_bit(lines),
        "vector": lambda: shippers.vector(lines),
        "zap": lambda: shippers.zap(lines),
        "pino": lambda: shippers.pino(lines),
        "otel": lambda: shippers.otel(lines, "hdfs", per_record=50),
    }
    out = {}
    for name, build in builders.items():
        if wanted is not None and name not in wanted:
            continue
        if name in ("raw", "json"):
            out[name] = ({}, build(), [("system", b"hdfs")] if name == "raw" else [])
        else:
            overrides = {"input_formats": {TOPIC: {"preset": name}}, "default_systems": {TOPIC: "hdfs"}}
            out[name] = (overrides, build(), [])
    return out


def time_ingest(settings: Settings, values: list[bytes], headers: list[tuple[str, bytes]]) -> tuple[float, int]:
    records = [InputRecord(TOPIC, 0, i, None, v, NOW_MS, headers) for i, v in enumerate(values)]
    ingest = IngestPartition(settings, Decoder(settings))
    sent: list[bytes] = []
    lines_topic = settings.topics.lines
    started = time.process_time()
    for start in range(0, len(records), 2000):
        sent += [out.value for out in ingest.process_batch(records[start : start + 2000]) if out.topic == lines_topic]
    seconds = time.process_time() - started
    # counted outside the timing; another checkout (PYTHONPATH) may write format 1, before 2026-12-07
    return seconds, sum(len(d["rows"]) if "rows" in d else len(d["i"]) for d in map(orjson.loads, sent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", help="comma-separated (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decode.json")
    args = parser.parse_args(argv)
    tune_for_throughput()  # as `adaptlog run` sets it
    lines = timed_lines(args.max_lines)
    wanted = set(args.cases.split(",")) if args.cases else None
    selected = cases(lines, wanted)
    settings = {name: load_settings(**overrides) for name, (overrides, _, _) in selected.items()}
    best = dict.fromkeys(selected, float("inf"))
    emitted: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, (_, values, headers) in selected.items():
            gc.collect()
            seconds, emitted[name] = time_ingest(settings[name], values, headers)
            best[name] = min(best[name], seconds)
    import stream.decode

    results: dict[str, Any] = {
        "code": str(Path(stream.decode.__file__).resolve().parents[1]),
        "lines": len(lines),
        "cases": {
            name: {
                "seconds": round(seconds, 4),
                "us_per_line": round(seconds / len(lines) * 1e6, 3),
                "lines_per_s": round(len(lines) / seconds),
                "lines_out": emitted[name],
                "vs_raw": round(seconds / best["raw"], 2) if "raw" in best else None,
            }
            for name, seconds in best.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    for name, row in results["cases"].items():
        print(f"{name:<11} {row['us_per_line']:>7} us/line  {row['lines_per_s']:>8} lines/s  x{row['vs_raw']} raw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
