"""ModelHost on a real registry with a real HDFS-trained TransLog base: zero-shot verdicts, adapter versions swapped
in by refresh, corrupt and foreign adapters refused while the previous version keeps serving, and occlusion
explanations that name an injected anomalous line."""

from __future__ import annotations

import pytest

from harness.inference import SYSTEM, publish_adapter, stream_window, windows_of
from stream.inference.model_host import ModelHost, window_text
from stream.model.artifacts import WEIGHTS, save_base
from stream.model.families import family_class
from stream.model.quality import confusion
from stream.model.registry import Registry
from stream.records import ANOMALOUS

pytestmark = pytest.mark.slow


def test_zero_shot_then_each_published_version_serves_after_refresh(hdfs_registry, tmp_path):
    trained = hdfs_registry.copy(tmp_path / "registry")  # it publishes: the session's registry stays as trained
    registry, base = trained.registry, trained.base
    host = ModelHost(registry, explain_top=3)
    test = windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:300])
    verdicts = host.score(test)
    assert [v.window_id for v in verdicts] == [w.window_id for w in test]
    assert all(v.zero_shot and v.adapter_version is None and v.model == "hdfs/v0001" for v in verdicts)
    truth = [int(w.label == ANOMALOUS) for w in test]
    f1 = confusion([v.score for v in verdicts], truth, base.threshold).f1
    trivial = 2 * sum(truth) / (len(truth) + sum(truth))
    assert f1 > max(0.8, trivial), f1  # the base really detects HDFS anomalies
    assert all(v.explanation for v in verdicts if v.label == ANOMALOUS)
    assert all(not v.explanation for v in verdicts if v.label != ANOMALOUS)

    publish_adapter(registry, base, seed=1)
    assert host.refresh() == ["hdfs: zero-shot -> v0001"]
    assert host.refresh() == []  # nothing changed
    after = host.score(test[:5])
    assert all(v.adapter_version == "v0001" and not v.zero_shot for v in after)

    publish_adapter(registry, base, seed=2)
    assert host.refresh() == ["hdfs: v0001 -> v0002"]
    assert host.detector.targets == ["hdfs__v0002"]  # the old version left memory
    assert {v.adapter_version for v in host.score(test[:5])} == {"v0002"}


def test_corrupt_and_foreign_adapters_are_refused_and_the_previous_version_keeps_serving(hdfs_registry, tmp_path):
    trained = hdfs_registry.copy(tmp_path / "registry")
    registry, base = trained.registry, trained.base
    publish_adapter(registry, base, seed=1)
    host = ModelHost(registry)
    host.refresh()
    serving = host.route(SYSTEM).adapter.version
    window = windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:1])

    corrupt = publish_adapter(registry, base, seed=3)
    weights = registry.path("adapter", SYSTEM, corrupt.version) / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-64] + b"\0" * 64)
    assert host.refresh() == []
    assert host.counts["artifacts_refused"] == 1
    assert "sha256" in host.refused[(SYSTEM, corrupt.version)]
    assert host.score(window)[0].adapter_version == serving
    host.refresh()
    assert host.counts["artifacts_refused"] == 1  # refused once, not at every refresh

    other = family_class("translog").create({"layers": 1, "max_len": 64}, seed=7)
    other_base = save_base(other, tmp_path / "other", source="elsewhere", threshold=0.5, training={}, metrics={})
    other.add_target(SYSTEM)
    foreign = registry.save_adapter(other, SYSTEM, base=other_base, threshold=0.5, training={}, metrics={})
    assert host.refresh() == []
    assert "trained on base" in host.refused[(SYSTEM, foreign.version)]
    assert host.score(window)[0].adapter_version == serving
    assert host.detector.targets == [f"hdfs__{serving}"]


def test_the_explanation_names_an_injected_anomalous_line(hdfs_registry):
    """A template seen only in anomalous training blocks, injected into a normal test block: where the window's
    verdict turns anomalous, the heaviest cause is that line, at its offset."""
    host = ModelHost(hdfs_registry.registry, explain_top=3)
    dataset, split = hdfs_registry.dataset, hdfs_registry.split
    normals = [i for i in split.test if not dataset.windows[i].label and len(dataset.windows[i].templates) >= 10]
    flipped = 0
    for signal in hdfs_registry.signal_templates:
        for i in normals[:15]:
            templates = list(dataset.windows[i].templates)
            if signal in templates or host.score([stream_window(SYSTEM, templates)])[0].label == ANOMALOUS:
                continue
            at = len(templates) // 2
            spiked = host.score([stream_window(SYSTEM, [*templates[:at], signal, *templates[at:]])])[0]
            if spiked.label != ANOMALOUS:
                continue  # this template alone does not convince the model: nothing to explain
            flipped += 1
            top = spiked.explanation[0]
            assert top.template == signal, (signal, spiked.explanation)
            assert top.offsets == (at,)
            assert top.weight > 0 and all(top.weight >= cause.weight for cause in spiked.explanation)
    assert flipped >= 10, f"only {flipped} injected windows turned anomalous: the test checked too little"


@pytest.mark.parametrize(("family", "config"), [("logtransfer", {}), ("logllm", {"max_lines": 4})])
def test_every_family_serves_through_the_host_with_adapters_and_explanations(family, config, tmp_path, request):
    """The host is family-agnostic: a LogTransfer or LogLLM base and adapter from a registry score mixed batches
    (zero-shot and adapter rows together) and explain what they flag."""
    if family == "logllm":  # SmolLM2 from its GGUF's export: the same weights, read in a second, not twice from GGUF
        config = {**config, "decoder": str(request.getfixturevalue("smollm2_dir"))}
    registry = Registry(tmp_path / "registry")
    detector = family_class(family).create(config, seed=0)
    base = registry.save_base(detector, "base", source="hdfs", threshold=0.0, training={}, metrics={})
    detector.add_target("bgl")
    registry.save_adapter(detector, "bgl", base=base, threshold=0.0, training={}, metrics={})
    host = ModelHost(registry)
    assert host.refresh() == ["bgl: zero-shot -> v0001"]
    lines = ["Receiving block <BLK> src: <IP> dest: <IP>", "PacketResponder <NUM> for block <BLK> terminating"]
    windows = [stream_window(system, lines, key=system) for system in ("hdfs", "bgl", "hdfs")]
    verdicts = host.score(windows)
    assert [v.adapter_version for v in verdicts] == [None, "v0001", None]
    assert all(v.family == family and v.label == ANOMALOUS and v.explanation for v in verdicts)  # threshold 0
    assert {cause.template for v in verdicts for cause in v.explanation} <= set(lines)
    alone = host.detector.scores([window_text(windows[1])], target=host.route("bgl").target)
    assert verdicts[1].score == pytest.approx(alone[0], abs=1e-5)
