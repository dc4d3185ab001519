"""Template rarity in a system's own unlabeled traffic: a zero-label score that needs no source and no label.

A window's rarity is that of its rarest template: ``-log`` of the share of the reference windows that hold the
template, scaled to [0, 1] (1: a template no reference window holds). Anomalies are the minority of a system's
traffic, so the templates only they print are rare in it; this is the template-count view behind the classic
unsupervised detectors (PCA, invariant mining, LogCluster), reduced to one number a person can read ("this
window holds a template 3 of 2,000 recent windows held").

It is measured beside the transferred models in bench/transfer_curves.py (method ``template-rarity``, and
``zero-shot+rarity``: a family's base score plus this one) because a transfer method that needs a source system
has to beat what the target's traffic tells on its own. What it cannot see: an anomaly made of common templates
(a missing step; BGL's alert bursts, whose templates are frequent), and a normal template that is new since the
reference was taken (BGL's test period brings 65 templates its train period never printed: docs/transfer.md).

The reference's own windows are scored leaving themselves out, so that their scores are distributed as a fresh
window's are; the threshold rules of ``stream.model.thresholds`` read those scores.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from stream.errors import ModelError
from stream.model.detector import WindowText

# added to every count: a template no reference window holds scores 1, not infinity
PSEUDO_COUNT = 0.5


@dataclass(frozen=True, slots=True)
class TemplateRarity:
    """Template document frequencies over ``windows`` reference windows (the target's unlabeled traffic)."""

    holders: dict[str, int]
    windows: int

    @classmethod
    def of(cls, reference: Sequence[WindowText]) -> TemplateRarity:
        if not reference:
            raise ModelError("template rarity needs at least one reference window")
        holders = Counter(template for window in reference for template in set(window.templates))
        return cls(dict(holders), len(reference))

    def _rarity(self, holders: int, windows: int) -> float:
        # scaled by the rarity of an unseen template, so that scores of references of any size share [0, 1]
        unseen = -math.log(PSEUDO_COUNT / (windows + 1))
        return -math.log((holders + PSEUDO_COUNT) / (windows + 1)) / unseen

    def score(self, window: WindowText) -> float:
        """A window from outside the reference: the rarity of its rarest template (0.0 for an empty window)."""
        return max((self._rarity(self.holders.get(t, 0), self.windows) for t in set(window.templates)), default=0.0)

    def score_member(self, window: WindowText) -> float:
        """A window of the reference itself, scored as if the reference had been taken without it."""
        own = set(window.templates)
        missing = [t for t in own if self.holders.get(t, 0) < 1]
        if missing:
            raise ModelError(f"the window is not in the reference: it holds {len(missing)} template(s) none held")
        return max((self._rarity(self.holders[t] - 1, self.windows - 1) for t in own), default=0.0)

    def scores(self, windows: Sequence[WindowText], *, members: bool = False) -> list[float]:
        """``score`` of each window, or ``score_member`` where ``members`` (the windows the reference was built of)."""
        scorer = self.score_member if members else self.score
        return [scorer(window) for window in windows]
