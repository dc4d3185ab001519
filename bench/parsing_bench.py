"""Parser throughput: SystemParser (one-pass masking + cached Drain) vs drain3's TemplateMiner, same settings.

Measures mask + parse only, on content already cut out of the raw lines and held in memory (reading, gunzip and
layout extraction are outside the timed part; the pipeline figure adds decode and windowing separately).
Both sides get the same Drain parameters and the same mask rules (drain3 as its own MaskingInstructions, built
explicitly), a fresh miner per run, and the best of ``--repeat`` runs counts, since a shared machine adds noise.

    python bench/parsing_bench.py [--data-dir ../shared/data] [--max-lines N] [--masks loghub|default]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from drain3.template_miner import TemplateMiner

from stream.parsing.config import DEFAULT_MASKS, LOGHUB_SETTINGS, DrainParams, MaskRule, drain3_config
from stream.parsing.miner import SystemParser

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "bench" / "results" / "parsing.json"

# Loghub Thunderbird layout: "... <Location> <Component>([<PID>])?: <Content>"; the component may hold spaces.
_TB_REST = re.compile(r"(?P<component>.*?)(?:\[(?P<pid>\d+)\])?: (?P<content>.*)")


def _open(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            yield line.rstrip("\n")


def hdfs_content(line: str) -> str:
    # <Date> <Time> <Pid> <Level> <Component>: <Content>
    parts = line.split(None, 5)
    return parts[5] if len(parts) > 5 else ""


def bgl_content(line: str) -> str:
    # <Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>
    parts = line.split(None, 9)
    return parts[9] if len(parts) > 9 else ""


def thunderbird_content(line: str) -> str:
    # <Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> <Component>([<PID>])?: <Content>
    parts = line.split(None, 8)
    rest = parts[8] if len(parts) > 8 else ""
    match = _TB_REST.fullmatch(rest)
    return match.group("content") if match else rest


# name -> (file under the data dir, content extractor, Loghub settings key)
DATASETS: dict[str, tuple[str, Callable[[str], str], str]] = {
    "HDFS": ("hdfs/HDFS_2pct_blocks.log.gz", hdfs_content, "HDFS"),
    "BGL_6.8k": ("bgl/BGL_raw_labeled_6.8k.log", bgl_content, "BGL"),
    "BGL_2k": ("parsing/BGL/BGL_2k.log", bgl_content, "BGL"),
    "Thunderbird": ("thunderbird/Thunderbird_19k.log.gz", thunderbird_content, "Thunderbird"),
}


def _time_ours(params: DrainParams, masks: tuple[MaskRule, ...], lines: list[str]) -> tuple[float, int]:
    parser = SystemParser(params, masks)
    parse = parser.parse
    start = time.perf_counter()
    for line in lines:
        parse(line)
    return time.perf_counter() - start, parser.cluster_count


def _time_drain3(params: DrainParams, masks: tuple[MaskRule, ...], lines: list[str]) -> tuple[float, int]:
    miner = TemplateMiner(config=drain3_config(params, masks))
    add = miner.add_log_message
    start = time.perf_counter()
    for line in lines:
        add(line)
    return time.perf_counter() - start, len(miner.drain.clusters)


def bench_one(lines: list[str], params: DrainParams, masks: tuple[MaskRule, ...], repeat: int) -> dict[str, object]:
    best = {"ours": float("inf"), "drain3": float("inf")}
    templates = {"ours": 0, "drain3": 0}
    for _ in range(repeat):
        # Alternate sides within a round so that drift of the machine's speed hits both alike.
        for side, run in (("drain3", _time_drain3), ("ours", _time_ours)):
            gc.collect()
            seconds, templates[side] = run(params, masks, lines)
            best[side] = min(best[side], seconds)
    result: dict[str, object] = {"lines": len(lines)}
    for side in ("ours", "drain3"):
        result[side] = {
            "seconds": round(best[side], 4),
            "lines_per_s": round(len(lines) / best[side]),
            "templates": templates[side],
        }
    result["ratio"] = round(best["drain3"] / best["ours"], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-lines", type=int, default=None, help="use only the first N lines of each file")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the best counts")
    parser.add_argument("--masks", choices=("loghub", "default"), default="loghub")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    results: dict[str, object] = {}
    print(
        f"{'dataset':<12} {'lines':>7} {'ours l/s':>10} {'drain3 l/s':>10} {'ratio':>6} {'tpl ours':>8} {'tpl d3':>7}"
    )
    for name, (relative, extract, settings_key) in DATASETS.items():
        path = args.data_dir / relative
        if not path.exists():
            print(f"{name:<12} missing {path}", file=sys.stderr)
            continue
        lines = [extract(line) for line in _open(path)][: args.max_lines]
        params, loghub_masks = LOGHUB_SETTINGS[settings_key]
        masks = loghub_masks if args.masks == "loghub" else DEFAULT_MASKS
        row = bench_one(lines, params, masks, args.repeat)
        row["masks"] = [rule.name for rule in masks]
        results[name] = row
        ours, d3 = row["ours"], row["drain3"]
        print(
            f"{name:<12} {row['lines']:>7} {ours['lines_per_s']:>10} {d3['lines_per_s']:>10} "  # type: ignore[index]
            f"{row['ratio']:>6} {ours['templates']:>8} {d3['templates']:>7}"  # type: ignore[index]
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(
        orjson.dumps({"masks": args.masks, "repeat": args.repeat, "datasets": results}, option=orjson.OPT_INDENT_2)
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
