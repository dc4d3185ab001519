"""Retraining a target's adapter from stored labels, against the serving champion, on a real registry: the HDFS
TransLog base of the inference tests, Thunderbird as the target (real windows, real labels)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest

from stream.model.detector import FitOptions
from stream.model.registry import Registry
from tests.streaming import DATA
from trainer.datasets import load_labeled_lines
from trainer.feedback.retrain import RetrainPolicy, due, retrain, share_of

pytestmark = pytest.mark.slow
TARGET = "thunderbird"
POLICY = RetrainPolicy(min_new_labels=50, max_interval_s=3600)


@dataclass(frozen=True)
class Example:
    window_id: str
    templates: tuple[str, ...]
    masked: tuple[str, ...]
    label: int


@pytest.fixture(scope="module")
def thunderbird() -> list[Example]:
    dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system=TARGET)
    return [Example(f"tb-{i}", w.templates, w.masked, w.label) for i, w in enumerate(dataset.windows)]


@pytest.fixture
def registry(hdfs_registry, tmp_path) -> Registry:
    """A registry of this test's own, holding only the HDFS base."""
    shutil.copytree(hdfs_registry.registry.root / "bases", tmp_path / "registry" / "bases")
    return Registry(tmp_path / "registry")


def test_a_retrain_beats_zero_shot_and_is_published_then_flipped_labels_are_rejected(registry, thunderbird):
    examples = thunderbird[450:850]  # its alerts begin near window 460
    options = FitOptions(seed=0, min_steps=150)
    first = retrain(registry, "hdfs", TARGET, examples, POLICY, options=options)
    assert first.published and first.version == "v0001", first.to_dict()
    assert first.champion["model"].endswith("(zero-shot)")
    assert first.challenger["f1"] > first.champion["f1"] and first.challenger["f1"] >= 0.8
    assert registry.serving("adapter", TARGET).version == "v0001"
    held = {e.window_id for e in examples if share_of(e.window_id, "holdout") < POLICY.holdout_share}
    assert held and not held & set(first.used)  # held-out windows never train
    print(f"zero-shot F1 {first.champion['f1']:.3f} -> adapter F1 {first.challenger['f1']:.3f}")

    # every window outside the held-out part relabeled with the opposite label (a careless bulk import)
    flipped = [
        e
        if share_of(e.window_id, "holdout") < POLICY.holdout_share
        else Example(e.window_id, e.templates, e.masked, 1 - e.label)
        for e in examples
    ]
    second = retrain(registry, "hdfs", TARGET, flipped, POLICY, options=options)
    assert not second.published, second.to_dict()
    assert second.champion["model"] == "adapter v0001"
    assert second.challenger["f1"] < second.champion["f1"]
    assert registry.serving("adapter", TARGET).version == "v0001"
    assert [m.version for m in registry.versions("adapter", TARGET)] == ["v0001"]
    print(f"flipped labels: challenger F1 {second.challenger['f1']:.3f} < champion {second.champion['f1']:.3f}")


def test_retrain_waits_for_both_classes_and_enough_new_labels():
    counts = {"anomalous": 3, "normal": 100, "unused": 103}
    assert due(POLICY, counts, 0, 10**9) is None  # too few anomalies to judge anything
    counts = {"anomalous": 10, "normal": 100, "unused": 49}
    assert due(POLICY, counts, oldest_unused_ms=0, now_ms=1000) is None
    assert due(POLICY, counts | {"unused": 50}, oldest_unused_ms=0, now_ms=1000) == "50 new labels"
    assert "waiting 3600s" in due(POLICY, counts, oldest_unused_ms=0, now_ms=3_600_000)  # a trickle gets used too
    assert due(POLICY, counts | {"unused": 0}, oldest_unused_ms=None, now_ms=10**9) is None
