"""Labeled data sets for training and evaluation: Loghub logs cut into the windows the stream would serve.

    dataset = load_hdfs(DATA / "hdfs/HDFS_5k.log", DATA / "hdfs/HDFS_5k_block_labels.csv")
    parts = default_split(dataset, seed=0)
    train = limit(dataset, parts.train, max_anomalies=10, max_normals=100, seed=0)
    manifest["training data"] = summary(dataset, parts)

Raw logs go through the stream's own formats, parser and windowers (``loghub``); already parsed sets (Hadoop
containers, BGL windows) are read as template sequences (``sequences``); ``splits`` splits them as the papers do.
"""

from __future__ import annotations

from trainer.datasets.loghub import builtin_system, load_hdfs, load_labeled_lines, read_block_labels
from trainer.datasets.model import ANOMALOUS, NORMAL, Dataset, LabeledWindow, Split
from trainer.datasets.sequences import load_bgl_windows, load_hadoop, load_sequences, read_templates
from trainer.datasets.splits import chronological_split, default_split, group_split, limit, summary

__all__ = [
    "ANOMALOUS",
    "NORMAL",
    "Dataset",
    "LabeledWindow",
    "Split",
    "builtin_system",
    "chronological_split",
    "default_split",
    "group_split",
    "limit",
    "load_bgl_windows",
    "load_hadoop",
    "load_hdfs",
    "load_labeled_lines",
    "load_sequences",
    "read_block_labels",
    "read_templates",
    "summary",
]
