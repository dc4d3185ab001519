"""Detection quality on anomaly scores (not Prometheus metrics): F1 at a threshold, the best threshold, the PR
curve and its area.

Plain Python over lists (no scikit-learn): the same code scores validation inside ``fit`` and test in the trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Confusion:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 6),
            "recall": round(self.recall, 6),
            "f1": round(self.f1, 6),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def confusion(scores: Sequence[float], labels: Sequence[int], threshold: float) -> Confusion:
    """Predict anomalous where score >= threshold."""
    _check(scores, labels)
    return label_confusion([score >= threshold for score in scores], labels)


def label_confusion(predicted: Sequence[bool], truth: Sequence[bool | int]) -> Confusion:
    """Counts of predicted against true labels (anomalous = True): verdicts already carry their decision."""
    tp = fp = fn = tn = 0
    for guess, label in zip(predicted, truth, strict=True):
        if guess and label:
            tp += 1
        elif guess:
            fp += 1
        elif label:
            fn += 1
        else:
            tn += 1
    return Confusion(tp, fp, fn, tn)


def best_threshold(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The threshold with the best F1 on these windows -> (threshold, f1). Choose it on validation only.

    The flagged set with the best F1 is found by sweeping the observed scores; the threshold returned lies halfway
    between the lowest flagged score and the highest unflagged one. Any threshold in that gap gives the same F1
    here, and the middle leaves unseen windows the widest margin on both sides (the edge, the lowest flagged
    anomaly's own score, misses every test anomaly that scores a hair lower). Ties go to the smaller flagged set
    (fewer alerts for the same F1). With no anomalies in ``labels`` every threshold has F1 0; the answer is then
    just above the highest score, so nothing is flagged.
    """
    _check(scores, labels)
    if not scores:
        return 0.5, 0.0
    positives = sum(1 for label in labels if label)
    if positives == 0:
        return float(max(scores)) + 1e-6, 0.0
    # sweep thresholds from high to low: each step admits every window with that score
    ordered = sorted(zip(scores, labels, strict=True), key=lambda pair: -pair[0])
    best_t, best_f1, tp, fp, i = ordered[0][0], -1.0, 0, 0, 0
    below: float | None = None  # the highest score left out by best_t
    while i < len(ordered):
        threshold = ordered[i][0]
        while i < len(ordered) and ordered[i][0] == threshold:
            tp += 1 if ordered[i][1] else 0
            fp += 0 if ordered[i][1] else 1
            i += 1
        f1 = 2 * tp / (tp + fp + positives) if tp else 0.0
        if f1 > best_f1:
            best_t, best_f1 = threshold, f1
            below = ordered[i][0] if i < len(ordered) else None
    return (float(best_t) if below is None else (float(best_t) + float(below)) / 2), best_f1


def pr_curve(scores: Sequence[float], labels: Sequence[int]) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) for every distinct score, highest threshold first."""
    _check(scores, labels)
    positives = sum(1 for label in labels if label)
    ordered = sorted(zip(scores, labels, strict=True), key=lambda pair: -pair[0])
    points, tp, fp, i = [], 0, 0, 0
    while i < len(ordered):
        threshold = ordered[i][0]
        while i < len(ordered) and ordered[i][0] == threshold:
            tp += 1 if ordered[i][1] else 0
            fp += 0 if ordered[i][1] else 1
            i += 1
        points.append((float(threshold), tp / (tp + fp), tp / positives if positives else 0.0))
    return points


def pr_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the precision-recall curve as average precision (step-wise, as scikit-learn computes it)."""
    area, previous_recall = 0.0, 0.0
    for _, precision, recall in pr_curve(scores, labels):
        area += (recall - previous_recall) * precision
        previous_recall = recall
    return area


def _check(scores: Sequence[float], labels: Sequence[int]) -> None:
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
