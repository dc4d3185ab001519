"""The score cache: a window read before by the same adapter version gets that earlier verdict, exactly as scoring it
again would give; a new version never sees an older one's entries; the cache stays within its size."""

from __future__ import annotations

import pytest
import torch

from harness.inference import stream_window, windows_of
from stream.inference.model_host import ModelHost
from stream.inference.score_cache import Cached, ScoreCache, reading_key
from stream.model.artifacts import load_base
from stream.model.detector import WindowText
from stream.model.families import family_class
from stream.records import ANOMALOUS, Cause

SYSTEM = "hdfs"


def test_keys_tell_apart_targets_and_line_boundaries():
    assert reading_key(None, ["ab", "c"]) != reading_key(None, ["a", "bc"])
    assert reading_key(None, ["a"]) != reading_key("t", ["a"])
    assert reading_key("", ["a"]) != reading_key(None, ["a"])
    assert reading_key("t", ["a", "b"]) == reading_key("t", ("a", "b"))
    assert len(reading_key("t", ["x" * 10_000] * 100)) == 16  # a long window costs no more to keep


def test_lru_bound_and_dropping_a_target():
    cache = ScoreCache(2)
    keys = [reading_key(t, [str(i)]) for i, t in enumerate(["a", "a", "b"])]
    for key, target in zip(keys, ["a", "a", "b"], strict=True):
        cache.put(target, key, Cached(0.5, None))
    assert len(cache) == 2 and cache.get(keys[0]) is None  # the oldest left
    assert cache.get(keys[1]) == Cached(0.5, None)
    assert cache.drop_target("a") == 1 and len(cache) == 1 and cache.get(keys[1]) is None
    assert (cache.hits, cache.misses) == (1, 2)
    off = ScoreCache(0)
    off.put("a", keys[0], Cached(0.5, None))
    assert len(off) == 0
    with pytest.raises(ValueError, match=">= 0"):
        ScoreCache(-1)


@pytest.mark.parametrize(
    ("family", "config", "same", "different"),
    [
        # TransLog and LogTransfer read templates only, the last max_len of them
        ("translog", {"max_len": 2}, (("x", "a", "b"), ("m1", "m2", "m3")), (("a", "b", "c"), ())),
        ("logtransfer", {"max_len": 2}, (("x", "a", "b"), ()), (("a", "b", "c"), ())),
    ],
)
def test_each_family_says_what_it_reads(family, config, same, different):
    """(LogLLM's, the last max_lines masked lines, is tested in tests/unit/test_model_logllm.py on its loaded model.)"""
    detector = family_class(family).create(config, seed=0)
    reference = WindowText(("a", "b"))
    assert detector.reads(WindowText(*same)) == detector.reads(reference)
    assert detector.reads(WindowText(*different)) != detector.reads(reference)


@pytest.mark.slow
def test_a_repeated_window_gets_the_verdict_scoring_it_again_would_give(hdfs_registry):
    registry = hdfs_registry.registry
    cached, fresh = ModelHost(registry, explain_top=3), ModelHost(registry, explain_top=3, score_cache_size=0)
    test = windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:200])
    first = cached.score(test)
    assert cached.counts["windows_scored"] + cached.counts["windows_reused"] == len(test)
    again = cached.score(windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:200], system=SYSTEM))
    assert cached.counts["windows_reused"] >= len(test)  # the second pass read nothing
    reference = fresh.score(test)
    assert fresh.counts["windows_reused"] < len(test) and len(fresh.cache) == 0
    for one, two, ref in zip(first, again, reference, strict=True):
        assert one.score == two.score == pytest.approx(ref.score, abs=1e-6)
        assert one.explanation == two.explanation
        assert [c.template for c in one.explanation] == [c.template for c in ref.explanation]
    assert any(v.label == ANOMALOUS and v.explanation for v in again)  # explanations came from the cache too


@pytest.mark.slow
def test_a_new_adapter_version_reads_again_and_the_old_ones_entries_leave(hdfs_registry, tmp_path):
    trained = hdfs_registry.copy(tmp_path / "registry")
    registry, base = trained.registry, trained.base
    host = ModelHost(registry)
    window = windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:1])
    for seed in (1, 2):
        detector, manifest = load_base(registry.path("base", base.name, base.version))
        detector.precision = host.detector.precision  # score it as the host does
        detector.add_target(SYSTEM)
        generator = torch.Generator().manual_seed(seed)
        state = detector.adapter_state(SYSTEM)
        detector.load_adapter_state(
            SYSTEM, {n: t + 0.05 * torch.randn(t.shape, generator=generator) for n, t in state.items()}
        )
        registry.save_adapter(detector, SYSTEM, base=manifest, threshold=base.threshold, training={}, metrics={})
        host.refresh()
        verdict = host.score(window)[0]
        alone = detector.scores([WindowText(tuple(line.template for line in window[0].lines))], target=SYSTEM)[0]
        assert verdict.score == pytest.approx(alone, abs=1e-5)  # this version's score, not the cached previous one
        assert len(host.cache) == 1  # the previous version's entry left with it


@pytest.mark.slow
def test_identical_windows_in_one_batch_are_read_once(hdfs_registry):
    host = ModelHost(hdfs_registry.registry, score_cache_size=0)  # even without the cache
    lines = ["Receiving block <*> src: <*> dest: <*>", "PacketResponder <*> for block <*> terminating"]
    windows = [stream_window(SYSTEM, lines, key=f"blk_{i}") for i in range(5)]
    verdicts = host.score(windows)
    assert host.counts["windows_scored"] == 1 and host.counts["windows_reused"] == 4
    assert len({v.score for v in verdicts}) == 1 and len({v.window_id for v in verdicts}) == 5
    assert isinstance(verdicts[0].explanation, tuple) and all(isinstance(c, Cause) for c in verdicts[0].explanation)
