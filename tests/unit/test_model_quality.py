"""Detection metrics: the counts every F1 in the repo comes from (trainer evaluation, demo summary, benches)."""

from __future__ import annotations

import pytest

from stream.model.quality import confusion, label_confusion


def test_label_confusion_counts_each_cell_and_derives_precision_recall_f1() -> None:
    predicted = [True, True, True, False, False, False, False]
    truth = [1, 1, 0, 1, 0, 0, 0]
    counts = label_confusion(predicted, truth)
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (2, 1, 1, 3)
    assert counts.precision == pytest.approx(2 / 3)
    assert counts.recall == pytest.approx(2 / 3)
    assert counts.f1 == pytest.approx(2 / 3)


def test_no_true_positive_is_f1_zero_not_a_division_error() -> None:
    counts = label_confusion([False, False], [True, False])
    assert (counts.precision, counts.recall, counts.f1) == (0.0, 0.0, 0.0)


def test_scores_at_a_threshold_count_like_the_decisions_they_imply() -> None:
    scores, labels = [0.9, 0.5, 0.49, 0.1], [1, 0, 1, 0]
    assert confusion(scores, labels, 0.5) == label_confusion([s >= 0.5 for s in scores], labels)


def test_unequal_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        label_confusion([True], [1, 0])
