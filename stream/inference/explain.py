"""Why a window scored as it did: occlusion of each distinct template.

For every distinct template of a window, the window is scored again without that template's lines; the template's
weight is how far the score falls. Occlusion needs nothing but ``Detector.scores``, so it explains every family the
same way (attention weights would exist for TransLog only, gradients not for a 4-bit LogLLM), and it answers the
operator's question directly: "without these lines the window would look normal". The variants of a window are
scored in one batch; only anomalous windows are explained, so the cost falls on the few that raise alerts.
"""

from __future__ import annotations

from collections.abc import Sequence

from stream.model.detector import Detector, WindowText
from stream.records import Cause


def occlusion_variants(window: WindowText) -> tuple[list[str], list[WindowText]]:
    """The window's distinct templates (first-seen order) and, for each, the window without its lines."""
    distinct = list(dict.fromkeys(window.templates))
    variants = []
    for template in distinct:
        keep = [i for i, t in enumerate(window.templates) if t != template]
        masked = tuple(window.masked[i] for i in keep) if window.masked else ()
        variants.append(WindowText(tuple(window.templates[i] for i in keep), masked))
    return distinct, variants


def explain(
    detector: Detector,
    windows: Sequence[WindowText],
    scores: Sequence[float],
    targets: Sequence[str | None],
    *,
    top: int,
) -> list[tuple[Cause, ...]]:
    """For each window (scored by its target), its ``top`` templates by weight (score minus the score without
    them), heaviest first.

    A template whose removal leaves the window empty gets the whole score as its weight (nothing else is there to
    blame). Templates that lower the score (negative weight) are left out unless nothing raised it.
    """
    plans = [occlusion_variants(window) for window in windows]
    flat, flat_targets = [], []
    for (_, variants), target in zip(plans, targets, strict=True):
        kept = [variant for variant in variants if variant.templates]
        flat += kept
        flat_targets += [target] * len(kept)
    flat_scores = iter(detector.scores_mixed(flat, flat_targets) if flat else [])
    out: list[tuple[Cause, ...]] = []
    for window, score, (distinct, variants) in zip(windows, scores, plans, strict=True):
        causes = []
        for template, variant in zip(distinct, variants, strict=True):
            without = next(flat_scores) if variant.templates else 0.0
            offsets = tuple(i for i, t in enumerate(window.templates) if t == template)
            causes.append(Cause(template, score - without, offsets))
        causes.sort(key=lambda cause: cause.weight, reverse=True)
        positive = [cause for cause in causes if cause.weight > 0]
        out.append(tuple((positive or causes)[:top]))
    return out
