"""Why a window scored as it did: occlusion of each distinct template.

For every distinct template of a window, the window is scored again without that template's lines; the template's
weight is how far the score falls. Occlusion needs nothing but ``Detector.scores``, so it explains every family the
same way (attention weights would exist for TransLog only), and it answers the operator's question directly:
"without these lines the window would look normal". The variants of a window are scored in one batch; only anomalous
windows are explained, so the cost falls on the few that raise alerts.

Where one scoring is costly (LogLLM: a decoder pass per variant, about 20 distinct templates in a 100-line
Thunderbird window) the family offers a cheap per-line saliency (``Detector.line_saliency``: gradient x input, one
forward and one backward), and only the ``top + CANDIDATES_EXTRA`` templates it ranks highest are occluded. The
weights stay occlusion's (score drops); the saliency only chooses which templates are worth a scoring.
"""

from __future__ import annotations

from collections.abc import Sequence

from stream.model.detector import Detector, WindowText
from stream.records import Cause

CANDIDATES_EXTRA = 2  # templates occluded beyond ``top`` when a saliency chooses them (its ranking is approximate)
# Drain's template of a blank (or whitespace) line. Never named as a cause: it has no text to show an operator, its
# occlusion weight is tiny where measured (at most 0.005 in HDFS anomalies with a blank line inserted), and an
# incident is identified by the templates its explanation names, so naming it would split one fault into two
# incidents by whether a stray blank line fell into the window. (The alert book refuses an empty template.)
BLANK = ""


def occlusion_variants(
    window: WindowText, templates: Sequence[str] | None = None
) -> tuple[list[str], list[WindowText]]:
    """The window's distinct templates but the blank one (first-seen order; or ``templates``, a choice of them)
    and, for each, the window without its lines."""
    chosen = window.templates if templates is None else templates
    distinct = [template for template in dict.fromkeys(chosen) if template != BLANK]
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
    saliency: bool = True,
) -> list[tuple[Cause, ...]]:
    """For each window (scored by its target), its ``top`` templates by weight (score minus the score without
    them), heaviest first; among the ``top + CANDIDATES_EXTRA`` its family's saliency ranks highest where it has one
    (and ``saliency`` is on).

    A template whose removal leaves the window empty gets the whole score as its weight (nothing else is there to
    blame). Templates that lower the score (negative weight) are left out unless nothing raised it. Blank lines
    (``BLANK``) are never named; a window of blank lines alone is explained by nothing.
    """
    chosen = candidates(detector, windows, targets, top + CANDIDATES_EXTRA) if saliency else [None] * len(windows)
    plans = [occlusion_variants(window, templates) for window, templates in zip(windows, chosen, strict=True)]
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


def candidates(
    detector: Detector, windows: Sequence[WindowText], targets: Sequence[str | None], keep: int
) -> list[list[str] | None]:
    """Per window, the ``keep`` templates its family's saliency ranks highest (summed over their lines), or None
    (occlude them all) where the family has no saliency or the window has no more than ``keep`` templates."""
    out: list[list[str] | None] = [None] * len(windows)
    groups: dict[str | None, list[int]] = {}
    for i, (window, target) in enumerate(zip(windows, targets, strict=True)):
        if len(set(window.templates)) > keep:
            groups.setdefault(target, []).append(i)
    for target, members in groups.items():
        saliency = detector.line_saliency([windows[i] for i in members], target=target)
        if saliency is None:
            return out
        for i, per_line in zip(members, saliency, strict=True):
            templates = windows[i].templates[len(windows[i].templates) - len(per_line) :]  # the lines it reads
            total: dict[str, float] = {}
            for template, value in zip(templates, per_line, strict=True):
                if template != BLANK:  # never a cause: not worth an occlusion
                    total[template] = total.get(template, 0.0) + value
            out[i] = sorted(total, key=total.__getitem__, reverse=True)[:keep]
    return out
