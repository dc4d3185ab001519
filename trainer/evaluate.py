"""Scoring a model on the test part of a data set: precision, recall, F1, PR-AUC, confusion counts, PR curve.

The threshold is chosen on the data set's validation part, never on its test part; when the data has no validation
part the threshold recorded in the model's manifest is used (it was chosen on validation at training time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream.model.detector import Detector
from stream.model.metrics import best_threshold, confusion, pr_auc, pr_curve
from trainer.datasets import Dataset, Split
from trainer.train import inputs


def evaluate(
    detector: Detector,
    dataset: Dataset,
    split: Split,
    *,
    target: str | None = None,
    manifest_threshold: float | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    test_windows, test_labels = inputs(dataset, split.test)
    if not test_labels:
        raise ValueError(f"the test part of {dataset.name} is empty ({split.method})")
    val_windows, val_labels = inputs(dataset, split.validation)
    if any(val_labels):
        threshold, _ = best_threshold(detector.scores(val_windows, target=target, batch_size=batch_size), val_labels)
        chosen_on = f"validation part of {dataset.name} ({len(val_labels)} windows)"
    elif manifest_threshold is not None:
        threshold, chosen_on = manifest_threshold, "the model manifest (chosen on validation when trained)"
    else:
        raise ValueError(f"{dataset.name} has no anomalous validation window and the model records no threshold")
    scores = detector.scores(test_windows, target=target, batch_size=batch_size)
    result = confusion(scores, test_labels, threshold)
    return {
        "dataset": dataset.name,
        "split": split.method,
        "target": target,
        "threshold": threshold,
        "threshold_chosen_on": chosen_on,
        **result.to_dict(),
        "pr_auc": round(pr_auc(scores, test_labels), 6),
        "test_windows": len(test_labels),
        "test_anomalous": sum(test_labels),
        "pr_curve": [[round(t, 6), round(p, 6), round(r, 6)] for t, p, r in pr_curve(scores, test_labels)],
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
