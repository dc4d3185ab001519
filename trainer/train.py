"""Pretraining a base on a source system and tuning a target's adapter, with the threshold chosen on validation.

These are the steps behind ``adaptlog-train pretrain/adapt``, the results script and (later) the feedback service:

    base = pretrain("translog", {"layers": 1}, dataset, default_split(dataset))
    few = few_labels(target_data, default_split(target_data), max_anomalies=50, max_normals=None)
    tuned = adapt(base.detector, "thunderbird", target_data, few)

The threshold follows a named rule (``stream.model.thresholds``): ``best-f1`` on the validation windows by default
where they hold an anomaly (the figures of docs/results.md), the ``false-alarm-budget`` read off the validation
normals where they hold none. ``Trained.validation`` (the manifest's ``metrics.validation``) records the rule as
``threshold_rule`` and how it set the threshold as ``threshold_detail``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.model.artifacts import Manifest, load_base, save_base
from stream.model.detector import Detector, FitOptions, FitReport, Mode, Progress, WindowText
from stream.model.families import create_detector
from stream.model.quality import confusion
from stream.model.thresholds import (
    BEST_F1,
    DEFAULT_BUDGET_PER_1000,
    FALSE_ALARM_BUDGET,
    NORMALS_AND_TRAFFIC,
    SCORE_MIXTURE,
    ZERO_LABEL_RULES,
    ThresholdChoice,
    check_rule,
    choose_threshold,
    normals_and_traffic,
    score_mixture,
)
from stream.records import LABELED, ZERO_LABEL
from trainer.datasets import Dataset, Split, limit

if TYPE_CHECKING:  # torch is imported by a fit, not by this module
    from stream.model.training import UnlabeledObjective


@dataclass
class Trained:
    detector: Detector
    target: str | None  # None: the base model was trained
    threshold: float  # chosen on the validation windows by ``validation["threshold_rule"]``
    report: FitReport
    validation: dict[str, Any]  # precision/recall/F1 and counts on validation at that threshold, and its rule

    @property
    def threshold_rule(self) -> str | None:
        """The rule that set the threshold; None for a base saved before rules were recorded."""
        rule = self.validation.get("threshold_rule")
        return rule if isinstance(rule, str) else None

    def training_summary(self, dataset: Dataset, parts: dict[str, Sequence[int]]) -> dict[str, Any]:
        """What a manifest records about how this model was trained."""
        return {
            "dataset": dataset.name,
            "system": dataset.system,
            "sources": list(dataset.sources),
            "windows": {name: _counts(dataset, indices) for name, indices in parts.items()},
            "fit": self.report.to_dict(),
        }


@dataclass(frozen=True)
class FewLabels:
    """The labeled windows of a target: what trains and what picks the threshold (and stops early)."""

    train: tuple[int, ...]
    validation: tuple[int, ...]
    method: str


def inputs(dataset: Dataset, indices: Sequence[int]) -> tuple[list[WindowText], list[int]]:
    """Dataset windows -> what every family reads, and their labels."""
    windows = dataset.select(list(indices))
    return [WindowText(w.templates, w.masked) for w in windows], [w.label for w in windows]


def few_labels(
    dataset: Dataset,
    split: Split,
    *,
    max_anomalies: int | None,
    max_normals: int | None,
    seed: int = 0,
    validation_share: float = 0.2,
) -> FewLabels:
    """At most that many labeled anomalies and normals IN ALL (training and validation together) from the
    split's train and validation parts; a ``validation_share`` of each class (at least one window) picks the
    threshold. The test part is never touched, so the few-label model is scored on the same test as any other."""
    pool = limit(
        dataset, split.train + split.validation, max_anomalies=max_anomalies, max_normals=max_normals, seed=seed
    )
    rng = random.Random(f"few/{seed}")
    train: list[int] = []
    validation: list[int] = []
    for label in (0, 1):
        members = [i for i in pool if dataset.windows[i].label == label]
        rng.shuffle(members)
        held = max(1, round(len(members) * validation_share)) if len(members) > 1 else 0
        validation += members[:held]
        train += members[held:]
    method = (
        f"few labels: at most {max_anomalies} anomalous and {max_normals} normal windows of train+validation "
        f"(seed {seed}); {validation_share:.0%} of each class for validation"
    )
    return FewLabels(tuple(sorted(train)), tuple(sorted(validation)), method)


def fit_and_calibrate(
    detector: Detector, dataset: Dataset, train: Sequence[int], validation: Sequence[int], **how: Any
) -> Trained:
    """``fit_windows_and_calibrate`` on dataset windows by index; ``how``: its keyword arguments."""
    return fit_windows_and_calibrate(detector, inputs(dataset, train), inputs(dataset, validation), **how)


def fit_windows_and_calibrate(
    detector: Detector,
    train: tuple[Sequence[WindowText], Sequence[int]],
    validation: tuple[Sequence[WindowText], Sequence[int]],
    *,
    target: str | None,
    mode: Mode,
    options: FitOptions,
    progress: Progress | None = None,
    threshold_rule: str | None = None,
    budget_per_1000: float = DEFAULT_BUDGET_PER_1000,
    unlabeled: Sequence[WindowText] = (),
    objective: UnlabeledObjective | None = None,
) -> Trained:
    """Fit on the ``train`` windows and labels, stop early on ``validation`` (when it has both classes), choose the
    threshold there. Every trainer path ends here: ``pretrain``, ``adapt`` and the feedback service's retrain.
    With an ``objective`` (``stream.model.alignment``) the ``unlabeled`` windows train too: the fit adds its loss on
    them to every labeled batch's.

    ``threshold_rule``: one of ``stream.model.thresholds.RULES``; None is ``best-f1`` where the validation windows
    hold an anomaly and ``false-alarm-budget`` where they hold none (best-f1 could only flag nothing). The budget
    rules read false alarms off the validation normals plus the scores of ``unlabeled`` target windows (nearly all
    normal: their few anomalies count as false alarms, so the budget errs on the quiet side)."""
    check_rule(threshold_rule or BEST_F1, budget_per_1000)  # a bad rule fails before training, not after
    train_windows, train_labels = list(train[0]), list(train[1])
    val_windows, val_labels = list(validation[0]), list(validation[1])
    if len(set(val_labels)) == 2 and options.validation is None:
        options = replace(options, validation=(val_windows, val_labels))
    report = detector.fit(
        train_windows,
        train_labels,
        target=target,
        mode=mode,
        options=options,
        progress=progress,
        # the unlabeled windows train only under an objective; without one they only place the threshold (below)
        unlabeled=list(unlabeled) if objective is not None else (),
        objective=objective,
    )
    # without validation windows the training windows pick the threshold (optimistic: the manifest says so)
    windows, labels = (val_windows, val_labels) if val_labels else (train_windows, train_labels)
    scores = detector.scores(windows, target=target)
    choice = calibrate(
        scores,
        labels,
        detector.scores(list(unlabeled), target=target) if unlabeled else [],
        rule=threshold_rule,
        budget_per_1000=budget_per_1000,
    )
    quality: dict[str, Any] = confusion(scores, labels, choice.value).to_dict()
    quality["chosen_on"] = "validation" if val_labels else "training windows (no validation windows)"
    quality["threshold_rule"] = choice.rule
    quality["threshold_detail"] = choice.detail
    return Trained(detector, target, choice.value, report, quality)


def calibrate(
    scores: Sequence[float],
    labels: Sequence[int],
    unlabeled_scores: Sequence[float] = (),
    *,
    rule: str | None,
    budget_per_1000: float = DEFAULT_BUDGET_PER_1000,
) -> ThresholdChoice:
    """The threshold of ``rule`` (None: ``best-f1`` with an anomaly among ``labels``, else the budget) on labeled
    scores, their normals and any unlabeled scores being the false-alarm reference."""
    if rule is None:
        rule = BEST_F1 if any(labels) else FALSE_ALARM_BUDGET
    normals = [score for score, label in zip(scores, labels, strict=True) if not label]
    if rule == NORMALS_AND_TRAFFIC:  # normals and traffic are its two sides, never pooled
        reference, name = list(unlabeled_scores), f"{len(unlabeled_scores)} unlabeled windows"
    else:
        reference = [*normals, *unlabeled_scores]
        name = f"{len(normals)} labeled normal and {len(unlabeled_scores)} unlabeled windows"
    return choose_threshold(
        rule, scores, labels, reference_scores=reference, budget_per_1000=budget_per_1000, reference_name=name
    )


def pretrain(
    family: str,
    config: dict[str, Any],
    dataset: Dataset,
    split: Split,
    *,
    options: FitOptions | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
    threshold_rule: str | None = None,
    budget_per_1000: float = DEFAULT_BUDGET_PER_1000,
    unlabeled: Sequence[WindowText] = (),
    objective: UnlabeledObjective | None = None,
) -> Trained:
    """A new base trained on a source system (or from scratch on a target: the same thing, other data), on
    ``device`` ("auto": the first CUDA device when torch sees one); ``unlabeled`` target windows and an
    ``objective`` on them: see ``fit_windows_and_calibrate``."""
    options = options or FitOptions()
    detector = create_detector(family, config, seed=options.seed)
    detector.to_device(device)
    return fit_base(
        detector,
        dataset,
        split,
        options=options,
        progress=progress,
        threshold_rule=threshold_rule,
        budget_per_1000=budget_per_1000,
        unlabeled=unlabeled,
        objective=objective,
    )


def fit_base(
    detector: Detector,
    dataset: Dataset,
    split: Split,
    *,
    options: FitOptions,
    progress: Progress | None = None,
    threshold_rule: str | None = None,
    budget_per_1000: float = DEFAULT_BUDGET_PER_1000,
    unlabeled: Sequence[WindowText] = (),
    objective: UnlabeledObjective | None = None,
) -> Trained:
    """Train a new ``detector``'s base on the split's training part; its validation part stops early and sets the
    threshold. (``pretrain`` builds the detector; the CLI builds it itself, to refuse bad hyperparameters first.)"""
    return fit_and_calibrate(
        detector,
        dataset,
        split.train,
        split.validation,
        target=None,
        mode="base",
        options=options,
        progress=progress,
        threshold_rule=threshold_rule,
        budget_per_1000=budget_per_1000,
        unlabeled=unlabeled,
        objective=objective,
    )


def adapt(detector: Detector, target: str, dataset: Dataset, labels: FewLabels, **how: Any) -> Trained:
    """A new adapter for ``target`` on a trained base (replacing one of that name); the base stays as it is.
    ``how``: ``adapt_windows``' keyword arguments (options, progress, threshold_rule, budget_per_1000, unlabeled)."""
    return adapt_windows(detector, target, inputs(dataset, labels.train), inputs(dataset, labels.validation), **how)


def adapt_windows(
    detector: Detector,
    target: str,
    train: tuple[Sequence[WindowText], Sequence[int]],
    validation: tuple[Sequence[WindowText], Sequence[int]],
    *,
    options: FitOptions | None = None,
    progress: Progress | None = None,
    threshold_rule: str | None = None,
    budget_per_1000: float = DEFAULT_BUDGET_PER_1000,
    unlabeled: Sequence[WindowText] = (),
) -> Trained:
    """``adapt`` on windows and labels given as they are (the feedback service's stored examples)."""
    if target in detector.targets:
        detector.remove_target(target)
    detector.add_target(target)
    return fit_windows_and_calibrate(
        detector,
        train,
        validation,
        target=target,
        mode="adapter",
        options=options or FitOptions(),
        progress=progress,
        threshold_rule=threshold_rule,
        budget_per_1000=budget_per_1000,
        unlabeled=unlabeled,
    )


def zero_label(
    detector: Detector,
    target: str,
    unlabeled: Sequence[WindowText],
    *,
    normals: Sequence[WindowText] = (),
    budget_per_1000: float = DEFAULT_BUDGET_PER_1000,
    threshold_rule: str = FALSE_ALARM_BUDGET,
) -> Trained:
    """A target's first adapter from its unlabeled windows alone: the base's judgement, the target's threshold
    (``threshold_rule``: the false-alarm budget by default, or ``score-mixture`` / ``normals-and-traffic``, which
    read it off the unlabeled windows' scores: ``stream.model.thresholds``).

    A new adapter scores exactly as the base does in every family (TransLog's adapters start as the identity,
    LogTransfer's target LSTM as a copy of the source's, LogLLM's LoRA B at zero: tests/broker/test_zero_label.py and
    test_model_logllm.py), so
    nothing is trained: no label says what to learn. What the base cannot know is where the target's scores lie;
    the ``false-alarm-budget`` rule reads that off the unlabeled windows (and any labeled ``normals``: a
    supervised loss on normals alone would only teach the adapter to score everything low), so it flags about
    ``budget_per_1000`` of every 1,000 of the target's windows instead of whatever the source's threshold flags
    there. The unlabeled windows hold the target's few anomalies too, so the budget is an alert rate, and it errs
    on the quiet side. (Training on the unlabeled windows was measured and is not used here: LogTransfer's
    ``normal-replay`` in bench/transfer_curves.py took BGL -> HDFS from F1 0.000 to 0.422 at 10 alerts per 1,000,
    but lowered HDFS -> BGL from 0.143 to 0.045 and PR-AUC on both Thunderbird targets, and left the other pairs
    where they were: docs/transfer.md.)"""
    if not unlabeled and not normals:
        raise ValueError("a zero-label adapter needs unlabeled target windows or labeled normal ones")
    if threshold_rule not in ZERO_LABEL_RULES:
        raise ValueError(f"with no labeled anomaly only {' or '.join(ZERO_LABEL_RULES)} can set the threshold")
    if threshold_rule in (SCORE_MIXTURE, NORMALS_AND_TRAFFIC) and not unlabeled:
        raise ValueError(f"{threshold_rule} reads the target's unlabeled traffic, and none was given")
    check_rule(threshold_rule, budget_per_1000)
    if target in detector.targets:
        detector.remove_target(target)
    detector.add_target(target)
    scores = detector.scores(list(unlabeled), target=target) if unlabeled else []
    normal_scores = detector.scores(list(normals), target=target) if normals else []
    if threshold_rule == SCORE_MIXTURE:  # the traffic as it comes: labeled normals would dilute its upper mode
        choice = score_mixture(scores, budget_per_1000)
        choice.detail["reference"] = f"{len(scores)} unlabeled windows"
    elif threshold_rule == NORMALS_AND_TRAFFIC:
        choice = normals_and_traffic(normal_scores, scores, budget_per_1000)
    else:
        choice = calibrate(
            normal_scores, [0] * len(normal_scores), scores, rule=FALSE_ALARM_BUDGET, budget_per_1000=budget_per_1000
        )
    flagged = sum(1 for score in scores if score >= choice.value)
    quality: dict[str, Any] = {
        "chosen_on": f"{len(normals)} labeled normal and {len(unlabeled)} unlabeled target windows",
        "threshold_rule": choice.rule,
        "threshold_detail": choice.detail,
        "flagged_unlabeled": flagged,
    }
    return Trained(detector, target, choice.value, FitReport(), quality)


def supervision(anomalies: int) -> str:
    """What a target's adapter learned from, as its manifest and every verdict it gives say: ``zero-label`` (no
    labeled anomaly: its threshold comes from unlabeled or normal windows) or ``labeled``. (A verdict with no
    adapter at all is ``zero-shot``: the base alone.)"""
    return ZERO_LABEL if anomalies == 0 else LABELED


def _counts(dataset: Dataset, indices: Sequence[int]) -> dict[str, int]:
    anomalous = sum(1 for i in indices if dataset.windows[i].label)
    return {"windows": len(indices), "anomalous": anomalous}


def save_trained(
    trained: Trained,
    directory: str | Path,
    dataset: Dataset,
    parts: dict[str, Sequence[int]],
    *,
    alignment: dict[str, Any] | None = None,
) -> Manifest:
    """Write a trained base with what ``load_trained`` needs to give the same ``Trained`` back; ``alignment``: the
    target it was aligned to and how (``pretrain --align-to``), recorded in the manifest's training."""
    if trained.target is not None:
        raise ValueError("save_trained keeps bases; an adapter is published with save_adapter")
    training = trained.training_summary(dataset, parts)
    if alignment is not None:
        training["alignment"] = alignment
    return save_base(
        trained.detector,
        directory,
        source=dataset.system,
        threshold=trained.threshold,
        training=training,
        metrics={"validation": trained.validation},
    )


def load_trained(directory: Path) -> Trained:
    detector, manifest = load_base(directory)
    if manifest.threshold is None:
        raise ValueError(f"{directory}: the base has no threshold")
    report = FitReport.from_dict(manifest.training["fit"])
    return Trained(detector, None, manifest.threshold, report, dict(manifest.metrics["validation"]))
