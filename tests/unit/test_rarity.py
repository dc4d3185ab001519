"""Template rarity (stream.model.rarity): the zero-label baseline that needs no source, on real HDFS traffic."""

from __future__ import annotations

import pytest

from stream.errors import ModelError
from stream.model.detector import WindowText
from stream.model.quality import confusion, pr_auc
from stream.model.rarity import TemplateRarity
from stream.model.thresholds import FALSE_ALARM_BUDGET, false_alarm_budget


def window(*templates: str) -> WindowText:
    return WindowText(tuple(templates), tuple(templates))


REFERENCE = [window("open", "read", "close")] * 6 + [window("open", "read", "disk error", "close")]


def test_an_unseen_template_scores_one_and_a_common_window_low() -> None:
    rarity = TemplateRarity.of(REFERENCE)
    assert rarity.score(window("open", "never printed")) == 1.0
    assert rarity.score(window("open", "read", "close")) < rarity.score(window("open", "disk error")) < 1.0
    assert rarity.score(window()) == 0.0


def test_a_member_scores_as_if_the_reference_had_been_taken_without_it() -> None:
    rarity = TemplateRarity.of(REFERENCE)
    for position, member in enumerate(REFERENCE):
        without = TemplateRarity.of(REFERENCE[:position] + REFERENCE[position + 1 :])
        assert rarity.score_member(member) == pytest.approx(without.score(member), abs=1e-12)
    # the one window that printed "disk error" is, left out, as rare as a window from outside with a new template
    assert rarity.score_member(REFERENCE[-1]) == pytest.approx(TemplateRarity.of(REFERENCE[:-1]).score(REFERENCE[-1]))


def test_bad_use_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="at least one reference window"):
        TemplateRarity.of([])
    with pytest.raises(ModelError, match="not in the reference"):
        TemplateRarity.of(REFERENCE).score_member(window("open", "never printed"))


def test_rarity_in_unlabeled_hdfs_traffic_flags_anomalous_blocks_with_no_label(
    hdfs_unlabeled_pool: tuple[list[WindowText], list[WindowText], list[int]],
) -> None:
    """2,000 unlabeled HDFS blocks of the train part (labels unread) are the reference; the threshold flags 10 of
    every 1,000 of them (the zero-label goal rule). On the test blocks it beats the trivial all-anomalous F1."""
    unlabeled, test, labels = hdfs_unlabeled_pool
    rarity = TemplateRarity.of(unlabeled)
    choice = false_alarm_budget(rarity.scores(unlabeled, members=True), 10.0)
    assert choice.rule == FALSE_ALARM_BUDGET
    scores = rarity.scores(test)
    trivial = 2 * sum(labels) / (len(labels) + sum(labels))
    f1 = confusion(scores, labels, choice.value).f1
    assert f1 > trivial + 0.2, (f1, trivial)
    assert pr_auc(scores, labels) > 0.5
