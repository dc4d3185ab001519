"""The demo's models: a TransLog base pretrained on a bundled HDFS slice (reused from the local registry when it is
already there) and a BGL adapter tuned on the first half of a bundled BGL slice with a few labeled anomalies.

Training runs through ``adaptlog-train`` in a child process, exactly as an operator would run it (the stream package
never imports the trainer); its progress bars show on the terminal.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stream.errors import AdaptlogError
from stream.model.artifacts import Manifest
from stream.model.registry import Registry

BASE_NAME = "hdfs-demo"
SOURCE_LOG = "HDFS_source_2500.log.gz"  # 2,500 HDFS blocks, none of them in HDFS_5k
SOURCE_LABELS = "HDFS_source_2500_block_labels.csv"
TARGET_LOG = "BGL_6.8k.log.gz"  # 6,800 labeled BGL lines: the first half tunes the adapter, the second is replayed
TARGET_SYSTEM = "bgl"
TARGET_ANOMALIES = 30  # labeled anomalous BGL windows the adapter may use, in all
BASE_SETTINGS = (
    "--set",
    "max_len=64",
    "--set",
    "layers=1",
    "--max-normals",
    "1500",
    "--epochs",
    "4",
    "--min-steps",
    "0",
)


@dataclass(frozen=True)
class DemoModels:
    registry: Path
    base: Manifest
    adapter: Manifest
    replay_file: Path  # the target's lines no model saw: what the demo replays


def split_lines(source: Path, first: Path, second: Path) -> tuple[int, int]:
    """The gzip file's lines, first half into ``first``, the rest into ``second`` (both plain text)."""
    with gzip.open(source, "rt", encoding="utf-8") as f:
        lines = f.readlines()
    half = len(lines) // 2
    first.write_text("".join(lines[:half]), encoding="utf-8")
    second.write_text("".join(lines[half:]), encoding="utf-8")
    return half, len(lines) - half


def train(command: list[str], what: str) -> None:
    print(f"demo: {what} (adaptlog-train {command[0]}) ...", flush=True)
    done = subprocess.run([sys.executable, "-m", "trainer.cli", *command], check=False)
    if done.returncode != 0:
        raise AdaptlogError(f"demo: {what} failed (adaptlog-train exited with {done.returncode})")


def prepare_models(samples: Path, registry_root: Path, work: Path) -> DemoModels:
    registry = Registry(registry_root)
    base = registry.serving("base", BASE_NAME)
    if base is None:
        train(
            [
                "pretrain",
                "--family",
                "translog",
                "--data",
                str(samples / SOURCE_LOG),
                "--data-format",
                "hdfs",
                "--data-labels",
                str(samples / SOURCE_LABELS),
                *BASE_SETTINGS,
                "--name",
                BASE_NAME,
                "--out",
                str(work / "base"),
                "--registry",
                str(registry_root),
            ],
            f"pretraining the source model on {SOURCE_LOG}",
        )
        base = registry.serving("base", BASE_NAME)
        if base is None:
            raise AdaptlogError(f"demo: the base was not published to {registry_root}")
    else:
        print(f"demo: reusing the source model {BASE_NAME}/{base.version} from {registry_root}", flush=True)
    tuning, replay_file = work / "bgl-first-half.log", work / "bgl-second-half.log"
    tuned_lines, replayed_lines = split_lines(samples / TARGET_LOG, tuning, replay_file)
    train(
        [
            "adapt",
            "--base",
            str(registry.path("base", BASE_NAME, base.version or "")),
            "--data",
            str(tuning),
            "--data-format",
            "bgl",
            "--target",
            TARGET_SYSTEM,
            "--max-anomalies",
            str(TARGET_ANOMALIES),
            "--out",
            str(work / "adapter"),
            "--registry",
            str(registry_root),
        ],
        f"tuning a {TARGET_SYSTEM} adapter on {tuned_lines} lines "
        f"({TARGET_ANOMALIES} labeled anomalous windows at most)",
    )
    adapter = registry.serving("adapter", TARGET_SYSTEM)
    if adapter is None:
        raise AdaptlogError(f"demo: the adapter was not published to {registry_root}")
    print(
        f"demo: serving base {BASE_NAME}/{base.version} and adapter {TARGET_SYSTEM}/{adapter.version}; "
        f"replaying the other {replayed_lines} {TARGET_SYSTEM} lines",
        flush=True,
    )
    return DemoModels(registry_root, base, adapter, replay_file)
