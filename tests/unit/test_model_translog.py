"""TransLog: embedder, BGL pretraining, Thunderbird adapter tuning, state round trip, config validation (CPU)."""

from __future__ import annotations

import pytest
import torch

from harness.streaming import DATA
from stream.errors import ConfigError, IncompatibleArtifactError
from stream.model.detector import FitOptions, WindowText
from stream.model.embeddings import shared_embedder
from stream.model.features import FEATURE_VERSION, encode_batch
from stream.model.quality import best_threshold, confusion
from stream.model.translog import TransLogConfig, TransLogDetector
from stream.model.translog.fit import TransLogFit
from trainer.datasets import default_split, limit, load_bgl_windows, load_labeled_lines

pytestmark = pytest.mark.slow
torch.set_num_threads(2)


def texts(dataset, indices) -> tuple[list[WindowText], list[int]]:
    windows = dataset.select(indices)
    return [WindowText(w.templates, w.masked) for w in windows], [w.label for w in windows]


@pytest.fixture(scope="module")
def bgl_every50():
    # every 50th window of all of BGL: 4.6k windows over all 215 days, with the file's own time-ordered split
    dataset = load_bgl_windows(
        DATA / "bgl" / "bgl_windows20.csv.gz", DATA / "bgl" / "bgl_window_templates.csv", every=50
    )
    split = dataset.given_split
    return {name: texts(dataset, indices) for name, indices in split.parts().items()}


@pytest.fixture(scope="module")
def pretrained(bgl_every50) -> tuple[TransLogDetector, dict]:
    """The module's one BGL base, fitted with validation and patience so that the early-stopping test reads the same
    fit (one 4-epoch fit instead of two: the suite's time budget).
    min_steps=0: patience may stop it after any epoch (the 300-step floor held it for 3 before it could stop)."""
    detector = TransLogDetector.create({"layers": 1})
    options = FitOptions(epochs=4, seed=0, validation=bgl_every50["validation"], patience=1, min_steps=0)
    report = detector.fit(*bgl_every50["train"], target=None, mode="base", options=options)
    return detector, report


def test_embedder_caches_and_keeps_the_last_lines():
    embedder = shared_embedder()
    lines = ["Receiving block <*> src: <*> dest: <*>", "Received block <*> of size <*> from <*>", "kernel panic"]
    v = embedder.embed(lines)
    assert v.shape == (3, 384)
    assert torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-5)
    calls = embedder.encoder_calls
    again = embedder.embed([lines[2], lines[0], lines[0]])
    assert embedder.encoder_calls == calls  # all cached: encoder not run
    assert torch.equal(again[0], v[2]) and torch.equal(again[1], v[0])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])  # the two HDFS block templates are closer than a kernel panic
    x, mask = encode_batch(embedder, [lines, lines * 10], 4)
    assert x.shape == (2, 4, 384) and mask.tolist() == [[True, True, True, False], [True] * 4]
    assert torch.equal(x[1, 3], v[2])  # the last lines are kept
    assert FEATURE_VERSION
    assert embedder.identity()["name"] == "all-MiniLM-L6-v2" and len(embedder.identity()["sha256"]) == 64


def test_pretrain_on_bgl_beats_trivial_baseline(bgl_every50, pretrained):
    detector, report = pretrained
    threshold, f1_val = best_threshold(detector.scores(bgl_every50["validation"][0]), bgl_every50["validation"][1])
    test_windows, test_labels = bgl_every50["test"]
    result = confusion(detector.scores(test_windows), test_labels, threshold)
    baseline = confusion([1.0] * len(test_labels), test_labels, 0.5).f1
    print(
        f"\nBGL pretrain: losses {[round(v, 4) for v in report.losses]}, {report.seconds:.1f}s, "
        f"{report.parameters}; threshold {threshold:.3f} (validation F1 {f1_val:.3f}); test {result.to_dict()} vs "
        f"predict-all-anomalous F1 {baseline:.3f}"
    )
    assert report.losses[-1] < report.losses[0]
    assert result.f1 > baseline + 0.2
    assert report.parameters.trainable == report.parameters.total  # no adapters yet: everything trains


def test_adapter_tuning_on_thunderbird(pretrained):
    detector, _ = pretrained
    dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system="thunderbird")
    split = default_split(dataset, seed=0)
    train = texts(dataset, limit(dataset, split.train, max_anomalies=20, max_normals=400, seed=0))
    test = texts(dataset, split.test)
    probe = test[0][:64]
    base_before = detector.scores(probe)
    base_state = detector.base_state()

    detector.add_target("thunderbird")
    # a new target starts as the base: zero up-projections and copies of the layer norms and head
    assert detector.scores(probe, target="thunderbird") == pytest.approx(base_before, abs=1e-6)
    counts = detector.parameter_counts("adapter", "thunderbird")
    # min_steps=0: 8 epochs as asked (the family's 300-step floor made them 22 on these 420 windows)
    options = FitOptions(epochs=8, seed=0, min_steps=0)
    report = detector.fit(*train, target="thunderbird", mode="adapter", options=options)
    print(f"\nThunderbird adapter: {len(train[1])} windows, losses {[round(v, 4) for v in report.losses]}; {counts}")
    assert counts.trainable < 0.1 * counts.total
    assert report.losses[-1] < report.losses[0]
    # only the target's parameters changed; the base (used for every other system) is bit-identical
    after = detector.base_state()
    assert all(torch.equal(base_state[name], after[name]) for name in base_state)
    assert detector.scores(probe) == base_before
    validation = texts(dataset, split.validation)
    threshold, _ = best_threshold(detector.scores(validation[0], target="thunderbird"), validation[1])
    tuned = confusion(detector.scores(test[0], target="thunderbird"), test[1], threshold)
    baseline = confusion([1.0] * len(test[1]), test[1], 0.5).f1
    print(f"Thunderbird test: adapter {tuned.to_dict()} vs predict-all-anomalous F1 {baseline:.3f}")
    assert tuned.f1 > baseline


def test_gradients_reach_only_the_adapter(bgl_every50, pretrained):
    detector, _ = pretrained
    detector.add_target("grad-probe")
    try:
        windows, labels = bgl_every50["train"][0][:64], bgl_every50["train"][1][:64]
        # what the shared fit loop does in mode "adapter": everything frozen, then the adapter stage's parameters
        hooks = TransLogFit(detector.model, detector.cfg, detector.encode_compact, "grad-probe")
        for p in hooks.parameters():
            p.requires_grad_(False)
        (stage,) = hooks.stages("adapter")
        for p in stage.parameters.values():
            p.requires_grad_(True)
        x, mask = detector.encode(windows)
        detector.model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            detector.model(x, mask, "grad-probe"), torch.tensor(labels, dtype=torch.float)
        )
        loss.backward()
        for name, p in detector.model.named_parameters():
            if detector.model.is_adapter_parameter(name, "grad-probe"):
                # the up projections start at zero, so the down projections' gradient is zero on the first step
                if ".down." not in name:
                    assert p.grad is not None and p.grad.abs().sum() > 0, name
            else:
                assert p.grad is None, name
    finally:
        detector.remove_target("grad-probe")


def test_state_round_trip_and_refusal(bgl_every50, pretrained):
    detector, _ = pretrained
    if "thunderbird" not in detector.targets:
        detector.add_target("thunderbird")
    probe = bgl_every50["test"][0][:32]
    fresh = TransLogDetector.create(detector.config())
    fresh.load_base_state(detector.base_state())
    fresh.load_adapter_state("tb-copy", detector.adapter_state("thunderbird"))
    assert fresh.scores(probe) == detector.scores(probe)
    assert fresh.scores(probe, target="tb-copy") == detector.scores(probe, target="thunderbird")

    other = TransLogDetector.create({"layers": 2, "adapter_dim": 16})
    with pytest.raises(IncompatibleArtifactError) as caught:
        other.load_adapter_state("thunderbird", detector.adapter_state("thunderbird"))
    problems = caught.value.problems
    assert any("missing tensor layers.1." in p for p in problems)  # the 2-layer base has a second layer
    assert any("has shape [16, 384], expected" in p or "expected [16, 384]" in p for p in problems)
    assert len(problems) > 2


def test_fit_early_stopping_keeps_the_best_epoch(bgl_every50, pretrained):
    detector, report = pretrained  # the tests above only add adapters, which leave the base's scores as they were
    assert len(report.validation_f1) == len(report.losses)
    best = max(report.validation_f1)
    assert report.validation_f1[report.best_epoch] == best
    _, f1_now = best_threshold(detector.scores(bgl_every50["validation"][0]), bgl_every50["validation"][1])
    assert f1_now == pytest.approx(best)  # the best epoch's weights were put back


@pytest.mark.parametrize(
    ("values", "message"),
    [({"layers": 3}, "layers"), ({"heads": 7}, "divide"), ({"max_len": 0}, "max_len"), ({"depth": 2}, "unknown")],
)
def test_config_validation(values, message):
    with pytest.raises(ConfigError, match=message):
        TransLogConfig.from_dict(values)


def test_mixed_targets_in_one_pass_score_as_each_target_alone():
    """scores_mixed gathers each row's adapter, norms and head: the same scores as one target at a time."""
    detector = TransLogDetector.create({"layers": 2, "max_len": 20}, seed=0)
    generator = torch.Generator().manual_seed(0)
    for target in ("a", "b", "c"):
        detector.add_target(target)
        state = detector.adapter_state(target)
        detector.load_adapter_state(
            target, {n: t + 0.1 * torch.randn(t.shape, generator=generator) for n, t in state.items()}
        )
    lines = ("Receiving block <*> src: <*> dest: <*>", "PacketResponder <*> for block <*> terminating", "kernel panic")
    windows = [WindowText(lines[: 1 + i % 3]) for i in range(12)]
    targets = [None, "a", "b", "c"] * 3
    mixed = detector.scores_mixed(windows, targets, batch_size=5)
    alone = [detector.scores([w], target=t)[0] for w, t in zip(windows, targets, strict=True)]
    assert mixed == pytest.approx(alone, abs=1e-5)
    assert len({round(s, 4) for s in mixed[:4]}) == 4  # the targets really differ
    with pytest.raises(KeyError, match="unknown target"):
        detector.scores_mixed(windows[:1], ["nope"])
