"""How ModelHost serves adapters, on a real registry with a small untrained TransLog (see ``small_registry``):
every system gets its own detector target, explanations always refer to the window served, and an adapter
version is refused (once) only for what is wrong with it."""

from __future__ import annotations

import json

import orjson
import pytest

from harness.inference import publish_nudged_adapter, small_registry, stream_window
from stream.inference.model_host import UNREADABLE_POINTER, ModelHost, internal_name
from stream.model.artifacts import MANIFEST

RECEIVING = "Receiving block <*> src: <*> dest: <*>"
TERMINATING = "PacketResponder <*> for block <*> terminating"
DELETE_ERROR = "Unexpected error trying to delete block <*> BlockInfo not found in volumeMap."
LINES = [RECEIVING, RECEIVING, DELETE_ERROR, TERMINATING]


def test_target_names_tell_every_system_apart_and_stay_readable():
    systems = ["web-1", "web_1", "web.1", "web1", "web-1-", "web--1", "a__b", "a_5f_b", "a-_b"]
    names = {internal_name(system, "v0001") for system in systems}
    assert len(names) == len(systems)
    assert internal_name("hdfs", "v0002") == "hdfs__v0002"
    assert internal_name("web-1", "v0001") == "web_2d_1__v0001"
    assert all("." not in name for name in names)  # torch module names allow no dots


def test_systems_whose_names_differ_in_punctuation_are_served_by_their_own_adapters(tmp_path):
    registry, base = small_registry(tmp_path / "registry")
    publish_nudged_adapter(registry, base, "web-1", seed=1, scale=0.0)  # the identity: scores as the base does
    publish_nudged_adapter(registry, base, "web_1", seed=2, scale=0.5)
    host = ModelHost(registry, device="cpu", score_cache_size=0)
    assert sorted(host.refresh()) == ["web-1: zero-shot -> v0001", "web_1: zero-shot -> v0001"]
    assert len(host.detector.targets) == 2

    def score(system: str) -> float:
        return host.score([stream_window(system, LINES)])[0].score

    zero_shot = score("hdfs")
    assert score("web-1") == pytest.approx(zero_shot, abs=1e-5)
    assert score("web_1") != pytest.approx(zero_shot, abs=1e-3)

    publish_nudged_adapter(registry, base, "web_1", seed=3, scale=0.5)
    assert host.refresh() == ["web_1: v0001 -> v0002"]  # its old version leaves; web-1's adapter stays
    assert score("web-1") == pytest.approx(zero_shot, abs=1e-5)


@pytest.mark.parametrize("one_batch", [False, True])
def test_an_explanation_served_always_refers_to_the_window_served(tmp_path, one_batch):
    """Two windows with the same last max_len lines read the same (one score), but their explanations differ: the
    offsets are positions in each window, and occluding a template moves earlier lines into what the model reads."""
    registry, _ = small_registry(tmp_path / "registry", max_len=4)  # threshold 0: both windows are explained
    tail = [RECEIVING, RECEIVING, DELETE_ERROR, TERMINATING]
    first = stream_window("hdfs", [DELETE_ERROR] * 3 + tail, key="first")
    second = stream_window("hdfs", [TERMINATING] * 10 + tail, key="second")
    cached = ModelHost(registry, device="cpu")
    served = cached.score([first, second])[1] if one_batch else [*cached.score([first]), *cached.score([second])][1]
    assert cached.counts["windows_reused"] == 1  # the score was reused: the two read the same

    reference = ModelHost(registry, device="cpu", score_cache_size=0).score([second])[0]
    assert served.score == pytest.approx(reference.score, abs=1e-6)
    assert served.explanation and same_causes(served.explanation, reference.explanation)
    for cause in served.explanation:
        assert {second.lines[offset].template for offset in cause.offsets} == {cause.template}
        assert len(cause.offsets) == sum(line.template == cause.template for line in second.lines)

    again = cached.score([second])[0]  # the same window again: its own explanation, from the cache
    assert same_causes(again.explanation, reference.explanation)


def same_causes(served, reference) -> bool:
    """The same templates at the same offsets, in the same order, with the same weights as far as a score is the
    same (1e-6, as above): a weight is a difference of two scores, and scores computed in batches of other shapes
    are not bit-identical on CPU (MKL's kernels vary with shape and memory alignment: one ran at 3e-8 apart in a
    process where earlier tests had run)."""
    return [(c.template, c.offsets) for c in served] == [(c.template, c.offsets) for c in reference] and [
        c.weight for c in served
    ] == pytest.approx([c.weight for c in reference], abs=1e-6)


def publish_with_threshold(registry, base, system: str, threshold: float):
    """A sound adapter, then its manifest's threshold set to ``threshold`` (NaN and infinities are not JSON: a
    publisher would not write them, but a hand-edited or foreign manifest may hold them)."""
    manifest = publish_nudged_adapter(registry, base, system, seed=5, scale=0.1)
    path = registry.path("adapter", system, manifest.version) / MANIFEST
    path.write_text(json.dumps({**json.loads(path.read_text()), "threshold": threshold}))
    return manifest


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -0.1, 1.5])
def test_an_adapter_whose_threshold_is_no_probability_is_refused_and_the_previous_version_keeps_serving(
    tmp_path, threshold
):
    registry, base = small_registry(tmp_path / "registry")
    publish_nudged_adapter(registry, base, "hdfs", seed=1, scale=0.1, threshold=0.5)
    host = ModelHost(registry, device="cpu")
    assert host.refresh() == ["hdfs: zero-shot -> v0001"]
    bad = publish_with_threshold(registry, base, "hdfs", threshold)
    assert host.refresh() == []
    assert "threshold" in host.refused[("hdfs", bad.version)]
    assert host.counts["artifacts_refused"] == 1
    assert host.route("hdfs").adapter.version == "v0001" and host.route("hdfs").threshold == 0.5
    assert host.detector.targets == ["hdfs__v0001"]  # the refused version left no target behind


def test_an_adapter_trained_without_a_validation_anomaly_is_served_flagging_nothing(tmp_path):
    """Training with no anomalous validation window picks the top score plus 1e-6 (``best_threshold``): just above
    1, a real "flag nothing yet" adapter that the trainer publishes, so serving must not refuse it."""
    registry, base = small_registry(tmp_path / "registry")
    host = ModelHost(registry, device="cpu")
    publish_with_threshold(registry, base, "hdfs", 1.0 + 1e-6)
    assert host.refresh() == ["hdfs: zero-shot -> v0001"] and host.counts["artifacts_refused"] == 0
    assert host.route("hdfs").threshold == 1.0 + 1e-6


def test_an_unreadable_serving_pointer_is_counted_once_and_again_only_if_it_breaks_again(tmp_path):
    registry, base = small_registry(tmp_path / "registry")
    publish_nudged_adapter(registry, base, "bgl", seed=1, scale=0.1)
    pointer = registry.root / "adapters" / "bgl" / "SERVING"
    good = pointer.read_text()
    pointer.write_text("{not json")
    host = ModelHost(registry, device="cpu")
    for _ in range(3):
        assert host.refresh() == []
    assert host.counts["artifacts_refused"] == 1
    assert "unreadable" in host.refused[("bgl", UNREADABLE_POINTER)]
    pointer.write_text(good)
    assert host.refresh() == ["bgl: zero-shot -> v0001"]
    pointer.write_text("[]")
    host.refresh()
    host.refresh()
    assert host.counts["artifacts_refused"] == 2
    assert host.route("bgl").adapter.version == "v0001"  # still served while its pointer cannot be read


def test_a_version_that_could_not_be_read_is_tried_again_at_the_next_refresh(tmp_path):
    """A read that fails (here the manifest is, for a while, a directory: the read raises IsADirectoryError, as
    an I/O error of a network volume would raise) says nothing about the artifact: it is not refused for good."""
    registry, base = small_registry(tmp_path / "registry")
    manifest = publish_nudged_adapter(registry, base, "hdfs", seed=1, scale=0.1)
    path = registry.path("adapter", "hdfs", manifest.version) / MANIFEST
    aside = path.with_suffix(".aside")
    path.rename(aside)
    path.mkdir()
    host = ModelHost(registry, device="cpu")
    assert host.refresh() == [] and host.refresh() == []
    assert host.refused == {} and host.counts["artifacts_refused"] == 0
    assert host.counts["adapter_loads_retried"] == 2 and host.detector.targets == []
    path.rmdir()
    aside.rename(path)
    assert host.refresh() == ["hdfs: zero-shot -> v0001"]


def test_only_the_trainers_schedules_are_not_a_reason_to_poll_the_registry() -> None:
    from stream.inference.worker import changes_serving
    from stream.records import ModelUpdate, RetrainSchedule

    schedule = RetrainSchedule("bgl", 1_000, "after 10 more labels", {"total": 0, "unused": 0}).to_dict()
    assert not changes_serving(orjson.dumps(schedule))
    assert changes_serving(orjson.dumps(ModelUpdate("bgl", "v0002", "rolled back", 1_000).to_dict()))
    assert changes_serving(orjson.dumps({"kind": "retrain", "target": "bgl"}))
    assert changes_serving(b"not json") and changes_serving(None)  # unknown: poll, as before
