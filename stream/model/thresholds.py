"""Named rules that turn anomaly scores into a decision threshold, each saying how it set it.

Plain Python over lists, like ``quality``. Labeled anomalies are the scarce labels; labeled normal windows are
plentiful and unlabeled target windows unlimited, so two rules read the false-alarm side off a *reference*: scores
of windows that are (nearly) all normal.

``best-f1``
    The threshold with the best F1 on the labeled windows (``quality.best_threshold``): today's rule. With a handful
    of labeled anomalies it is placed by those few (and at the labeled set's prevalence, which a label budget makes
    artificial).
``false-alarm-budget``
    The lowest threshold that flags at most ``budget_per_1000`` windows per 1,000 of the reference. The reference's
    n scores sorted high to low, s(1) >= s(2) >= ...: the threshold may flag the top k, where

        k = floor((n + 1) * budget / 1000) - 1

    and lies midway between the lowest flagged score and the highest unflagged one, as ``best_threshold`` places
    its own (ties are never split: a tied group is flagged whole or not at all, so fewer than k may be flagged).
    Why (n + 1) and not n: an unseen normal window is flagged only if it scores above the (k+1)-th highest reference
    score, and if it is exchangeable with the reference that happens with probability at most (k + 1) / (n + 1)
    (its rank among the n + 1 is uniform; the conformal argument). This k is the largest with that bound within the
    budget, so the budget holds in expectation for unseen normal windows, and on the reference itself at most
    k <= n * budget / 1000 windows are flagged. The price: with fewer than 1000 / budget - 1 reference windows
    (999 at the default) k < 0, the budget cannot be resolved, and the rule flags none of the reference (just above
    its top score, as ``best_threshold`` does with no anomalies); ``detail`` then says ``resolved: false`` and the
    bound it does give, 1000 / (n + 1) per 1,000.
``budget-and-anomalies``
    Among the thresholds within the budget (flagging at most the budget rule's k reference windows), the one with
    the best F1 *estimated* for the stream: recall R(t) from the few labeled anomalies, false-alarm rate F(t) from
    the reference, at an anomaly prevalence p (given, or ``DEFAULT_PREVALENCE``): F1 = 2pR / (pR + p + (1 - p)F).
    The labeled set's own prevalence is never used: a label budget caps anomalies and not normals, so it says
    nothing about the stream. The anomalies choose how many of the k reference windows to flag (fewer where that
    loses no labeled anomaly); the threshold then sits just above the highest reference score left unflagged, the
    bottom of its gap, not the middle: the false-alarm bound (c + 1) / (n + 1) is the same anywhere in the gap, the
    gap's lower edge is read off plentiful normals while its upper edge would come from a handful of anomalies, and
    the bottom catches every unseen anomaly that scores in the gap. (On BGL -> Thunderbird, a midway placement lost
    recall: bench/threshold_rules.py.) With no labeled anomaly (or none the budget lets it flag) it is the budget
    rule; where the reference is too small to resolve the budget it is ``best-f1`` on the reference and the
    anomalies (an unresolvable budget only says "flag none of the reference", and on Thunderbird's 120 validation
    normals one normal scoring 0.99 then cost every anomaly: bench/threshold_rules.py); ``detail["fallback"]`` says
    which and why.
``score-mixture``
    No label at all: the target's unlabeled scores, read as two populations. A two-component Gaussian mixture is fit
    (EM) to the scores' log-odds; if its upper component is a minority (at most ``MIXTURE_MAX_SHARE`` of the
    windows) well apart from the bulk (means at least ``MIXTURE_MIN_SEPARATION`` pooled standard deviations apart),
    and two modes explain the scores better than one by the Bayesian information criterion (else a single skewed
    bulk would be split in two), the upper component is taken as the anomalies and the threshold is where a window
    becomes more likely theirs than the bulk's: the lowest score above the bulk's mean with an upper-component
    posterior of at least 1/2 (midway to the next lower score). Why: a budget is an alert *rate* the operator must
    guess, and the right one is the target's anomaly share, which nobody knows on day one (HDFS: 2.9% of blocks,
    BGL: 7.9% of windows); where the detector separates the anomalies, the scores themselves say where that share
    ends. Log-odds, because sigmoid scores pile up at 0 and 1 where no Gaussian fits. Where the scores do not show
    two such populations, it falls back to ``false-alarm-budget`` on the same scores, and ``detail["fallback"]``
    says why.
``normals-and-traffic``
    No labeled anomaly needed: labeled normal windows (plentiful) and the target's unlabeled traffic (unlimited).
    At each candidate threshold t, F(t) is the share of labeled normals flagged and Q(t) the share of traffic
    flagged. Traffic is a mixture, Q = p R + (1 - p) F, of the anomalies (share p, recall R) and normals, so the
    excess Q - (1 - p) F is what the anomalies contribute. p is estimated as the largest (Q - F) / (1 - F) over the
    thresholds that leave at least half the normals unflagged, Q - F less ``TRAFFIC_EXCESS_SE`` standard errors (the
    mixture-proportion estimate of PU learning: a lower bound on p, tight where some threshold catches every
    anomaly), and the threshold is the one with the best F1 so estimated:
    TP = Q - (1 - p) F, FP = (1 - p) F, F1 = 2 TP / (TP + p + FP). (p is a lower bound, so at a high threshold
    TP can exceed it and ``detail["estimated_f1"]`` can exceed 1: an optimistic estimate, kept because the choice it
    makes measured better than with p the largest undiscounted excess, which keeps TP <= p: on the transfer bench's
    LogTransfer scores it beat best-f1 in 13 of 24 cells, that variant in 9.)
    Why: the budget rules need the anomaly share guessed, best-f1 needs anomalies; this reads the share off the
    traffic, checked against known normals. Where the traffic shows no excess over the normals (p estimated 0) it
    is the false-alarm budget; too few of either
    (under ``TRAFFIC_MIN_WINDOWS``) also falls back, and ``detail["fallback"]`` says why.

Edge cases, for every rule: no scores -> 0.5 (``DEFAULT_THRESHOLD``, what serving uses for a model without one); no
reference and no labeled normal window -> the budget rules flag nothing seen (just above the top score); all scores
equal -> the same, since no threshold separates them; ``budget_per_1000`` outside [0, 1000] or not finite ->
ValueError; an unknown rule -> ValueError naming the allowed ones.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.model.quality import best_threshold

BEST_F1 = "best-f1"
FALSE_ALARM_BUDGET = "false-alarm-budget"
BUDGET_AND_ANOMALIES = "budget-and-anomalies"
SCORE_MIXTURE = "score-mixture"
NORMALS_AND_TRAFFIC = "normals-and-traffic"
RULES = (BEST_F1, FALSE_ALARM_BUDGET, BUDGET_AND_ANOMALIES, SCORE_MIXTURE, NORMALS_AND_TRAFFIC)
# what may set a threshold with no labeled anomaly: best-f1 and budget-and-anomalies need one
ZERO_LABEL_RULES = (FALSE_ALARM_BUDGET, SCORE_MIXTURE, NORMALS_AND_TRAFFIC)

# One alert per 1,000 windows (one per 20,000 lines with 20-line windows): at an anomaly prevalence of 1% and full
# recall, precision stays >= 0.9 (p / (p + (1 - p) * 0.001)); it needs 999 reference windows to resolve, which a
# target's validation normals or an hour of its unlabeled traffic give.
DEFAULT_BUDGET_PER_1000 = 1.0
# The combined rule's assumed anomaly share of the stream: the lower end of the labeled Loghub sets (HDFS: 2.9% of
# blocks; BGL: 7.9% of 20-line windows). Within a budget of 1 per 1,000 the false-alarm term (1 - p) * F is at most
# 0.001, small against p, so the choice moves the threshold little; pass the target's own when it is known.
DEFAULT_PREVALENCE = 0.03
DEFAULT_THRESHOLD = 0.5  # no scores at all
# score-mixture: anomalies are a minority of any system's traffic; a mode holding more than a fifth of it is a
# second kind of normal (a busy node, a nightly job), not the anomalies
MIXTURE_MAX_SHARE = 0.2
# score-mixture: modes closer than this (in pooled standard deviations of log-odds) overlap too much for their
# crossing to mean anything; at 2 the two densities' crossing still leaves each mode's bulk on its own side
MIXTURE_MIN_SEPARATION = 2.0
MIXTURE_MIN_WINDOWS = 100  # fewer cannot show a minority mode of a few percent
TRAFFIC_MIN_WINDOWS = 100  # normals-and-traffic: fewer of either cannot tell an anomaly share of a few percent
# normals-and-traffic: the excess of traffic over normals is discounted by this many standard errors before it
# counts as anomalies; it is the largest over hundreds of thresholds, so chance alone often exceeds 2 of them
TRAFFIC_EXCESS_SE = 3.0
_LOGIT_CLAMP = 1e-6  # scores are kept to 6 decimals: 0 and 1 become +-13.8 in log-odds, not infinities
_ABOVE = 1e-6  # "flag nothing seen": the top score plus this, as quality.best_threshold does


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    value: float
    rule: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "rule": self.rule, **self.detail}


def choose_threshold(
    rule: str,
    scores: Sequence[float],
    labels: Sequence[int],
    *,
    reference_scores: Sequence[float] = (),
    budget_per_1000: float = DEFAULT_BUDGET_PER_1000,
    prevalence: float | None = None,
    reference_name: str = "given reference",
) -> ThresholdChoice:
    """The threshold ``rule`` sets from labeled ``scores``/``labels`` (validation windows) and ``reference_scores``
    (windows vouched (nearly) all normal: labeled normals, unlabeled target windows; ``reference_name`` says which
    in ``detail``). Without reference scores the labeled normal windows are the reference."""
    check_rule(rule, budget_per_1000, prevalence)
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    anomalies = [float(s) for s, label in zip(scores, labels, strict=True) if label]
    if rule == BEST_F1:
        return _best_f1(scores, labels, len(anomalies))
    if reference_scores:
        reference, source = [float(s) for s in reference_scores], reference_name
    else:
        reference, source = [float(s) for s, label in zip(scores, labels, strict=True) if not label], "labeled normals"
    if rule == NORMALS_AND_TRAFFIC:  # the reference is the traffic here, and the labeled normals are the normals
        normals = [float(s) for s, label in zip(scores, labels, strict=True) if not label]
        choice = normals_and_traffic(normals, [float(s) for s in reference_scores], budget_per_1000)
        choice.detail["reference"] = reference_name if reference_scores else "no traffic given"
        return choice
    if rule == SCORE_MIXTURE:  # labels unread: the mixture is of the traffic, anomalies and all
        pool = reference if reference_scores else [float(s) for s in scores]
        choice = score_mixture(pool, budget_per_1000)
        choice.detail["reference"] = source if reference_scores else "labeled windows, labels unread"
        return choice
    budget = false_alarm_budget(reference, budget_per_1000, everything=[float(s) for s in scores])
    budget.detail["reference"] = source
    if rule == FALSE_ALARM_BUDGET:
        return budget
    return _budget_and_anomalies(budget, reference, anomalies, prevalence or DEFAULT_PREVALENCE)


def check_rule(rule: str, budget_per_1000: float = DEFAULT_BUDGET_PER_1000, prevalence: float | None = None) -> None:
    """ValueError naming what is wrong: callers check before training, not after."""
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}: choose one of {', '.join(RULES)}")
    if not (isinstance(budget_per_1000, int | float) and math.isfinite(budget_per_1000)):
        raise ValueError(f"budget_per_1000 must be a number in [0, 1000], got {budget_per_1000!r}")
    if not 0.0 <= budget_per_1000 <= 1000.0:
        raise ValueError(f"budget_per_1000 must be a number in [0, 1000], got {budget_per_1000!r}")
    if prevalence is not None and not 0.0 < prevalence <= 1.0:
        raise ValueError(f"prevalence must be in (0, 1], got {prevalence!r}")


def _best_f1(scores: Sequence[float], labels: Sequence[int], anomalies: int) -> ThresholdChoice:
    value, f1 = best_threshold(scores, labels)
    detail: dict[str, Any] = {"windows": len(scores), "anomalies": anomalies, "f1": round(f1, 6)}
    if not scores:
        value = DEFAULT_THRESHOLD
        detail["fallback"] = "no scores: the default threshold"
    elif not anomalies:
        detail["fallback"] = "no labeled anomaly: just above the top score, flagging nothing seen"
    return ThresholdChoice(value, BEST_F1, detail)


def false_alarm_budget(
    reference: Sequence[float], budget_per_1000: float, *, everything: Sequence[float] = ()
) -> ThresholdChoice:
    """The ``false-alarm-budget`` rule on ``reference`` (module docstring). ``everything``: the scores to stay above
    when there is no reference at all (flag nothing seen)."""
    n = len(reference)
    allowed = math.floor((n + 1) * budget_per_1000 / 1000 + 1e-9) - 1  # k; the 1e-9 keeps 1.0 * 1000 / 1000 whole
    allowed = min(allowed, n)
    detail: dict[str, Any] = {
        "budget_per_1000": budget_per_1000,
        "reference_windows": n,
        "allowed_reference_alerts": max(allowed, 0),
        "resolved": allowed >= 0 and budget_per_1000 > 0,
        "min_reference_windows": _windows_needed(budget_per_1000),
    }
    if not reference:
        pool = list(everything)
        value = _above(max(pool)) if pool else DEFAULT_THRESHOLD
        detail["fallback"] = (
            "no reference windows: just above the top score, flagging nothing seen" if pool else "no scores"
        )
        return ThresholdChoice(value, FALSE_ALARM_BUDGET, detail)
    value, flagged = _flag_at_most(reference, allowed)
    detail["reference_alerts"] = flagged
    detail["reference_alerts_per_1000"] = round(1000 * flagged / n, 6)
    # what an unseen normal window risks: at most (flagged + 1) / (n + 1) (module docstring)
    detail["bound_per_1000"] = round(1000 * (flagged + 1) / (n + 1), 6)
    if not detail["resolved"] and budget_per_1000 > 0:
        detail["fallback"] = (
            f"{n} reference windows cannot resolve {budget_per_1000:g} per 1,000 (needs "
            f"{detail['min_reference_windows']}): flags none of them"
        )
    return ThresholdChoice(value, FALSE_ALARM_BUDGET, detail)


def score_mixture(scores: Sequence[float], budget_per_1000: float = DEFAULT_BUDGET_PER_1000) -> ThresholdChoice:
    """The ``score-mixture`` rule on unlabeled ``scores`` (module docstring); ``budget_per_1000`` is the fallback's."""
    mixture = _two_modes([_log_odds(s) for s in scores]) if len(scores) >= MIXTURE_MIN_WINDOWS else None
    detail: dict[str, Any] = {"windows": len(scores), "max_share": MIXTURE_MAX_SHARE}
    if mixture is not None:
        detail["mixture"] = mixture.to_dict()
    why = _no_minority_mode(len(scores), mixture)
    if mixture is None or why:
        return _budget_fallback(SCORE_MIXTURE, scores, budget_per_1000, detail, why)
    distinct = sorted(set(float(s) for s in scores))
    # the lowest score above the bulk's mean that the upper mode claims; below the bulk's mean a wide upper mode's
    # tail can claim scores again, which are not anomalies by any reading
    claimed = [d for d in distinct if _log_odds(d) > mixture.low_mean and mixture.upper_posterior(_log_odds(d)) >= 0.5]
    if not claimed:
        why = "no score is more likely the upper mode's"
        return _budget_fallback(SCORE_MIXTURE, scores, budget_per_1000, detail, why)
    lowest = claimed[0]
    position = distinct.index(lowest)
    value = _between(lowest, distinct[position - 1]) if position > 0 else lowest
    flagged = sum(1 for score in scores if score >= value)
    detail |= {"flagged": flagged, "flagged_per_1000": round(1000 * flagged / len(scores), 6)}
    return ThresholdChoice(value, SCORE_MIXTURE, detail)


@dataclass(frozen=True, slots=True)
class _Mixture:
    """Two Gaussians over log-odds: the bulk (low) and the upper mode, with their weights."""

    low_mean: float
    low_sd: float
    high_mean: float
    high_sd: float
    high_share: float
    bic_gain: float  # how much better two modes explain the values than one (BIC, positive: better)

    @property
    def separation(self) -> float:
        return (self.high_mean - self.low_mean) / math.sqrt((self.low_sd**2 + self.high_sd**2) / 2)

    def upper_posterior(self, x: float) -> float:
        high = self.high_share * _density(x, self.high_mean, self.high_sd)
        low = (1 - self.high_share) * _density(x, self.low_mean, self.low_sd)
        return high / (high + low) if high + low > 0 else float(x > self.high_mean)

    def to_dict(self) -> dict[str, float]:
        fields = ("low_mean", "low_sd", "high_mean", "high_sd", "high_share", "bic_gain")
        return {name: round(getattr(self, name), 6) for name in fields} | {"separation": round(self.separation, 6)}


def _no_minority_mode(windows: int, mixture: _Mixture | None) -> str:
    """Why the scores show no minority upper mode to read a threshold from ('' when they do)."""
    if mixture is None:
        return f"{windows} windows are too few to show a minority mode (needs {MIXTURE_MIN_WINDOWS})"
    if mixture.bic_gain <= 0:
        return "one mode explains the scores as well as two (BIC)"
    if mixture.high_share > MIXTURE_MAX_SHARE:
        return f"the upper mode holds {mixture.high_share:.0%} of the windows, more than {MIXTURE_MAX_SHARE:.0%}"
    if mixture.separation < MIXTURE_MIN_SEPARATION:
        return f"the modes are {mixture.separation:.2f} sd apart, under {MIXTURE_MIN_SEPARATION:g}"
    return ""


def _two_modes(values: Sequence[float], iterations: int = 300) -> _Mixture | None:
    """EM for a two-Gaussian mixture, started from the top 5% against the rest. A variance floor (a thousandth of the
    whole spread) keeps a component from collapsing onto a pile of tied scores. None when every value is equal."""
    ordered = sorted(values)
    n = len(ordered)
    spread = statistics.pvariance(ordered)
    if spread == 0:
        return None
    floor = spread * 1e-3
    split = max(1, min(n - 1, round(n * 0.95)))
    low, high = ordered[:split], ordered[split:]
    params = [
        (len(low) / n, statistics.fmean(low), max(statistics.pvariance(low), floor)),
        (len(high) / n, statistics.fmean(high), max(statistics.pvariance(high), floor)),
    ]
    previous = -math.inf
    for _ in range(iterations):
        responsibilities, likelihood = _expectation(ordered, params)
        params = [_maximisation(ordered, [r[k] for r in responsibilities], floor) for k in (0, 1)]
        if likelihood - previous < 1e-9 * n:
            break
        previous = likelihood
    one_mode = sum(math.log(_density(x, statistics.fmean(ordered), math.sqrt(spread)) or 1e-300) for x in ordered)
    # BIC: two modes cost 3 parameters more (a mean, a variance, a weight), each ln(n) of log-likelihood
    bic_gain = 2 * (likelihood - one_mode) - 3 * math.log(n)
    (_, m_low, v_low), (w_high, m_high, v_high) = sorted(params, key=lambda p: p[1])
    return _Mixture(m_low, math.sqrt(v_low), m_high, math.sqrt(v_high), w_high, bic_gain)


def _expectation(values: Sequence[float], params: list[tuple[float, float, float]]) -> tuple[list[list[float]], float]:
    responsibilities, likelihood = [], 0.0
    for x in values:
        weighted = [w * _density(x, m, math.sqrt(v)) for w, m, v in params]
        total = sum(weighted) or 1e-300
        likelihood += math.log(total)
        responsibilities.append([p / total for p in weighted])
    return responsibilities, likelihood


def _maximisation(values: Sequence[float], weights: Sequence[float], floor: float) -> tuple[float, float, float]:
    mass = sum(weights) or 1e-300
    mean = sum(w * x for w, x in zip(weights, values, strict=True)) / mass
    variance = sum(w * (x - mean) ** 2 for w, x in zip(weights, values, strict=True)) / mass
    return mass / len(values), mean, max(variance, floor)


def _density(x: float, mean: float, sd: float) -> float:
    return math.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def _log_odds(score: float) -> float:
    p = min(max(float(score), _LOGIT_CLAMP), 1 - _LOGIT_CLAMP)
    return math.log(p / (1 - p))


def normals_and_traffic(
    normals: Sequence[float], traffic: Sequence[float], budget_per_1000: float = DEFAULT_BUDGET_PER_1000
) -> ThresholdChoice:
    """The ``normals-and-traffic`` rule (module docstring): labeled normal scores and unlabeled traffic scores."""
    detail: dict[str, Any] = {"normals": len(normals), "traffic": len(traffic)}
    if min(len(normals), len(traffic)) < TRAFFIC_MIN_WINDOWS:
        why = f"{len(normals)} normal and {len(traffic)} traffic windows (needs {TRAFFIC_MIN_WINDOWS} of each)"
        return _budget_fallback(NORMALS_AND_TRAFFIC, [*normals, *traffic], budget_per_1000, detail, why)
    ranked_normals, ranked_traffic = sorted(normals), sorted(traffic)

    def flagged_share(ranked: list[float], threshold: float) -> float:
        return (len(ranked) - bisect_left(ranked, threshold)) / len(ranked)

    candidates = sorted(set(ranked_traffic), reverse=True)
    shares = [(t, flagged_share(ranked_traffic, t), flagged_share(ranked_normals, t)) for t in candidates]
    n, m = len(traffic), len(normals)
    # the excess less TRAFFIC_EXCESS_SE standard errors of its sampling noise, where at least half the normals stay
    # unflagged: further down, (1 - F) is small and divides a difference of two noisy shares into a share of anything
    prevalence = max(
        (
            (q - f - TRAFFIC_EXCESS_SE * math.sqrt(q * (1 - q) / n + f * (1 - f) / m)) / (1 - f)
            for _, q, f in shares
            if f <= 0.5
        ),
        default=0.0,
    )
    prevalence = min(max(prevalence, 0.0), 1.0)
    detail["estimated_prevalence"] = round(prevalence, 6)
    if prevalence <= 0:
        why = "the traffic flags no more than the normals"
        return _budget_fallback(NORMALS_AND_TRAFFIC, [*normals, *traffic], budget_per_1000, detail, why)
    best: tuple[float, float, float, float] | None = None  # (estimated F1, threshold, traffic share, normal share)
    for threshold, q, f in shares:  # high to low: ties keep the higher threshold (fewer alerts)
        tp = max(q - (1 - prevalence) * f, 0.0)
        f1 = 2 * tp / (tp + prevalence + (1 - prevalence) * f) if tp else 0.0
        if best is None or f1 > best[0]:
            best = (f1, threshold, q, f)
    if best is None or best[0] == 0.0:
        why = "no threshold has an estimated hit"
        return _budget_fallback(NORMALS_AND_TRAFFIC, [*normals, *traffic], budget_per_1000, detail, why)
    f1, value, q, f = best
    detail |= {
        "estimated_f1": round(f1, 6),
        "traffic_alerts_per_1000": round(1000 * q, 6),
        "normal_alerts_per_1000": round(1000 * f, 6),
    }
    return ThresholdChoice(value, NORMALS_AND_TRAFFIC, detail)


def _budget_fallback(
    rule: str, reference: Sequence[float], budget_per_1000: float, detail: dict[str, Any], why: str
) -> ThresholdChoice:
    """``rule`` falling back to the false-alarm budget on ``reference``: ``detail`` says why and keeps its choice."""
    budget = false_alarm_budget(reference, budget_per_1000)
    detail |= {"fallback": f"{why}: the false-alarm budget", "budget": {"threshold": budget.value, **budget.detail}}
    return ThresholdChoice(budget.value, rule, detail)


def _windows_needed(budget_per_1000: float) -> int | None:
    """The fewest reference windows that resolve the budget (k >= 0); None for a budget of 0 (or too small to say)."""
    needed = 1000 / budget_per_1000 if budget_per_1000 > 0 else math.inf
    return math.ceil(needed) - 1 if math.isfinite(needed) else None


def _flag_at_most(reference: Sequence[float], allowed: int) -> tuple[float, int]:
    """(threshold, windows of ``reference`` it flags): the lowest threshold flagging at most ``allowed`` of them,
    midway between the lowest flagged score and the highest unflagged one; a tied group is never split."""
    distinct = sorted(set(reference), reverse=True)
    above = {value: 0 for value in distinct}  # distinct score -> windows at or above it
    for value in reference:
        above[value] += 1
    running = 0
    for value in distinct:
        running += above[value]
        above[value] = running
    lowest = None  # the lowest distinct score whose windows at or above stay within ``allowed``
    for value in distinct:
        if above[value] > allowed:
            break
        lowest = value
    if lowest is None:
        return _above(distinct[0]), 0
    position = distinct.index(lowest)
    if position + 1 == len(distinct):
        return float(lowest), above[lowest]  # every window may be flagged
    return _between(lowest, distinct[position + 1]), above[lowest]


def _budget_and_anomalies(
    budget: ThresholdChoice, reference: Sequence[float], anomalies: Sequence[float], prevalence: float
) -> ThresholdChoice:
    detail: dict[str, Any] = {
        "anomalies": len(anomalies),
        "prevalence": prevalence,
        "budget": {"threshold": budget.value, **budget.detail},  # the budget rule's own choice, kept whole
    }
    if not anomalies:
        detail["fallback"] = "no labeled anomaly: the false-alarm budget alone"
        return ThresholdChoice(budget.value, BUDGET_AND_ANOMALIES, detail)
    if not reference:  # nothing to count false alarms on: the budget's own "flag nothing seen"
        detail["fallback"] = "no reference windows: the false-alarm budget alone"
        return ThresholdChoice(budget.value, BUDGET_AND_ANOMALIES, detail)
    if budget.detail["budget_per_1000"] > 0 and not budget.detail["resolved"]:
        # too few reference windows to tell the budget: "flag none of them" would let one high-scoring normal
        # overrule every labeled anomaly, so the labeled windows decide alone
        value, f1 = best_threshold([*reference, *anomalies], [0] * len(reference) + [1] * len(anomalies))
        detail["fallback"] = (
            f"{len(reference)} reference windows cannot resolve the budget: best F1 on them and the anomalies"
        )
        detail |= {"f1": round(f1, 6), "reference_alerts": sum(1 for r in reference if r >= value)}
        return ThresholdChoice(value, BUDGET_AND_ANOMALIES, detail)
    allowed = budget.detail["allowed_reference_alerts"] if budget.detail["resolved"] else 0
    ranked_anomalies, ranked_reference = sorted(anomalies), sorted(reference)
    # each candidate leaves one more distinct reference score unflagged, from the lowest allowed upwards: it sits
    # just above that score (the bottom of the gap: the false-alarm bound is the same anywhere in it)
    candidates = [
        _above(d) for d in sorted(set(reference)) if len(reference) - bisect_right(ranked_reference, d) <= allowed
    ]
    if allowed >= len(reference):
        candidates.append(min(ranked_reference[0], ranked_anomalies[0]))  # flagging everything is within budget
    best: tuple[float, float, float, float] | None = None  # (estimated F1, threshold, recall, false-alarm rate)
    for threshold in sorted(candidates, reverse=True):
        recall = (len(anomalies) - bisect_left(ranked_anomalies, threshold)) / len(anomalies)
        rate = (len(reference) - bisect_left(ranked_reference, threshold)) / len(reference)
        f1 = 2 * prevalence * recall / (prevalence * recall + prevalence + (1 - prevalence) * rate) if recall else 0.0
        if best is None or f1 > best[0]:  # from high to low: ties keep the higher threshold (fewer alerts)
            best = (f1, threshold, recall, rate)
    if best is None or best[0] == 0.0:
        detail["fallback"] = "no labeled anomaly scores within the budget: the false-alarm budget alone"
        return ThresholdChoice(budget.value, BUDGET_AND_ANOMALIES, detail)
    f1, value, recall, rate = best
    flagged = len(reference) - bisect_left(ranked_reference, value)
    detail |= {
        "estimated_f1": round(f1, 6),
        "anomaly_recall": round(recall, 6),
        "reference_alerts": flagged,
        "reference_alerts_per_1000": round(1000 * rate, 6),
        "bound_per_1000": round(1000 * (flagged + 1) / (len(reference) + 1), 6),
    }
    return ThresholdChoice(value, BUDGET_AND_ANOMALIES, detail)


def _between(high: float, low: float) -> float:
    """Midway between two distinct scores; ``high`` itself where they are too close for a float in between."""
    middle = (high + low) / 2
    return middle if low < middle <= high else float(high)


def _above(top: float) -> float:
    return max(top + _ABOVE, math.nextafter(top, math.inf))
