"""Retraining a target's adapter from stored labels, against the serving champion, on a real registry: the HDFS
TransLog base of the inference tests, Thunderbird as the target (real windows, real labels). The split of the labels
into held-out, validation and training parts is checked on the same windows and, as a property, on any labels."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.model.detector import FitOptions
from stream.model.families import family_class
from stream.model.registry import Registry
from trainer.datasets import Dataset
from trainer.feedback.retrain import RetrainPolicy, Split, due, next_retrain, retrain, share_of, split

TARGET = "thunderbird"
POLICY = RetrainPolicy(min_new_labels=50, max_interval_s=3600)


@dataclass(frozen=True)
class Example:
    window_id: str
    templates: tuple[str, ...]
    masked: tuple[str, ...]
    label: int


@pytest.fixture(scope="module")
def thunderbird_examples(thunderbird_19k: Dataset) -> list[Example]:
    return [Example(f"tb-{i}", w.templates, w.masked, w.label) for i, w in enumerate(thunderbird_19k.windows)]


@pytest.fixture
def registry(hdfs_registry, tmp_path) -> Registry:
    """A registry of this test's own, holding only the HDFS base."""
    shutil.copytree(hdfs_registry.registry.root / "bases", tmp_path / "registry" / "bases")
    return Registry(tmp_path / "registry")


@pytest.mark.slow
def test_a_retrain_beats_zero_shot_and_is_published_then_flipped_labels_are_rejected(registry, thunderbird_examples):
    examples = thunderbird_examples[450:850]  # its alerts begin near window 460
    options = FitOptions(seed=0, min_steps=150)
    first = retrain(registry, "hdfs", TARGET, examples, POLICY, options=options)
    assert first.published and first.version == "v0001", first.to_dict()
    assert first.champion["model"].endswith("(zero-shot)")
    assert first.challenger["f1"] > first.champion["f1"] and first.challenger["f1"] >= 0.8
    assert registry.serving("adapter", TARGET).version == "v0001"
    held = {e.window_id for e in split(examples, POLICY).held_out}
    assert held and not held & set(first.used)  # held-out windows never train
    print(f"zero-shot F1 {first.champion['f1']:.3f} -> adapter F1 {first.challenger['f1']:.3f}")

    # every window outside the held-out part relabeled with the opposite label (a careless bulk import)
    flipped = [e if e.window_id in held else Example(e.window_id, e.templates, e.masked, 1 - e.label) for e in examples]
    assert {e.window_id for e in split(flipped, POLICY).held_out} == held  # judged on the same windows
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


def test_the_next_retrain_is_said_as_the_service_decides_it():
    # POLICY: 50 new labels, or the oldest unused one waiting an hour, once there are 5 of each class
    few = {"anomalous": 2, "normal": 100, "unused": 102}
    assert next_retrain(POLICY, few, 0, None, 1000) == "after 3 more anomalous labels (a retrain needs 5 of each class)"
    counts = {"anomalous": 10, "normal": 100, "unused": 38}
    assert next_retrain(POLICY, counts, 0, None, 1000) == "after 12 more labels or at 1970-01-01T01:00:00.000Z"
    assert next_retrain(POLICY, counts | {"unused": 0}, None, None, 1000) == "after 50 more labels"
    assert next_retrain(POLICY, counts | {"unused": 50}, 0, None, 1000) == "now (50 new labels)"
    failed = {"failed": True, "failures": 2, "retry_at_ms": 5000}
    assert next_retrain(POLICY, counts | {"unused": 50}, 0, failed, 1000) == (
        "not before 1970-01-01T00:00:05.000Z (backing off after 2 failed retrains in a row)"
    )
    assert next_retrain(POLICY, counts | {"unused": 50}, 0, failed, 5000) == "now (50 new labels)"  # backed off


def _ids(examples) -> set[str]:
    return {e.window_id for e in examples}


def _classes(parts: Split) -> list[set[int]]:
    return [{e.label for e in part} for part in (parts.held_out, parts.validation, parts.train)]


@pytest.mark.slow
def test_fifty_labels_with_five_anomalies_put_an_anomaly_in_every_part(thunderbird_examples):
    examples = thunderbird_examples[435:485]  # the 50 windows up to the first alerts: 5 of them anomalous
    assert len(examples) == 50 and sum(e.label for e in examples) == 5
    # a split of all windows by hash alone, as before: its validation part gets no anomaly, so no retrain
    rest = [e for e in examples if share_of(e.window_id, "holdout") >= POLICY.holdout_share]
    assert not [e for e in rest if e.label and share_of(e.window_id, "validation") < POLICY.validation_share]
    parts = split(examples, POLICY)
    assert _classes(parts) == [{0, 1}] * 3, parts.sizes()


@pytest.mark.slow
def test_the_split_is_stable_as_thunderbird_labels_arrive(thunderbird_examples):
    before = None
    for count in (50, 100, 200, 368):  # the bench's label counts, from window 450 on
        parts = split(thunderbird_examples[450 : 450 + count], POLICY)
        assert _classes(parts) == [{0, 1}] * 3
        if before is not None:
            assert _ids(before.held_out) <= _ids(parts.held_out)  # held out once, held out for good
            assert not _ids(before.validation + before.train) & _ids(parts.held_out)  # no trained window is judged
        before = parts


def _example(window_id: str, label: int) -> Example:
    return Example(window_id, (), (), label)


labeled = st.lists(st.tuples(st.text(min_size=1, max_size=6), st.integers(0, 1)), unique_by=lambda t: t[0])


@given(labeled, st.integers(0, 80), st.sampled_from([0.1, 0.2, 0.5]), st.sampled_from([0.1, 0.2, 0.5]))
def test_any_split_is_a_partition_by_class_that_never_moves_a_trained_window_into_held_out(
    pairs, first, holdout_share, validation_share
):
    policy = RetrainPolicy(holdout_share=holdout_share, validation_share=validation_share)
    after = [_example(w, label) for w, label in pairs]
    before = after[:first]
    for examples in (before, after):
        parts = split(examples, policy)
        everything = parts.held_out + parts.validation + parts.train
        assert sorted(map(id, everything)) == sorted(map(id, examples))  # each window once, with its own label
        for part in (parts.held_out, parts.validation, parts.train):
            assert part == [e for e in examples if e in part]  # input order kept
        for label in (0, 1):
            if sum(e.label == label for e in examples) >= 3:
                assert all(label in classes for classes in _classes(parts))
    parts = split(before, policy)
    trained = all(classes == {0, 1} for classes in _classes(parts))  # else retrain declines and trains nothing
    used_before = _ids(parts.validation + parts.train) if trained else set()
    moved = used_before & _ids(split(after, policy).held_out)
    # only a window the cap kept out of a tiny class's held-out part may join it later
    assert all(share_of(w, "holdout") < holdout_share for w in moved)
    shuffled = split(after[::-1], policy)  # the parts depend on the windows, not on the order they come in
    assert _ids(shuffled.held_out) == _ids(split(after, policy).held_out)
    assert _ids(shuffled.validation) == _ids(split(after, policy).validation)


def test_a_challenger_that_finds_no_held_out_anomaly_is_never_published(tmp_path) -> None:
    # A small untrained base whose threshold no score reaches: the zero-shot champion's held-out F1 is 0. The labels
    # teach the challenger "A is anomalous, C is normal", but the held-out part says the opposite, so its held-out
    # F1 is 0 too: a tie, which the rule "at least the champion's F1 + margin" used to publish.
    registry = Registry(tmp_path / "registry")
    detector = family_class("translog").create({"layers": 1, "max_len": 20, "adapter_dim": 32}, seed=0)
    registry.save_base(detector, "base", source="test", threshold=1.0, training={}, metrics={})
    labeled = [_example(f"w{i}", i % 2) for i in range(60)]
    held = _ids(split(labeled, POLICY).held_out)
    anomalous, normal = ("kernel panic <*> fatal error",), ("user login <*> succeeded",)

    def templates(e: Example) -> tuple[str, ...]:
        return normal if (e.label == 1) == (e.window_id in held) else anomalous

    examples = [Example(e.window_id, templates(e), templates(e), e.label) for e in labeled]
    decision = retrain(registry, "base", "quiet", examples, POLICY, options=FitOptions(seed=0, min_steps=100))
    assert decision.champion["f1"] == 0.0 and decision.challenger["f1"] == 0.0, decision.to_dict()
    assert not decision.published and decision.version is None
    assert "finds no held-out anomaly" in decision.reason
    assert registry.versions("adapter", "quiet") == [] and registry.serving("adapter", "quiet") is None
    assert decision.used  # its labels were judged all the same: marked used, no retrain on them again
