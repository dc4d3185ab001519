"""A real TransLog base trained on HDFS (2% of blocks, none of HDFS_5k's), published to a registry, for the
inference tests; adapters published on it; windows built the way the stream publishes them; and an inference worker
run on the session broker, with the windows it reads produced to it."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from filelock import FileLock

from harness.broker.running import RunningBroker
from harness.streaming import DATA, block_lines, settings_for
from stream.inference.model_host import ModelHost
from stream.inference.worker import InferenceWorker
from stream.model.artifacts import Manifest, load_base
from stream.model.detector import FitOptions
from stream.model.families import family_class
from stream.model.registry import Registry
from stream.pipeline.kafka_clients import make_producer
from stream.records import ANOMALOUS, NORMAL, Verdict, Window, WindowLine, encode, window_id_for
from stream.settings import Settings, SystemSettings
from trainer.datasets import Dataset, Split, default_split, limit, load_hdfs
from trainer.train import pretrain

BASE = "hdfs"
SYSTEM = "hdfs"  # the system the HDFS base serves: publish_adapter's target


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
    """The base trained and published to a registry at ``root``, once: a process that finds it published there (the
    other pytest-xdist workers of a session share ``root``) reads it back instead of training it again."""
    dataset, capped = _hdfs_training_data()
    registry = Registry(root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root.with_name(f"{root.name}.lock")):  # the first process trains; the others wait, then read
        base = registry.serving("base", BASE)
        if base is None:
            base = _train_and_publish(registry, dataset, capped)
    return TrainedHdfs(registry, base, dataset, capped, _signal_templates(dataset, capped.train))


def _hdfs_training_data() -> tuple[Dataset, Split]:
    dataset = load_hdfs(DATA / "hdfs" / "HDFS_2pct_blocks.log.gz", DATA / "hdfs" / "HDFS_2pct_anomaly_label.csv")
    held_out = set(block_lines(DATA / "hdfs" / "HDFS_5k.log"))  # the replayed blocks never train the model
    split = default_split(dataset, seed=0)
    train = [
        i
        for i in limit(dataset, split.train, max_anomalies=None, max_normals=1500)
        if dataset.windows[i].key not in held_out
    ]
    validation = [i for i in split.validation if dataset.windows[i].key not in held_out]
    return dataset, Split(tuple(train), tuple(validation), split.test, split.method, split.seed)


def _train_and_publish(registry: Registry, dataset: Dataset, capped: Split) -> Manifest:
    torch.set_num_threads(2)
    # min_steps=0: the 4 epochs asked for (the family's 300-step floor made them 6 on these 1,600 windows)
    options = FitOptions(epochs=4, seed=0, min_steps=0)
    trained = pretrain("translog", {"layers": 1, "max_len": 64}, dataset, capped, options=options)
    return registry.save_base(
        trained.detector,
        BASE,
        source="hdfs",
        threshold=trained.threshold,
        training=trained.training_summary(dataset, {"train": capped.train, "validation": capped.validation}),
        metrics={"validation": trained.validation},
    )


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
    registry: Registry,
    base: Manifest,
    system: str,
    *,
    seed: int,
    scale: float = 0.5,
    threshold: float | None = 0.0,
    metrics: dict | None = None,
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
    return registry.save_adapter(
        detector, system, base=manifest, threshold=threshold, training={}, metrics=metrics or {}
    )


def publish_adapter(registry: Registry, base: Manifest, seed: int) -> Manifest:
    """A real adapter artifact for SYSTEM on the registry's base, its weights moved off the identity a little (0.01),
    at the base's threshold, published as SYSTEM's next serving version."""
    return publish_nudged_adapter(
        registry, base, SYSTEM, seed=seed, scale=0.01, threshold=base.threshold, metrics={"seed": seed}
    )


def window_record(system: str, index: int, templates: tuple[str, ...], masked: tuple[str, ...]) -> dict:
    """A windows-topic record of a dataset window, its labels dropped: unlabeled, as the stream publishes them."""
    lines = tuple(
        WindowLine("logs", 0, index * 100 + i, 1_700_000_000_000 + i, i, template, text)
        for i, (template, text) in enumerate(zip(templates, masked, strict=True))
    )
    return Window(f"{system}-{index}", system, "session", f"k{index}", 0, 1, "gap", lines).to_dict()


def inference_settings(broker: RunningBroker, prefix: str, registry: Path, **inference) -> Settings:
    builtin = Settings().systems["hdfs"]
    # the built-in HDFS system (what the model was trained with), its sessions closed 3 s after the replay ends
    hdfs = SystemSettings(**{**builtin.model_dump(), "window": {**builtin.window, "idle_timeout_ms": 3000}})
    return settings_for(
        broker.bootstrap,
        prefix,
        broker.supports_idempotence,
        systems={"hdfs": hdfs},
        inference={"registry": str(registry), "publish_verdicts": True, "max_wait_ms": 50, **inference},
    )


class OutOfMemoryHost(ModelHost):
    """A real ModelHost whose first ``failures`` calls to ``score`` run out of device memory (raised where the
    model would raise it, before any work), as a GPU does while another process holds its memory; later calls score
    for real. ``before_failure(windows)`` runs on the model thread before each failure (a test's look at the broker
    then). ``calls`` counts every call, failed or not."""

    def __init__(
        self,
        registry: Registry,
        failures: int,
        *,
        before_failure: Callable[[Sequence[Window]], None] | None = None,
        **options,
    ) -> None:
        super().__init__(registry, **options)
        self.failures_left = failures
        self.before_failure = before_failure
        self.calls = 0

    def score(self, windows: Sequence[Window]) -> list[Verdict]:
        self.calls += 1
        if self.failures_left > 0:
            self.failures_left -= 1
            if self.before_failure is not None:
                self.before_failure(windows)
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return super().score(windows)


@asynccontextmanager
async def running_inference(settings: Settings) -> AsyncIterator[InferenceWorker]:
    stop = asyncio.Event()
    worker = InferenceWorker(settings, ModelHost(Registry(settings.inference.registry)))
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def produce_windows(settings: Settings, windows: list[Window]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for window in windows:
            await producer.send(settings.topics.windows, encode(window), key=window.system.encode())
        await producer.flush()
    finally:
        await producer.stop()
