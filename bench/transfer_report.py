"""bench/results/transfer_curves.json and docs/transfer.md from the runs kept by bench/transfer_curves.py.

Every threshold rule is applied here, to kept scores: a rule changes no training. The goals of the issue are
checked with rules fixed beforehand, never the rule that happened to score best on the test part: ``best-f1`` on
the few labels for N > 0 (today's default), ``alert-budget@10`` (1% of unlabeled windows flagged) at N = 0.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from stream.model.durable import atomic_write_text
from stream.model.quality import confusion, pr_auc
from stream.model.thresholds import (
    BEST_F1,
    BUDGET_AND_ANOMALIES,
    NORMALS_AND_TRAFFIC,
    SCORE_MIXTURE,
    choose_threshold,
    false_alarm_budget,
    score_mixture,
)

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "results" / "transfer_runs"
MODEL_RUNS = ROOT / "bench" / "results" / "model_runs"  # in-domain runs of `make results` (seeds 0, 1, 2)
OUT = ROOT / "bench" / "results" / "transfer_curves.json"
DOC = ROOT / "docs" / "transfer.md"
UNLABELED = 2000  # unlabeled target windows scored per run (the budget rules' reference)
ZERO_LABEL_RULES = (1.0, 10.0, 100.0)  # alerts per 1,000 unlabeled windows
GOAL_RULE = {"few": BEST_F1, "zero": "alert-budget@10"}
MIXTURE_FALLBACK_BUDGET = 10.0  # score-mixture's budget where the scores show no minority mode: the goal rule's
TRANSFER_METHODS = ("adapter", "full")
SYSTEMS = ("hdfs", "bgl", "thunderbird")


def rule_f1(run: dict[str, Any]) -> dict[str, float]:
    """F1 on the test part under each rule that the run's labels allow."""
    val, test, unlabeled = run["validation"], run["test"], run["unlabeled"]
    choices = {}
    if run["n_anomalies"] == 0:
        for budget in ZERO_LABEL_RULES:
            choices[f"alert-budget@{budget:g}"] = false_alarm_budget(unlabeled["scores"], budget).value
        # where the unlabeled scores show a minority upper mode, the threshold is where it begins; where they do
        # not, the goal rule's budget (10 per 1,000), so the two differ only where a mode was found
        choices[SCORE_MIXTURE] = score_mixture(unlabeled["scores"], MIXTURE_FALLBACK_BUDGET).value
        # a method that sets its own threshold without a label (count-pca's Q-statistic) is scored by it too
        if "own_threshold" in run:
            choices[run["own_threshold"]["rule"]] = run["own_threshold"]["value"]
    else:
        choices[BEST_F1] = choose_threshold(BEST_F1, val["scores"], val["labels"]).value
        # reference: the labeled validation normals (1,000 at the cap); unlabeled traffic holds anomalies at their
        # natural share (BGL: 8%), which a budget of 1 per 1,000 would count as false alarms
        choices[BUDGET_AND_ANOMALIES] = choose_threshold(BUDGET_AND_ANOMALIES, val["scores"], val["labels"]).value
        # no anomaly read: the validation normals against the unlabeled traffic, the anomaly share estimated
        choices[NORMALS_AND_TRAFFIC] = choose_threshold(
            NORMALS_AND_TRAFFIC, val["scores"], val["labels"], reference_scores=unlabeled["scores"]
        ).value
    return {rule: confusion(test["scores"], test["labels"], cut).f1 for rule, cut in choices.items()}


def budget_ceiling(rule: str, labels: list[int]) -> float | None:
    """The highest test F1 an ``alert-budget@B`` rule allows whatever the ranking: flagging a share b = B / 1,000
    of windows where a share a is anomalous, a perfect ranking reaches F1 = 2 min(a, b) / (a + b). None for other
    rules."""
    if not rule.startswith("alert-budget@"):
        return None
    flagged, anomalous = float(rule.split("@")[1]) / 1000, sum(labels) / len(labels)
    return round(2 * min(flagged, anomalous) / (flagged + anomalous), 4)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return round(statistics.fmean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else 0.0


def in_domain_rows() -> list[dict[str, Any]]:
    """The all-labels bar: ``make results``' in-domain runs of each family and target, over the seeds kept."""
    rows = []
    for family_dir in sorted(MODEL_RUNS.glob("*")):
        for target in (*SYSTEMS, "hadoop"):
            paths = sorted(family_dir.glob(f"in_domain-{target}.json")) + sorted(
                family_dir.glob(f"in_domain-{target}-seed*.json")
            )
            if not paths:
                continue
            runs = [json.loads(p.read_text()) for p in paths]
            seeds = [int(p.stem.rsplit("seed", 1)[1]) if "-seed" in p.stem else 0 for p in paths]
            f1 = [r["f1"] for r in runs]
            mean, sd = _mean_sd(f1)
            rows.append(
                {
                    "family": family_dir.name,
                    "source": target,
                    "target": target,
                    "n_anomalies": None,  # all the target's labels
                    "method": "in-domain",
                    "seeds": seeds,
                    "f1": f1,
                    "f1_mean": mean,
                    "f1_sd": sd,
                    "pr_auc_mean": round(statistics.fmean(r["pr_auc"] for r in runs), 4),
                    "threshold_rule": BEST_F1 + " (the target's whole validation part)",
                    "ceiling_f1": runs[0].get("ceiling", {}).get("f1"),
                }
            )
    return rows


def _cell(row: dict[str, Any]) -> tuple:
    return (row["family"], row["source"], row["target"], row["n_anomalies"], row["method"])


def kept_rows(fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows already in the JSON for cells none of the runs here produced: the runs are not kept in git (tens of
    MB), so a new checkout that runs one family must not drop the other family's committed rows."""
    if not OUT.exists():
        return []
    done = {_cell(row) for row in fresh}
    return [
        row
        for row in json.loads(OUT.read_text())["rows"]
        if row.get("method") != "in-domain" and _cell(row) not in done
    ]


def curve_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["family"], run["source"], run["target"], run["n_anomalies"], run["method"])].append(run)
    rows = []
    for (family, source, target, anomalies, method), group in sorted(groups.items()):
        group.sort(key=lambda r: r["seed"])
        per_seed = [rule_f1(r) for r in group]
        prs = [pr_auc(r["test"]["scores"], r["test"]["labels"]) for r in group]
        test_labels = group[0]["test"]["labels"]
        trivial = 2 * sum(test_labels) / (len(test_labels) + sum(test_labels))
        for rule in per_seed[0]:
            f1 = [round(s[rule], 4) for s in per_seed]
            mean, sd = _mean_sd(f1)
            rows.append(
                {
                    "family": family,
                    "source": source,
                    "target": target,
                    "n_anomalies": anomalies,
                    "method": method,
                    "seeds": [r["seed"] for r in group],
                    "f1": f1,
                    "f1_mean": mean,
                    "f1_sd": sd,
                    "pr_auc_mean": round(statistics.fmean(prs), 4),
                    "pr_auc_sd": _mean_sd(prs)[1],
                    "threshold_rule": rule,
                    "trivial_f1": round(trivial, 4),
                    "rule_ceiling_f1": budget_ceiling(rule, test_labels),
                    "train_anomalous": [r["train_anomalous"] for r in group],
                    "validation_anomalous": [sum(r["validation"]["labels"]) for r in group],
                    "wall_s_mean": round(statistics.fmean(r["wall_s"] for r in group), 1),
                }
            )
    return rows


def write_outputs() -> dict[str, Any]:
    runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*/*.json"))]
    fresh = curve_rows(runs)
    table = {"rows": fresh + kept_rows(fresh) + in_domain_rows()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # atomic: invocations running side by side each rewrite the table and read it back (kept_rows)
    atomic_write_text(OUT, json.dumps(table, indent=2) + "\n")
    from transfer_doc import render  # matplotlib is imported only when rendering

    atomic_write_text(DOC, render(table["rows"], DOC.parent))
    return table
