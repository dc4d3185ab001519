"""PCA of template counts (stream.model.count_pca): a zero-label detector and its own threshold, on real HDFS."""

from __future__ import annotations

import random

import numpy as np
import pytest

from stream.errors import ModelError
from stream.model.count_pca import ALPHA, FOLDS, TemplateCountPCA, _fit, _q_limit
from stream.model.detector import WindowText
from stream.model.quality import confusion, pr_auc


def window(*templates: str) -> WindowText:
    return WindowText(tuple(templates), tuple(templates))


def reference(size: int = 400, seed: int = 0) -> list[WindowText]:
    """Blocks that open, write k times with k acks (one in ten loses one), read a few times, and now and then hit
    the cache, collect garbage or retry, so that the counts vary in several directions."""
    rng = random.Random(seed)
    out = []
    for _ in range(size):
        writes, reads = rng.randint(1, 4), rng.randint(0, 3)
        acks = writes - (rng.random() < 0.1)  # now and then one ack is lost, and no more
        body = ["open", *["write"] * writes, *["ack"] * acks, *["read"] * reads]
        body += [name for name, share in (("cache hit", 0.5), ("gc", 0.3), ("retry", 0.05)) if rng.random() < share]
        out.append(window(*body, "close"))
    return out


def test_a_typical_window_scores_below_the_limit_and_a_never_seen_template_above() -> None:
    pca = TemplateCountPCA.of(reference())
    typical, never_seen = (
        window("open", "write", "ack", "write", "ack", "read", "close"),
        window("open", "write", "ack", "disk error", "close"),
    )
    scores = pca.scores([typical, never_seen])
    assert scores[0] < pca.threshold
    assert scores[1] > pca.threshold  # a template the reference never held lies outside the normal space
    assert all(0.0 <= s < 1.0 for s in scores)
    assert pca.describe()["templates"] == 8 and pca.describe()["reference_windows"] == 400


def test_members_are_scored_out_of_fold() -> None:
    """A member's score is the one the PCA fit on the other folds gives it, squashed by the whole reference's limit;
    in-sample scores would be lower, since a fit explains part of its own windows' residuals away."""
    windows = reference()
    pca = TemplateCountPCA.of(windows)
    members = pca.member_scores()
    counts = pca.reference_counts
    held_out = np.arange(len(windows)) % FOLDS == 0
    fold_fit = _fit(counts[~held_out], pca.variance, pca.alpha)
    spe = fold_fit.spe(counts[held_out])
    expected = spe / (spe + pca.fit.q_limit)
    assert np.allclose(np.array(members)[held_out], expected, atol=1e-12)
    assert sum(members) > sum(pca.scores(windows))


def test_the_q_statistic_holds_its_false_alarm_rate_on_gaussian_residuals() -> None:
    """Jackson and Mudholkar's limit: a fresh normal window's SPE exceeds it with probability about ``alpha``. On
    correlated Gaussian data with a known low-rank normal space, the share of 200,000 fresh samples above the
    limit is within a fifth of alpha (the approximation's own error is far smaller at these eigenvalues)."""
    rng = np.random.default_rng(0)
    residual_eigenvalues = np.array([3.0, 2.0, 1.5, 1.0, 0.5, 0.25])
    alpha = 0.01
    limit = _q_limit(residual_eigenvalues, alpha)
    samples = rng.normal(size=(200_000, residual_eigenvalues.size)) * np.sqrt(residual_eigenvalues)
    exceeded = float(np.mean((samples**2).sum(axis=1) > limit))
    assert abs(exceeded - alpha) < alpha / 5, exceeded
    assert _q_limit(residual_eigenvalues, ALPHA) > limit  # a lower false-alarm rate needs a higher limit


def test_bad_use_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="at least 10 reference windows"):
        TemplateCountPCA.of(reference(size=5))
    with pytest.raises(ModelError, match="differ"):
        TemplateCountPCA.of([window("open", "close")] * 20)
    with pytest.raises(ModelError, match="hold templates"):
        TemplateCountPCA.of([window()] * 20)
    with pytest.raises(ModelError, match="variance"):
        TemplateCountPCA.of(reference(), variance=1.0)


def test_count_pca_on_unlabeled_hdfs_traffic_flags_anomalous_blocks_by_its_own_threshold(
    hdfs_unlabeled_pool: tuple[list[WindowText], list[WindowText], list[int]],
) -> None:
    """2,000 unlabeled HDFS blocks of the train part (labels unread) are the reference, and the Q-statistic, read off
    their eigenvalues, is the threshold: no label and no alert rate anywhere. On the test blocks it beats the trivial
    all-anomalous F1 by far, and template rarity at the zero-label goal rule (test_rarity.py: about 0.5 here)."""
    unlabeled, test, labels = hdfs_unlabeled_pool
    pca = TemplateCountPCA.of(unlabeled)
    scores = pca.scores(test)
    trivial = 2 * sum(labels) / (len(labels) + sum(labels))
    f1 = confusion(scores, labels, pca.threshold).f1
    assert pca.describe()["threshold_rule"] == "q-statistic"
    assert f1 > 0.7 > trivial + 0.5, (f1, trivial)
    assert pr_auc(scores, labels) > 0.8
    # out of fold, the reference is flagged at about the rate the test part is (a fresh window's distribution)
    flagged_members = np.mean(np.array(pca.member_scores()) > pca.threshold)
    flagged_test = np.mean(np.array(scores) > pca.threshold)
    assert abs(flagged_members - flagged_test) < 0.02, (flagged_members, flagged_test)
