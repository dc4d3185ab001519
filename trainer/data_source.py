"""``--data PATH [--format F] ...`` -> a labeled Dataset, for every trainer command.

Formats (inferred from the path when not given):

    hdfs         raw HDFS log, one session window per block; --labels BlockId,Label CSV (default: beside the log)
    bgl          raw BGL log with Loghub's per-line label column, count windows (default 20 lines)
    thunderbird  raw Thunderbird log, as bgl
    bgl-windows  bgl_windows20.csv.gz (template ids) with --templates CSV (default: bgl_window_templates.csv beside)
    hadoop       the Loghub Hadoop directory (container sequences, labels by application)
    sequences    key,<template ids> files with --templates CSV and optional --labels CSV keyed by the key's prefix
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stream.errors import ConfigError

if TYPE_CHECKING:  # imported by load(): the trainer's parser (--help) needs only the arguments
    from trainer.datasets import Dataset

FORMATS = ("hdfs", "bgl", "thunderbird", "bgl-windows", "hadoop", "sequences")


@dataclass(frozen=True, slots=True)
class DataSource:
    paths: tuple[Path, ...]
    format: str
    labels: Path | None = None
    templates: Path | None = None
    window_size: int | None = None
    window_step: int | None = None
    every: int = 1  # bgl-windows: keep every n-th window (a sample spanning the whole period)

    def describe(self) -> str:
        return f"{self.format}:{','.join(map(str, self.paths))}"


def add_data_arguments(parser: argparse.ArgumentParser, *, flag: str = "--data", required: bool = True) -> None:
    dest = flag.lstrip("-").replace("-", "_")
    parser.add_argument(flag, dest=dest, type=Path, nargs="+", required=required, help="data file(s) or directory")
    parser.add_argument(f"{flag}-format", dest=f"{dest}_format", choices=FORMATS, help="default: from the path")
    parser.add_argument(f"{flag}-labels", dest=f"{dest}_labels", type=Path, help="label CSV (hdfs, sequences)")
    parser.add_argument(f"{flag}-templates", dest=f"{dest}_templates", type=Path, help="templates CSV (sequences)")
    parser.add_argument(f"{flag}-window-size", dest=f"{dest}_window_size", type=int, help="count window lines")
    parser.add_argument(f"{flag}-window-step", dest=f"{dest}_window_step", type=int, help="slide (sliding windows)")
    parser.add_argument(f"{flag}-every", dest=f"{dest}_every", type=int, default=1, help="bgl-windows: every n-th")


def source_from_arguments(args: argparse.Namespace, dest: str = "data") -> DataSource:
    paths = tuple(getattr(args, dest))
    return DataSource(
        paths=paths,
        format=getattr(args, f"{dest}_format") or infer_format(paths[0]),
        labels=getattr(args, f"{dest}_labels"),
        templates=getattr(args, f"{dest}_templates"),
        window_size=getattr(args, f"{dest}_window_size"),
        window_step=getattr(args, f"{dest}_window_step"),
        every=getattr(args, f"{dest}_every"),
    )


def infer_format(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() and (path / "Hadoop_templates.csv").exists():
        return "hadoop"
    for marker, fmt in (
        ("bgl_windows", "bgl-windows"),
        ("hdfs", "hdfs"),
        ("thunderbird", "thunderbird"),
        ("bgl", "bgl"),
    ):
        if marker in name:
            return fmt
    raise ConfigError("--data-format", f"cannot tell the format of {path} from its name; give one of {FORMATS}")


def load(source: DataSource) -> Dataset:
    """Read the data set; a missing or malformed file raises ConfigError naming the file and the problem."""
    from trainer.datasets import load_bgl_windows, load_hadoop, load_hdfs, load_labeled_lines, load_sequences

    for path in source.paths:
        if not path.exists():
            raise ConfigError("--data", f"{path} does not exist")
    first = source.paths[0]
    if source.format == "hdfs":
        labels = source.labels or _beside(first, ("_block_labels.csv", "_anomaly_label.csv"))
        return load_hdfs(first, labels)
    if source.format in ("bgl", "thunderbird"):
        return load_labeled_lines(first, system=source.format, size=source.window_size, step=source.window_step)
    if source.format == "bgl-windows":
        templates = source.templates or first.parent / "bgl_window_templates.csv"
        return load_bgl_windows(first, templates, every=source.every)
    if source.format == "hadoop":
        return load_hadoop(first)
    if source.format == "sequences":
        if source.templates is None:
            raise ConfigError("--data-templates", "the sequences format needs a templates CSV")
        return load_sequences(list(source.paths), source.templates, system="sequences", labels=source.labels)
    raise ConfigError("--data-format", f"unknown format {source.format!r}; known: {FORMATS}")


def _beside(log: Path, suffixes: tuple[str, ...]) -> Path:
    """HDFS_5k.log -> HDFS_5k_block_labels.csv; HDFS_2pct_blocks.log.gz -> HDFS_2pct_anomaly_label.csv."""
    stem = log.name.split(".")[0]
    candidates = [log.parent / f"{base}{suffix}" for base in (stem, stem.rsplit("_", 1)[0]) for suffix in suffixes]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise ConfigError("--data-labels", f"no block label CSV found beside {log}; tried {[c.name for c in candidates]}")
