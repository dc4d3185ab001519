"""Threshold rules (``stream.model.thresholds``): each rule on hand-made scores, every edge case, and properties."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.model.quality import best_threshold, confusion
from stream.model.thresholds import (
    BEST_F1,
    BUDGET_AND_ANOMALIES,
    DEFAULT_BUDGET_PER_1000,
    FALSE_ALARM_BUDGET,
    MIXTURE_MAX_SHARE,
    NORMALS_AND_TRAFFIC,
    RULES,
    SCORE_MIXTURE,
    check_rule,
    choose_threshold,
    false_alarm_budget,
    normals_and_traffic,
    score_mixture,
)

scores01 = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def flagged(scores, threshold) -> int:
    return sum(1 for s in scores if s >= threshold)


def test_best_f1_is_todays_rule_and_says_so():
    scores, labels = [0.1, 0.2, 0.3, 0.8, 0.9], [0, 0, 1, 1, 1]
    choice = choose_threshold(BEST_F1, scores, labels)
    assert (choice.value, choice.detail["f1"]) == (pytest.approx(best_threshold(scores, labels)[0]), 1.0)
    assert choice.rule == BEST_F1 and choice.detail["anomalies"] == 3 and "fallback" not in choice.detail


def test_best_f1_without_anomalies_flags_nothing_and_without_scores_is_the_default():
    choice = choose_threshold(BEST_F1, [0.1, 0.4], [0, 0])
    assert choice.value == pytest.approx(0.4 + 1e-6) and "no labeled anomaly" in choice.detail["fallback"]
    assert choose_threshold(BEST_F1, [], []).value == 0.5


def test_unknown_rule_names_the_allowed_ones():
    with pytest.raises(ValueError, match="best-f1, false-alarm-budget, budget-and-anomalies"):
        choose_threshold("quantile", [0.1], [0])
    with pytest.raises(ValueError, match="budget_per_1000"):
        check_rule(FALSE_ALARM_BUDGET, float("nan"))
    with pytest.raises(ValueError, match="budget_per_1000"):
        choose_threshold(FALSE_ALARM_BUDGET, [0.1], [0], budget_per_1000=1000.5)
    with pytest.raises(ValueError, match="prevalence"):
        choose_threshold(BUDGET_AND_ANOMALIES, [0.1], [0], prevalence=0.0)
    with pytest.raises(ValueError, match="2 scores but 1 labels"):
        choose_threshold(FALSE_ALARM_BUDGET, [0.1, 0.2], [0])


def test_the_budget_flags_k_reference_windows_midway_to_the_next_score():
    """2,999 reference windows at 1 per 1,000: k = floor(3000 / 1000) - 1 = 2, the threshold between the 2nd and
    3rd highest; the bound for an unseen normal window is (2 + 1) / 3000, exactly the budget."""
    reference = [i / 10_000 for i in range(2_999)]  # 0.0000 .. 0.2998
    choice = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=reference)
    assert choice.value == pytest.approx((0.2997 + 0.2996) / 2)
    assert flagged(reference, choice.value) == 2
    assert choice.detail["resolved"] and choice.detail["allowed_reference_alerts"] == 2
    assert choice.detail["bound_per_1000"] == pytest.approx(1.0)
    assert choice.detail["reference"] == "given reference"


def test_the_budget_at_999_reference_windows_is_resolved_and_at_998_it_is_not():
    at_999 = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=[i / 1000 for i in range(999)])
    assert at_999.detail["resolved"] and at_999.detail["allowed_reference_alerts"] == 0
    assert at_999.value == pytest.approx(0.998 + 1e-6)  # k = 0: above the top score, bound 1 / 1000
    at_998 = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=[i / 1000 for i in range(998)])
    assert not at_998.detail["resolved"] and at_998.detail["min_reference_windows"] == 999
    assert "cannot resolve" in at_998.detail["fallback"] and at_998.value == pytest.approx(0.997 + 1e-6)


def test_a_tied_group_is_never_split():
    """k = 2 of 3,000 windows, but the top three tie: flagging two of them is impossible, so none is flagged."""
    reference = [0.1] * 2_997 + [0.9, 0.9, 0.9]
    choice = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=reference)
    assert flagged(reference, choice.value) == 0 and choice.value == pytest.approx(0.9 + 1e-6)
    reference = [0.1] * 1_998 + [0.9, 0.9]  # 2,000 windows: k = 1, and the tied pair is two
    assert flagged(reference, choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=reference).value) == 0
    reference = [0.1] * 2_998 + [0.9, 0.9]  # 3,000 windows: k = 2, the pair is flagged, the threshold midway to 0.1
    choice = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=reference)
    assert flagged(reference, choice.value) == 2 and choice.value == pytest.approx(0.5)


def test_all_equal_scores_flag_nothing_and_a_full_budget_flags_everything():
    assert choose_threshold(FALSE_ALARM_BUDGET, [0.3] * 5, [0] * 5).value == pytest.approx(0.3 + 1e-6)
    everything = choose_threshold(FALSE_ALARM_BUDGET, [0.1, 0.2, 0.3], [0, 0, 0], budget_per_1000=1000)
    assert everything.value == 0.1 and everything.detail["reference_alerts"] == 3
    nothing = choose_threshold(FALSE_ALARM_BUDGET, [0.1, 0.2], [0, 0], budget_per_1000=0)
    assert nothing.value > 0.2 and not nothing.detail["resolved"]


def test_without_a_reference_the_labeled_normals_are_one_and_without_either_nothing_seen_is_flagged():
    choice = choose_threshold(FALSE_ALARM_BUDGET, [0.2, 0.6, 0.9], [0, 1, 1])
    assert choice.detail["reference"] == "labeled normals" and choice.detail["reference_windows"] == 1
    only_anomalies = choose_threshold(FALSE_ALARM_BUDGET, [0.6, 0.9], [1, 1])
    assert only_anomalies.value == pytest.approx(0.9 + 1e-6) and "no reference" in only_anomalies.detail["fallback"]
    assert choose_threshold(FALSE_ALARM_BUDGET, [], []).value == 0.5
    assert choose_threshold(BUDGET_AND_ANOMALIES, [], []).value == 0.5


def test_combined_flags_fewer_normals_where_no_labeled_anomaly_is_among_them():
    """3,000 normals up to 0.3 (the budget may flag 2 of them), labeled anomalies from 0.7: flagging those 2 catches
    no anomaly, so the combined rule flags none, just above the top normal (the bottom of the gap below 0.7)."""
    reference = [0.3 * i / 2_999 for i in range(3_000)]
    scores, labels = [0.7, 0.8, 0.95], [1, 1, 1]
    budget = choose_threshold(FALSE_ALARM_BUDGET, scores, labels, reference_scores=reference)
    both = choose_threshold(BUDGET_AND_ANOMALIES, scores, labels, reference_scores=reference)
    assert budget.value < 0.3 and budget.detail["reference_alerts"] == 2
    assert both.value == pytest.approx(0.3 + 1e-6) and both.detail["anomaly_recall"] == 1.0
    assert both.detail["reference_alerts"] == 0 and both.detail["budget"]["threshold"] == budget.value
    assert both.detail["prevalence"] == 0.03 and both.detail["anomalies"] == 3


def test_combined_sits_at_the_bottom_of_the_gap_to_catch_anomalies_the_labels_missed():
    """An anomaly among the top normals: flagging it costs one normal; at p = 3% that recall is worth it."""
    reference = [i / 3_000 for i in range(3_000)]  # up to 0.99967; k = 2
    both = choose_threshold(BUDGET_AND_ANOMALIES, [0.9992, 0.99995], [1, 1], reference_scores=reference)
    assert both.value == pytest.approx(2_997 / 3_000 + 1e-6)  # just above the 4th highest normal
    assert both.detail["reference_alerts"] == 2 and both.detail["anomaly_recall"] == 1.0


def test_combined_never_flags_more_normals_than_the_budget_for_an_anomaly():
    """An anomaly among the normals' top scores would cost the budget: the combined rule leaves it unflagged."""
    reference = [i / 3_000 for i in range(3_000)]  # up to 0.9997
    scores, labels = [0.5, 0.99995], [1, 1]
    both = choose_threshold(BUDGET_AND_ANOMALIES, scores, labels, reference_scores=reference)
    budget = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=reference)
    assert both.value >= budget.value and flagged(reference, both.value) <= 3
    assert both.detail["anomaly_recall"] == 0.5


def test_combined_falls_back_to_the_budget_and_says_why():
    reference = [0.3 * i / 2_999 for i in range(3_000)]  # resolved: k = 2
    no_anomalies = choose_threshold(BUDGET_AND_ANOMALIES, [], [], reference_scores=reference)
    budget = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=reference)
    assert no_anomalies.value == budget.value and "no labeled anomaly" in no_anomalies.detail["fallback"]
    buried = choose_threshold(BUDGET_AND_ANOMALIES, [0.1], [1], reference_scores=reference)
    assert buried.value == budget.value and "within the budget" in buried.detail["fallback"]


def test_combined_with_an_unresolvable_budget_lets_the_labeled_windows_decide():
    """120 normals cannot resolve 1 per 1,000: the budget alone would sit above the one normal at 0.99 and miss every
    anomaly; the combined rule takes the best F1 on the normals and anomalies instead, and says so."""
    reference = [i / 1_000 for i in range(119)] + [0.99]
    anomalies = [0.6, 0.7, 0.8]
    budget = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=reference)
    both = choose_threshold(BUDGET_AND_ANOMALIES, anomalies, [1, 1, 1], reference_scores=reference)
    assert budget.value > 0.99 and both.value == pytest.approx((0.6 + 0.118) / 2)
    assert "cannot resolve" in both.detail["fallback"] and both.detail["reference_alerts"] == 1


def test_calibrate_defaults_to_best_f1_with_anomalies_and_to_the_budget_without():
    from trainer.train import calibrate  # imports torch (the trainer): here only, so the rest stays plain Python

    assert calibrate([0.1, 0.9], [0, 1], rule=None).rule == BEST_F1
    choice = calibrate([0.1, 0.2], [0, 0], [0.05] * 10, rule=None)
    assert choice.rule == FALSE_ALARM_BUDGET and choice.detail["reference_windows"] == 12
    assert choice.detail["reference"] == "2 labeled normal and 10 unlabeled windows"
    assert DEFAULT_BUDGET_PER_1000 == 1.0
    assert set(RULES) == {BEST_F1, FALSE_ALARM_BUDGET, BUDGET_AND_ANOMALIES, SCORE_MIXTURE, NORMALS_AND_TRAFFIC}


@given(
    reference=st.lists(scores01, max_size=300),
    budget=st.floats(min_value=0.0, max_value=1000.0, allow_nan=False),
)
def test_the_budget_never_flags_more_than_its_budget_of_its_own_reference(reference, budget):
    choice = choose_threshold(FALSE_ALARM_BUDGET, [], [], reference_scores=reference, budget_per_1000=budget)
    assert math.isfinite(choice.value)
    assert flagged(reference, choice.value) <= len(reference) * budget / 1000 + 1e-9
    if reference:
        assert choice.detail["reference_alerts"] == flagged(reference, choice.value)


@given(
    normals=st.lists(scores01, max_size=200),
    anomalies=st.lists(scores01, max_size=20),
    budget=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
)
def test_combined_stays_within_a_resolved_budget(normals, anomalies, budget):
    scores, labels = [*normals, *anomalies], [0] * len(normals) + [1] * len(anomalies)
    both = choose_threshold(BUDGET_AND_ANOMALIES, scores, labels, budget_per_1000=budget)
    alone = choose_threshold(FALSE_ALARM_BUDGET, scores, labels, budget_per_1000=budget)
    if alone.detail["resolved"] or budget == 0:
        assert flagged(normals, both.value) <= flagged(normals, alone.value) <= len(normals) * budget / 1000 + 1e-9
    elif anomalies and normals:  # an unresolvable budget: the labeled windows decide (best F1)
        assert "cannot resolve" in both.detail["fallback"]


@given(scores=st.lists(scores01, max_size=50), data=st.data())
def test_every_rule_answers_every_input(scores, data):
    labels = data.draw(st.lists(st.integers(0, 1), min_size=len(scores), max_size=len(scores)))
    for rule in RULES:
        choice = choose_threshold(rule, scores, labels)
        assert choice.rule == rule and math.isfinite(choice.value)


def traffic(normal: int, anomalous: int, *, gap: float = 8.0, seed: int = 0) -> tuple[list[float], list[float]]:
    """Sigmoid scores of two populations, Gaussian in log-odds: the bulk around -6, anomalies ``gap`` above it."""
    rng = random.Random(seed)

    def score(mean: float) -> float:
        return round(1 / (1 + math.exp(-rng.gauss(mean, 1.5))), 6)

    return [score(-6.0) for _ in range(normal)], [score(-6.0 + gap) for _ in range(anomalous)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_mixture_flags_the_minority_mode_and_not_the_bulk(seed):
    normals, anomalies = traffic(1900, 100, seed=seed)
    choice = score_mixture([*normals, *anomalies])
    assert choice.rule == SCORE_MIXTURE and "fallback" not in choice.detail
    assert flagged(anomalies, choice.value) >= 95 and flagged(normals, choice.value) <= 5
    assert choice.detail["flagged"] == flagged([*normals, *anomalies], choice.value)
    assert 0.03 < choice.detail["mixture"]["high_share"] < 0.07


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_population_is_not_split_in_two_and_the_budget_answers(seed):
    normals, _ = traffic(2000, 0, seed=seed)
    choice = score_mixture(normals, 1.0)
    assert "one mode" in choice.detail["fallback"] or "sd apart" in choice.detail["fallback"]
    assert choice.value == false_alarm_budget(normals, 1.0).value


def test_a_majority_upper_mode_is_not_taken_for_anomalies():
    normals, anomalies = traffic(1200, 800)
    choice = score_mixture([*normals, *anomalies], 10.0)
    assert f"more than {MIXTURE_MAX_SHARE:.0%}" in choice.detail["fallback"]
    assert choice.value == false_alarm_budget([*normals, *anomalies], 10.0).value


def test_too_few_windows_fall_back_and_overlapping_modes_too():
    normals, anomalies = traffic(90, 5)
    assert "too few" in score_mixture([*normals, *anomalies]).detail["fallback"]
    normals, anomalies = traffic(1900, 100, gap=1.0)
    assert "fallback" in score_mixture([*normals, *anomalies]).detail


def test_saturated_scores_are_two_piles_and_the_upper_pile_is_flagged():
    scores = [0.0] * 1800 + [round(0.001 * i, 6) for i in range(100)] + [1.0] * 100
    choice = score_mixture(scores)
    assert "fallback" not in choice.detail and flagged(scores, choice.value) == 100


def test_the_mixture_reads_no_label_and_prefers_the_unlabeled_reference():
    normals, anomalies = traffic(1900, 100)
    scores = [*normals, *anomalies]
    unread = choose_threshold(SCORE_MIXTURE, scores, [0] * len(scores))
    assert unread.value == choose_threshold(SCORE_MIXTURE, scores, [1] * len(scores)).value
    assert unread.detail["reference"] == "labeled windows, labels unread"
    other = choose_threshold(SCORE_MIXTURE, [0.5], [1], reference_scores=scores, reference_name="unlabeled")
    assert other.value == unread.value and other.detail["reference"] == "unlabeled"


@given(scores=st.lists(scores01, min_size=100, max_size=400))
def test_the_mixture_answers_any_traffic_and_counts_what_it_flags(scores):
    choice = score_mixture(scores)
    assert math.isfinite(choice.value)
    if "fallback" not in choice.detail:
        assert choice.detail["flagged"] == flagged(scores, choice.value) > 0


def f1_at(threshold: float, normals: list[float], anomalies: list[float]) -> float:
    return confusion([*normals, *anomalies], [0] * len(normals) + [1] * len(anomalies), threshold).f1


@pytest.mark.parametrize(("share", "seed"), [(0.03, 0), (0.08, 1), (0.08, 2)])
def test_normals_and_traffic_reads_the_anomaly_share_off_the_traffic_and_beats_a_guessed_budget(share, seed):
    normals, _ = traffic(1000, 0, gap=3.5, seed=seed)
    bulk, anomalies = traffic(round(2000 * (1 - share)), round(2000 * share), gap=3.5, seed=seed + 10)
    test_normals, test_anomalies = traffic(5000, round(5000 * share), gap=3.5, seed=seed + 20)
    choice = normals_and_traffic(normals, [*bulk, *anomalies], 1.0)
    assert "fallback" not in choice.detail
    assert 0 < choice.detail["estimated_prevalence"] <= share + 0.01  # a lower bound, near the truth
    budget = false_alarm_budget([*bulk, *anomalies], 1.0).value
    ours = f1_at(choice.value, test_normals, test_anomalies)
    assert ours > f1_at(budget, test_normals, test_anomalies) + 0.3


def test_normals_and_traffic_falls_back_without_an_excess_or_with_too_few_windows():
    normals, _ = traffic(1000, 0, seed=0)
    same, _ = traffic(2000, 0, seed=1)
    quiet = normals_and_traffic(normals, same, 1.0)
    assert "no more than the normals" in quiet.detail["fallback"]
    assert quiet.value == false_alarm_budget([*normals, *same], 1.0).value
    assert "needs 100 of each" in normals_and_traffic(normals[:50], same, 1.0).detail["fallback"]


def test_normals_and_traffic_takes_the_labeled_normals_and_the_reference_as_traffic():
    normals, _ = traffic(1000, 0, seed=3)
    bulk, anomalies = traffic(1900, 100, gap=3.5, seed=4)
    direct = normals_and_traffic(normals, [*bulk, *anomalies])
    via = choose_threshold(
        NORMALS_AND_TRAFFIC, [*normals, 0.99], [0] * len(normals) + [1], reference_scores=[*bulk, *anomalies]
    )  # a labeled anomaly is not read
    assert via.value == direct.value and via.rule == NORMALS_AND_TRAFFIC
