"""Scoring a model on the test part of a data set: precision, recall, F1, PR-AUC, confusion counts, PR curve.

The threshold is chosen on the data set's validation part, never on its test part; when the data has no validation
part the threshold recorded in the model's manifest is used (it was chosen on validation at training time). A
caller that must not use the whole validation part (a model trained from a few labels: the rest of the validation
part would be labels beyond its budget) passes the threshold it chose itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream.model.detector import Detector
from stream.model.quality import best_threshold, confusion, pr_auc, pr_curve
from trainer.datasets import Dataset, Split
from trainer.train import inputs


def evaluate(
    detector: Detector,
    dataset: Dataset,
    split: Split,
    *,
    target: str | None = None,
    manifest_threshold: float | None = None,
    threshold: tuple[float, str] | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """``threshold``: (value, where it was chosen), used as given instead of one chosen on the validation part."""
    test_windows, test_labels = inputs(dataset, split.test)
    if not test_labels:
        raise ValueError(f"the test part of {dataset.name} is empty ({split.method})")
    val_windows, val_labels = inputs(dataset, split.validation)
    if threshold is not None:
        cut, chosen_on = threshold
    elif any(val_labels):
        cut, _ = best_threshold(detector.scores(val_windows, target=target, batch_size=batch_size), val_labels)
        chosen_on = f"validation part of {dataset.name} ({len(val_labels)} windows)"
    elif manifest_threshold is not None:
        cut, chosen_on = manifest_threshold, "the model manifest (chosen on validation when trained)"
    else:
        raise ValueError(f"{dataset.name} has no anomalous validation window and the model records no threshold")
    scores = detector.scores(test_windows, target=target, batch_size=batch_size)
    result = confusion(scores, test_labels, cut)
    return {
        "dataset": dataset.name,
        "split": split.method,
        "target": target,
        "threshold": cut,
        "threshold_chosen_on": chosen_on,
        **result.to_dict(),
        "pr_auc": round(pr_auc(scores, test_labels), 6),
        "test_windows": len(test_labels),
        "test_anomalous": sum(test_labels),
        "ceiling": content_ceiling(dataset, split.test),
        "pr_curve": [[round(t, 6), round(p, 6), round(r, 6)] for t, p, r in pr_curve(scores, test_labels)],
        "test_scores": [round(s, 6) for s in scores],
    }


def content_ceiling(dataset: Dataset, indices: Sequence[int]) -> dict[str, Any]:
    """The best F1 any detector can reach on these windows when it decides from their content alone.

    Windows whose lines are identical (same templates and masked lines, in the same order) get the same score
    from any model, so where such windows carry both labels no threshold separates them. Each distinct content is
    then one all-or-nothing choice with its own (anomalous, normal) counts; F1 = 2TP / (TP + FP + positives) is a
    ratio of sums, and the best choice flags every content whose share of anomalies is above some level
    (Dinkelbach's argument), so a sweep over contents by that share finds the ceiling exactly. It is an upper
    bound: it knows the test labels. Below 1.0 it says the labels themselves, not the model, cap the score (Hadoop's
    are per application, and most containers of a faulty application read like a healthy one's).
    """
    counts: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = defaultdict(lambda: [0, 0])
    for i in indices:
        window = dataset.windows[i]
        counts[(window.templates, window.masked)][0 if window.label else 1] += 1
    positives = sum(anomalous for anomalous, _ in counts.values())
    best, tp, fp = 0.0, 0, 0
    for anomalous, normal in sorted(counts.values(), key=lambda c: -c[0] / (c[0] + c[1])):
        tp, fp = tp + anomalous, fp + normal
        best = max(best, 2 * tp / (tp + fp + positives)) if tp else best
    shared = [(anomalous, normal) for anomalous, normal in counts.values() if anomalous and normal]
    return {
        "f1": round(best, 6),
        "distinct_windows": len(counts),
        "anomalous_alike_normal": sum(anomalous for anomalous, _ in shared),  # anomalous windows with a normal twin
        "anomalous": positives,
    }


def plot_pr_curve(result: dict[str, Any], path: Path, title: str) -> None:
    """The test PR curve as a PNG, the chosen threshold marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    from matplotlib import pyplot as plt

    points = result["pr_curve"]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.step([r for _, _, r in points], [p for _, p, _ in points], where="post", label=f"PR-AUC {result['pr_auc']:.3f}")
    ax.scatter(
        [result["recall"]],
        [result["precision"]],
        color="red",
        zorder=3,
        label=f"threshold {result['threshold']:.3f}: F1 {result['f1']:.3f}",
    )
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.legend(loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
