"""PCA on template counts of a system's own unlabeled traffic: a zero-label detector that needs no source and no label.

The classic unsupervised log detector (Xu et al., "Detecting Large-Scale System Problems by Mining Console Logs",
SOSP 2009; loglizer's ``PCA``), with loglizer's defaults, fixed before any measurement here:
- each window is a vector of template counts, weighted by the template's inverse document frequency in the
  reference and centred on the reference's mean (loglizer's ``tf-idf`` and ``zero-mean``);
- the principal components that explain ``VARIANCE`` (95%) of the reference's variance span the normal space;
  what a window has outside it, its squared prediction error (SPE, the residual's squared length), is its score;
- the threshold is the Q-statistic (Jackson and Mudholkar 1979) at a false-alarm rate of ``ALPHA``: the SPE a
  normal window exceeds with probability ``ALPHA`` if the residual subspace's coordinates are Gaussian. It is read
  off the reference's residual eigenvalues, not off any label or any alert rate an operator has to guess.

It differs from loglizer in one way, on purpose: a template the reference never held is counted (one column for all
of them, weighted as a template one window in ``2 * windows`` held) instead of dropped, as ``stream.model.rarity``
scores it 1.0. A detector that ignores a template nobody saw before misses what an operator most wants to see.

Scores are squashed to ``SPE / (SPE + Q)`` so that they lie in [0, 1) like every other score here (the alert-budget
and score-mixture rules of ``stream.model.thresholds`` read them); the squashing is monotone, so a rule ranks
windows as it would on SPE, and the Q-statistic threshold is 0.5. Reference windows are scored out of fold (fit on
the other ``FOLDS - 1`` folds), so that their scores are distributed as a fresh window's are: PCA fit on a window
explains part of its residual away.

Measured beside ``template-rarity`` in bench/transfer_curves.py (method ``count-pca``): what a system's traffic
tells with no source system and no label, which a transfer method has to beat (docs/transfer.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from stream.errors import ModelError
from stream.model.detector import WindowText

VARIANCE = 0.95  # loglizer PCA's n_components: the share of the reference's variance the normal space explains
ALPHA = 0.0005  # loglizer PCA's c_alpha = 3.2905, the standard normal's 1 - 0.0005 quantile
FOLDS = 5  # reference windows are scored by the PCA fit on the other folds
Q_STATISTIC = "q-statistic"  # the threshold rule's name in the bench's run files and docs/transfer.md
MIN_WINDOWS = 2 * FOLDS  # each fold's fit needs more than one window
NUMERICAL_FLOOR = 1e-9  # eigenvalues below this share of the total variance are rounding noise


@dataclass(frozen=True, slots=True)
class _Fit:
    """One PCA fit: the weighting, the mean, the normal space and the Q-statistic threshold on SPE."""

    idf: np.ndarray  # one weight per template column, the unseen column last
    mean: np.ndarray
    normal_space: np.ndarray  # columns: the principal directions kept
    q_limit: float
    components: int

    def spe(self, counts: np.ndarray) -> np.ndarray:
        centred = counts * self.idf - self.mean
        residual = centred - (centred @ self.normal_space) @ self.normal_space.T
        return np.einsum("ij,ij->i", residual, residual)


@dataclass(frozen=True, slots=True)
class TemplateCountPCA:
    """PCA of the template counts of ``reference`` windows (the target's unlabeled traffic), scores in [0, 1)."""

    columns: dict[str, int]  # template -> column; the unseen column is len(columns)
    fit: _Fit
    reference_counts: np.ndarray  # one row per reference window: what ``member_scores`` refits on
    variance: float
    alpha: float

    @classmethod
    def of(cls, reference: Sequence[WindowText], variance: float = VARIANCE, alpha: float = ALPHA) -> TemplateCountPCA:
        if len(reference) < MIN_WINDOWS:
            raise ModelError(f"count PCA needs at least {MIN_WINDOWS} reference windows, got {len(reference)}")
        if not 0.0 < variance < 1.0 or not 0.0 < alpha < 0.5:
            raise ModelError(f"count PCA needs 0 < variance < 1 and 0 < alpha < 0.5, got {variance} and {alpha}")
        templates = sorted({template for window in reference for template in window.templates})
        if not templates:
            raise ModelError("count PCA needs reference windows that hold templates")
        columns = {template: column for column, template in enumerate(templates)}
        counts = _counts(reference, columns)
        return cls(columns, _fit(counts, variance, alpha), counts, variance, alpha)

    @property
    def threshold(self) -> float:
        """The Q-statistic threshold on the squashed scores: SPE = Q is 0.5."""
        return 0.5

    def scores(self, windows: Sequence[WindowText]) -> list[float]:
        """Windows from outside the reference."""
        return _squashed(self.fit.spe(_counts(windows, self.columns)), self.fit.q_limit)

    def member_scores(self) -> list[float]:
        """The reference's own windows, each scored by the fit on the folds it is not in (fold = position mod
        ``FOLDS``), on the scale of the whole reference's Q-statistic, as ``scores`` are."""
        counts = self.reference_counts
        spe = np.zeros(len(counts))
        positions = np.arange(len(counts))
        for fold in range(FOLDS):
            held_out = positions % FOLDS == fold
            fold_fit = _fit(counts[~held_out], self.variance, self.alpha)
            spe[held_out] = fold_fit.spe(counts[held_out])
        return _squashed(spe, self.fit.q_limit)

    def describe(self) -> dict[str, str | float | int]:
        """What a run file or a manifest keeps of the fit, the threshold rule included."""
        return {
            "threshold_rule": Q_STATISTIC,
            "reference_windows": len(self.reference_counts),
            "templates": len(self.columns),
            "components": self.fit.components,
            "variance": self.variance,
            "alpha": self.alpha,
            "q_limit_spe": round(self.fit.q_limit, 6),
        }


def _counts(windows: Sequence[WindowText], columns: dict[str, int]) -> np.ndarray:
    unseen = len(columns)
    counts = np.zeros((len(windows), unseen + 1))
    for row, window in enumerate(windows):
        for template in window.templates:
            counts[row, columns.get(template, unseen)] += 1.0
    return counts


def _fit(counts: np.ndarray, variance: float, alpha: float) -> _Fit:
    windows = counts.shape[0]
    holders = (counts > 0).sum(axis=0).astype(float)
    # the unseen column no reference window holds: weighted as a template half a window held
    idf = np.log(windows / np.maximum(holders, 0.5))
    weighted = counts * idf
    mean = weighted.mean(axis=0)
    centred = weighted - mean
    # eigenvalues of the covariance centred.T @ centred / windows (loglizer's), from the SVD of the data
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    eigenvalues = singular**2 / windows
    total = float(eigenvalues.sum())
    if total <= 0.0:
        raise ModelError("count PCA needs reference windows that differ: every window has the same counts")
    # directions the reference does not vary in at all come out of the SVD as rounding noise, not as variance
    eigenvalues = np.where(eigenvalues > NUMERICAL_FLOOR * total, eigenvalues, 0.0)
    explained = np.cumsum(eigenvalues) / total
    components = min(int(np.searchsorted(explained, variance)) + 1, len(eigenvalues))
    normal_space = directions[:components].T
    residual = eigenvalues[components:]
    # where the reference has no residual variance left, any residual beyond rounding is outside the normal space
    q_limit = _q_limit(residual, alpha) if residual.any() else NUMERICAL_FLOOR * total
    return _Fit(idf, mean, normal_space, q_limit, components)


def _q_limit(residual_eigenvalues: np.ndarray, alpha: float) -> float:
    """Jackson and Mudholkar's Q-statistic: the SPE exceeded with probability ``alpha`` (loglizer's formula)."""
    theta = [float(np.sum(residual_eigenvalues**power)) for power in (1, 2, 3)]
    h0 = 1.0 - 2.0 * theta[0] * theta[2] / (3.0 * theta[1] ** 2)
    c_alpha = NormalDist().inv_cdf(1.0 - alpha)
    base = c_alpha * math.sqrt(2.0 * theta[1] * h0**2) / theta[0] + 1.0 + theta[1] * h0 * (h0 - 1.0) / theta[0] ** 2
    if h0 <= 0.0 or base <= 0.0:
        # the approximation needs h0 > 0, which fails only where one residual direction holds nearly all that is left
        raise ModelError(f"count PCA: the Q-statistic is undefined for these residual eigenvalues (h0 = {h0:.3g})")
    return float(theta[0] * base ** (1.0 / h0))


def _squashed(spe: np.ndarray, q_limit: float) -> list[float]:
    return [float(s / (s + q_limit)) for s in spe]
