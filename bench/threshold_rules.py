"""Threshold rules compared on few-label transfer: each adapter is trained ONCE, its validation and test scores kept,
and every rule's threshold (``stream.model.thresholds``) scores the same test part; only the threshold differs.

    nice -n 19 .venv/bin/python bench/threshold_rules.py --threads 1   # logtransfer + translog, BGL -> TB, HDFS -> BGL
    nice -n 19 .venv/bin/python bench/threshold_rules.py --families logtransfer --pairs bgl:thunderbird --seeds 0,1,2

(One torch thread: on 2 shared cores, 2 threads spin against other work and ran over 10x slower here.)

Bases and data come from ``trainer.results.Runner`` (the base is trained once, on seed 0, and kept under
bench/results/model_bases/ like ``make results``'s); the few labels and the adapter's initial weights follow each
seed. Each adapter's scores are kept under bench/results/threshold_runs/ (a rerun reuses them, so a stopped run
resumes and a changed rule needs no training); the table of every kept run goes to
bench/results/threshold_rules.json: F1 mean and sd per (family, pair, N, rule) over the seeds, with PR-AUC (the
same for every rule: it does not depend on a threshold). The reference of the budget rules is the few labels'
validation normals (Thunderbird: about 120, too few to resolve 1 per 1,000; BGL: thousands).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from stream.model.quality import confusion, pr_auc
from stream.model.thresholds import BEST_F1, BUDGET_AND_ANOMALIES, FALSE_ALARM_BUDGET, choose_threshold
from trainer.results import Runner
from trainer.train import adapt, few_labels, inputs

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "results" / "threshold_runs"
OUT = ROOT / "bench" / "results" / "threshold_rules.json"
# (name in the table, rule, false alarms per 1,000): the default budget and a looser one
RULES = (
    (BEST_F1, BEST_F1, None),
    (FALSE_ALARM_BUDGET, FALSE_ALARM_BUDGET, 1.0),
    (f"{FALSE_ALARM_BUDGET}@10", FALSE_ALARM_BUDGET, 10.0),
    (BUDGET_AND_ANOMALIES, BUDGET_AND_ANOMALIES, 1.0),
    (f"{BUDGET_AND_ANOMALIES}@10", BUDGET_AND_ANOMALIES, 10.0),
)


def scored_run(runner: Runner, source: str, target: str, anomalies: int, seed: int) -> dict[str, Any]:
    """One adapter's validation and test scores (kept on disk: computed once)."""
    path = RUNS / runner.family / f"{source}-{target}-{anomalies}-seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    dataset, split = runner.data(target)
    labels = few_labels(dataset, split, max_anomalies=anomalies, max_normals=None, seed=seed)
    detector = runner.base(source).detector
    started = time.perf_counter()
    print(f"[{runner.family}] {source} -> {target}, N={anomalies}, seed {seed} ...", file=sys.stderr, flush=True)
    adapt(detector, target, dataset, labels, options=replace(runner.options(), seed=seed))
    val_windows, val_labels = inputs(dataset, labels.validation)
    test_windows, test_labels = inputs(dataset, split.test)
    run = {
        "family": runner.family,
        "source": source,
        "target": target,
        "n_anomalies": anomalies,
        "seed": seed,
        "validation": {"scores": detector.scores(val_windows, target=target), "labels": val_labels},
        "test": {"scores": detector.scores(test_windows, target=target), "labels": test_labels},
        "train_windows": len(labels.train),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    detector.remove_target(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run) + "\n")
    return run


def rule_results(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every rule's threshold on the run's validation scores (reference: its labeled normals), scored on test."""
    val_scores, val_labels = run["validation"]["scores"], run["validation"]["labels"]
    test_scores, test_labels = run["test"]["scores"], run["test"]["labels"]
    results = {}
    for name, rule, budget in RULES:
        extra = {} if budget is None else {"budget_per_1000": budget}
        choice = choose_threshold(rule, val_scores, val_labels, **extra)
        counts = confusion(test_scores, test_labels, choice.value)
        results[name] = {"threshold": choice.value, **counts.to_dict(), "detail": choice.detail}
    return results


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    keys = sorted({(r["family"], r["source"], r["target"], r["n_anomalies"]) for r in runs})
    for family, source, target, anomalies in keys:
        group = sorted(
            (
                r
                for r in runs
                if (r["family"], r["source"], r["target"], r["n_anomalies"]) == (family, source, target, anomalies)
            ),
            key=lambda r: r["seed"],
        )
        per_seed = [rule_results(r) for r in group]
        prs = [pr_auc(r["test"]["scores"], r["test"]["labels"]) for r in group]
        test = group[0]["test"]["labels"]
        trivial = 2 * sum(test) / (len(test) + sum(test))
        for name, _, budget in RULES:
            f1 = [seed_results[name]["f1"] for seed_results in per_seed]
            rows.append(
                {
                    "family": family,
                    "source": source,
                    "target": target,
                    "n_anomalies": anomalies,
                    "threshold_rule": name,
                    "false_alarms_per_1000": budget,
                    "seeds": [r["seed"] for r in group],
                    "f1": f1,
                    "f1_mean": round(statistics.fmean(f1), 4),
                    "f1_sd": round(statistics.stdev(f1), 4) if len(f1) > 1 else 0.0,
                    "precision_mean": round(statistics.fmean(s[name]["precision"] for s in per_seed), 4),
                    "recall_mean": round(statistics.fmean(s[name]["recall"] for s in per_seed), 4),
                    "pr_auc_mean": round(statistics.fmean(prs), 4),
                    "trivial_f1": round(trivial, 4),
                    "validation_anomalies": [sum(r["validation"]["labels"]) for r in group],
                    "validation_normals": [
                        len(r["validation"]["labels"]) - sum(r["validation"]["labels"]) for r in group
                    ],
                }
            )
    return {"rows": rows}


def write_table(out: Path) -> dict[str, Any]:
    """The table of every run kept under RUNS (runs of earlier invocations, other families and pairs included)."""
    table = summarize([json.loads(path.read_text()) for path in sorted(RUNS.glob("*/*.json"))])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=2) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="logtransfer,translog", help="comma-separated families")
    parser.add_argument(
        "--pairs",
        default="bgl:thunderbird,hdfs:bgl",
        help="comma-separated SOURCE:TARGET data sets (trainer.results names: hdfs, bgl, thunderbird, hadoop)",
    )
    parser.add_argument("--anomalies", default="10,50", help="label budgets N (labeled anomalous windows in all)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the few labels and the adapter's weights")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON table to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        runner = Runner(family, fresh=False, seed=0)  # the base and the split: seed 0, as in docs/results.md
        for source, target in [pair.split(":") for pair in args.pairs.split(",") if pair.strip()]:
            for anomalies in [int(n) for n in args.anomalies.split(",")]:
                for seed in [int(s) for s in args.seeds.split(",")]:
                    scored_run(runner, source.strip(), target.strip(), anomalies, seed)
                    write_table(args.out)  # after each run: a stopped run leaves the table of what it has
    for row in write_table(args.out)["rows"]:
        print(
            f"{row['family']:<12} {row['source']}->{row['target']} N={row['n_anomalies']:<3} "
            f"{row['threshold_rule']:<26} F1 {row['f1_mean']:.3f} +- {row['f1_sd']:.3f}  "
            f"PR-AUC {row['pr_auc_mean']:.3f}  (trivial {row['trivial_f1']:.3f})"
        )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
