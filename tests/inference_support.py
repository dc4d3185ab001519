"""A real TransLog base trained on HDFS (2% of blocks, none of HDFS_5k's), published to a registry, for the
inference tests; and windows built the way the stream publishes them."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from stream.model.artifacts import Manifest, load_base
from stream.model.detector import FitOptions
from stream.model.families import family_class
from stream.model.registry import Registry
from stream.records import ANOMALOUS, NORMAL, Window, WindowLine, window_id_for
from tests.streaming import DATA, block_lines
from trainer.datasets import Dataset, Split, default_split, limit, load_hdfs
from trainer.train import pretrain

BASE = "hdfs"


@dataclass
class TrainedHdfs:
    registry: Registry
    base: Manifest
    dataset: Dataset
    split: Split
    signal_templates: list[str]  # templates seen (almost) only in anomalous training blocks, most telling first

    def copy(self, root: Path) -> TrainedHdfs:
        """The same, on a copy of the registry: for a test that publishes (the session's registry stays as trained)."""
        shutil.copytree(self.registry.root, root)
        return replace(self, registry=Registry(root))


def train_hdfs_registry(root: Path) -> TrainedHdfs:
    torch.set_num_threads(2)
    dataset = load_hdfs(DATA / "hdfs" / "HDFS_2pct_blocks.log.gz", DATA / "hdfs" / "HDFS_2pct_anomaly_label.csv")
    held_out = set(block_lines(DATA / "hdfs" / "HDFS_5k.log"))  # the replayed blocks never train the model
    split = default_split(dataset, seed=0)
    train = [
        i
        for i in limit(dataset, split.train, max_anomalies=None, max_normals=1500)
        if dataset.windows[i].key not in held_out
    ]
    validation = [i for i in split.validation if dataset.windows[i].key not in held_out]
    capped = Split(tuple(train), tuple(validation), split.test, split.method, split.seed)
    # min_steps=0: the 4 epochs asked for (the family's 300-step floor made them 6 on these 1,600 windows)
    options = FitOptions(epochs=4, seed=0, min_steps=0)
    trained = pretrain("translog", {"layers": 1, "max_len": 64}, dataset, capped, options=options)
    registry = Registry(root)
    base = registry.save_base(
        trained.detector,
        BASE,
        source="hdfs",
        threshold=trained.threshold,
        training=trained.training_summary(dataset, {"train": capped.train, "validation": capped.validation}),
        metrics={"validation": trained.validation},
    )
    return TrainedHdfs(registry, base, dataset, capped, _signal_templates(dataset, capped.train))


def _signal_templates(dataset: Dataset, indices: tuple[int, ...], count: int = 6) -> list[str]:
    anomalous: Counter[str] = Counter()
    everywhere: Counter[str] = Counter()
    for i in indices:
        window = dataset.windows[i]
        for template in set(window.templates):
            everywhere[template] += 1
            anomalous[template] += window.label
    candidates = [t for t in everywhere if everywhere[t] >= 5]
    return sorted(candidates, key=lambda t: (-anomalous[t] / everywhere[t], -everywhere[t]))[:count]


def stream_window(
    system: str, templates: list[str], masked: list[str] | None = None, label: str | None = None, key: str = "k"
) -> Window:
    """A closed window as the session stage publishes it (offsets 0..n-1 of topic 'logs')."""
    masked = masked or templates
    lines = tuple(
        WindowLine("logs", 0, i, 1_000 * (i + 1), i + 1, template, text, label)
        for i, (template, text) in enumerate(zip(templates, masked, strict=True))
    )
    return Window(
        window_id_for(system, "session", key, lines), system, "session", key, 1_000, 1_000 * len(lines), "gap", lines
    )


def windows_of(dataset: Dataset, indices, system: str = "hdfs") -> list[Window]:
    out = []
    for i in indices:
        w = dataset.windows[i]
        label = ANOMALOUS if w.label else NORMAL
        out.append(stream_window(system, list(w.templates), list(w.masked), label, key=w.key or str(i)))
    return out


def small_registry(root: Path, *, threshold: float = 0.0, max_len: int = 8) -> tuple[Registry, Manifest]:
    """A registry whose base is a small untrained TransLog (seed 0): real artifacts and a real model in seconds, for
    tests of how windows are served rather than how well. Threshold 0: every window is anomalous, so explained."""
    detector = family_class("translog").create({"layers": 1, "max_len": max_len}, seed=0)
    registry = Registry(root)
    base = registry.save_base(detector, BASE, source="hdfs", threshold=threshold, training={}, metrics={})
    return registry, base


def publish_nudged_adapter(
    registry: Registry, base: Manifest, system: str, *, seed: int, scale: float = 0.5, threshold: float | None = 0.0
) -> Manifest:
    """A real adapter artifact for ``system`` on the registry's base, its weights moved off the identity by
    ``scale`` (random, by ``seed``), published as the system's next serving version."""
    detector, manifest = load_base(registry.path("base", base.name, base.version))
    detector.add_target(system)
    generator = torch.Generator().manual_seed(seed)
    state = detector.adapter_state(system)
    detector.load_adapter_state(
        system, {n: t + scale * torch.randn(t.shape, generator=generator) for n, t in state.items()}
    )
    return registry.save_adapter(detector, system, base=manifest, threshold=threshold, training={}, metrics={})
