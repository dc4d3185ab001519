"""docs/results.md from the cached runs of ``trainer.results`` (and the papers' own figures, for reference)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

FAMILIES = ("translog", "logtransfer", "logllm")
DATASETS = ("hdfs", "bgl", "thunderbird", "hadoop")
PAIRS = (("bgl", "thunderbird"), ("hdfs", "hadoop"))
FEW = (50, 100, 200)
GOALS = {"hdfs": 0.99, "bgl": 0.95, "hadoop": 0.97}  # best family, in-domain (the goals)
SEED_SUFFIX = "-seed"  # a run cached with seed N != 0 is "<key>-seed<N>.json"
# where a transfer run's threshold is chosen: on the validation share of its few labels (runs kept before 2026-12
# used the target's whole validation part, more labels than N; the tables mark those)
FEW_LABELS_THRESHOLD = "the few labels' validation share"
OLD_THRESHOLD = "†"
PAPERS = Path(__file__).resolve().parents[1] / "docs" / "paper_figures.json"

CAVEATS = {
    "hdfs": "2% of all blocks (11,501 sessions, 350 anomalous), split at random by block",
    "bgl": "every n-th 20-line window of all of BGL (n in the data column), the file's own 80/10/10 time split",
    "thunderbird": "19k contiguous lines (68 minutes), 20-line windows, time split; all alerts come from one node "
    "(dn30), so scores are optimistic",
    "hadoop": "978 containers of 55 applications, split by application; 44 of 55 applications are faulty, so the "
    "test part is mostly anomalous (a high trivial baseline)",
}


def render(runs: Path, machine: str) -> str:
    every_seed = _load(runs)
    results = {key: run for (key, seed), run in every_seed.items() if seed == 0}  # the tables show seed 0
    papers = json.loads(PAPERS.read_text()) if PAPERS.exists() else {}
    out = [
        "# Model results",
        "",
        "Produced by `make results` (`python -m trainer.results`); every figure comes from a run cached under",
        "`bench/results/model_runs/<family>/` (delete one, or pass `--fresh`, to recompute it). Machine: "
        + machine
        + ".",
        "Thresholds are chosen on validation windows only; F1 is on the test part. `—` means not run.",
        "",
        "## In-domain",
        "",
        "| family | data | train windows | F1 | precision | recall | PR-AUC | trivial F1 | ceiling F1 | paper F1 "
        "| train time | params |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family in FAMILIES:
        for name in DATASETS:
            run = results.get((family, f"in_domain-{name}"))
            if run is None:
                continue
            fit = run["fit"]
            out.append(
                f"| {family} | {name} | {_train_windows(run)} | **{run['f1']:.3f}** | {run['precision']:.3f} | "
                f"{run['recall']:.3f} | {run['pr_auc']:.3f} | {_trivial(run):.3f} | {_ceiling(run)} | "
                f"{_paper(papers, family, name)} | "
                f"{fit['seconds']:.0f} s | {run['total_parameters']:,} |"
            )
    out += [
        "",
        "*ceiling F1*: the best F1 any detector can reach on that test part when it decides from a window's lines",
        "alone: windows with identical lines get identical scores, so where such windows carry both labels no model",
        "separates them (`trainer.evaluate.content_ceiling`; it knows the test labels, so it is an upper bound).",
        "",
        "Goals (best family): " + ", ".join(_goal(results, name, goal) for name, goal in GOALS.items()),
        "",
    ]
    out += ["Data: " + "; ".join(f"**{name}**: {text}" for name, text in CAVEATS.items()) + ".", ""]
    out += [
        "## Transfer with few target labels",
        "",
        "At most N labeled anomalous target windows in all (training plus the validation share that picks the",
        "threshold), every labeled normal window of the target's train part. *adapter*: the source base frozen, the",
        "target's adapter trained; *scratch*: the same family trained on the same labels only; *full*: every base",
        "weight fine-tuned on them; *in-domain*: trained on all the target's labels (the in-domain table).",
        "",
        "| family | source -> target | N | adapter F1 | scratch F1 | full FT F1 | in-domain F1 | adapter params "
        "(of total) | adapter time | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family in FAMILIES:
        for source, target in PAIRS:
            reference = results.get((family, f"in_domain-{target}"))
            for n in FEW:
                runs_n = {
                    a: results.get((family, f"transfer-{source}-{target}-{n}-{a}"))
                    for a in ("adapter", "scratch", "full")
                }
                adapter = runs_n["adapter"]
                if adapter is None:
                    continue
                out.append(
                    f"| {family} | {source} -> {target} | {n} ({_used(adapter)}) | **{_f1(adapter)}** | "
                    f"{_f1(runs_n['scratch'])} | {_f1(runs_n['full'])} | {_f1(reference)} | "
                    f"{adapter['trainable_parameters']:,} ({adapter['total_parameters']:,}) | "
                    f"{adapter['fit']['seconds']:.0f} s | {_transfer_goal(adapter, runs_n['scratch'], reference)} |"
                )
    out += [
        "",
        "Goal per row: the adapter within 0.03 of in-domain training on all labels, and above training from scratch",
        "on the same few labels. Where N exceeds the target's labeled anomalies, all of them are used (the count",
        "actually used is in brackets).",
        "",
        *_old_threshold_note(results),
        "Paper figures (`docs/paper_figures.json` says where each was read and what could not be found): LogLLM's",
        "are its authors' (windows of 100 lines on the full data sets, Llama-3-8B; ours: SmolLM2-135M on a CPU",
        "budget). The LogTransfer paper's abstract gives only an average F1 of 0.84 over switch-vendor pairs, and",
        "TransLog's result tables could not be read offline, so their columns stay empty rather than guessed.",
        "",
        *_seed_variation(every_seed),
        *NOTES,
    ]
    return "\n".join(out) + "\n"


NOTES = [
    "## Notes",
    "",
    "- **Missed goals, and what was tried.** TransLog on HDFS went from 0.82 to 0.98 by scaling the sentence",
    "  embeddings by sqrt(d) (unit vectors were drowned by the sinusoidal positions), lr 3e-4 instead of 1e-3, and",
    "  thresholds midway in the validation's best-F1 gap. 0.99 is not reached, and the seed variation table shows",
    "  how far off it is: over seeds 0-2 (split, initialisation, batch order) TransLog scores 0.955-0.979 on HDFS",
    "  (mean 0.971). With 70 anomalous test blocks one missed block costs ~0.007 of F1, and the misses move with the",
    "  split: anomalous blocks scored just under a threshold placed on ~28 validation anomalies, and (seed 1) two",
    "  anomalous blocks made only of templates that normal blocks have too, scored 0.0002. Training 15 epochs",
    "  instead of 5 (patience 3) changed nothing for seeds 0 and 1: early stopping keeps the first epoch with the",
    "  best validation F1, reached by epoch 4 either way. Few-label adapters went from the trivial",
    "  baseline to 0.94-0.97 on Thunderbird with a larger adapter lr (3e-3) and at least 300 optimizer steps before",
    "  early stopping (`FitOptions.min_steps`), but training from scratch on the same labels is as good or better",
    "  there: Thunderbird's alerts come from one node and a handful of templates, easy to learn from nothing.",
    "- **Hadoop's 0.97 cannot be reached on this data** by any detector that reads containers. Labels are per",
    "  application (44 of 55 applications are faulty, so flagging every container scores 0.916), and most",
    "  containers of a faulty application read exactly like a healthy one's: 75 of the 148 anomalous test",
    "  containers have the very same event sequence as a normal container (620 of 811 over all 978 containers).",
    "  Identical windows get identical scores, so the best F1 any model could get on this test part is 0.947 (the",
    "  ceiling column; 0.918 over all containers, 0.923 and 0.938 on seeds 1 and 2's test parts). Meeting the goal",
    "  needs labels per container or signals outside the container's own lines. The families score 0.75-0.89.",
    "- **The few labels pick the threshold too** (since 2026-12-02). Transfer runs had been scored with a",
    "  threshold chosen on the target's whole validation part: more labeled windows than N, some of them the",
    "  few-label model's own training windows. Rescored with the threshold their own validation share chose, the",
    "  TransLog and LogTransfer rows kept their PR-AUC (the same seeded models; three TransLog Hadoop rows at 50",
    "  moved by 0.01-0.04) and their F1 moved with the threshold: down most at N = 50 (Hadoop 0.73-0.85 ->",
    "  0.58-0.69; Thunderbird full and scratch 0.92-0.99 -> 0.83-0.92), where ~10 validation anomalies place it;",
    "  up on several Hadoop rows at 100 and 200. LogLLM's BGL -> Thunderbird adapter and scratch rows were",
    "  rescored the same way (PR-AUC unchanged; adapters 0.942, 0.950, 0.967 -> 0.861, 0.916, 0.926). Its other",
    "  rows (†: full fine-tuning, HDFS -> Hadoop) still carry the older threshold; `python -m trainer.results",
    "  --families logllm` recomputes exactly those (about 2 hours of CPU).",
    "- **LogTransfer on BGL** ranks well (PR-AUC 0.87-0.91) but its threshold is fragile: with seed 0 it flags",
    "  too much on the later test days (precision 0.33, F1 0.484), with seeds 1 and 2 it scores 0.90 and 0.91.",
    "  The time split shifts the score distribution between the validation and the test days.",
    "- **LogLLM** (SmolLM2-135M with LoRA, the paper's three stages, 20-line windows) trains in bf16 autocast",
    "  where the CPU has bf16 natively (`train_dtype` auto; weights and optimizer in fp32): forward and backward",
    "  ran 1.7x faster than in fp32 on the AVX512-BF16 CPU these rows were measured on (7.9 against 4.5",
    "  windows/s, idle machine); a CPU without it emulates bf16 24x slower than fp32, so auto trains in fp32",
    "  there. Its Thunderbird row: F1 0.964 in 1,103 s; the same fit in",
    "  fp32 scored 0.971 (PR-AUC 0.998 both) in 5,719 s beside other jobs. Its BGL row reads every 50th window",
    "  (463 test windows, 38 anomalous) and trains on at most 1,500 normal windows, against every 5th for the other",
    "  families. Its BGL -> Thunderbird adapters (0.86, 0.92, 0.93 at 50, 100, 200 labeled anomalies, with the few",
    "  labels' threshold) beat LogLLM trained from scratch on the same labels by far (0.65, 0.67, 0.77),",
    "  but stay more than 0.03 below its in-domain Thunderbird F1. Fine-tuning the whole BGL base on the same labels",
    "  scored higher (0.996, 0.975, 0.996 †, ~8.5 min each): for LogLLM *full* trains the base's own LoRA, line head",
    "  and projector (830,400 weights; the decoder's own weights stay frozen), against the adapter's 682,560, so it",
    "  is a second adapter-sized model rather than 158M weights. Its HDFS row (whole blocks of at most 44 lines,",
    "  1,752 training windows with normals capped at 1,500, 65 min of fitting) scores 0.926 (PR-AUC 0.955): below",
    "  TransLog's 0.978 on all 8,281 training windows, and far from the paper's 0.997 (Llama-3-8B on all of HDFS). Its",
    "  in-domain Hadoop row (719 containers, 47 min) scores 0.868, the best of the three families there and still",
    "  below Hadoop's trivial 0.916. Its HDFS -> Hadoop adapters (0.86, 0.86, 0.82) meet the goal at 50 labeled",
    "  anomalies only; LogLLM from scratch on 100 and 200 (0.91) beats them, as close to the trivial baseline as",
    "  anything here. (Its transfer figures in this paragraph are the † ones, scored with the older threshold.)",
    "  `python -m trainer.results --families logllm` recomputes its 22 rows in about 6 hours on 2 cores (cached",
    "  per run, resumable; each trained source base is also kept in `bench/results/model_bases/`, outside git, and",
    "  reused by later invocations, e.g. `--only 'transfer-hdfs-*'` after `in_domain-hdfs`). The family",
    "  is also tested in `tests/unit/test_model_logllm.py` (three stages beat the trivial baseline on BGL windows).",
    "",
]


def _load(runs: Path) -> dict[tuple[tuple[str, str], int], dict[str, Any]]:
    """((family, run key), seed) -> run, for every cached run ("<key>-seed<N>.json" is seed N's, "<key>.json" 0's)."""
    found = {}
    for path in sorted(runs.glob("*/*.json")):
        key, _, seed = path.stem.partition(SEED_SUFFIX)
        found[((path.parent.name, key), int(seed or 0))] = json.loads(path.read_text())
    return found


def _seed_variation(every_seed: dict[tuple[tuple[str, str], int], dict[str, Any]]) -> list[str]:
    """A table of the in-domain runs computed with more than one seed (``--seed``): how much of a difference
    between two figures above is the luck of one split and one initialisation."""
    by_run: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for (key, seed), run in every_seed.items():
        if key[1].startswith("in_domain-"):
            by_run.setdefault(key, {})[seed] = run
    rows = []
    for family in FAMILIES:
        for name in DATASETS:
            seeds = by_run.get((family, f"in_domain-{name}"), {})
            if len(seeds) < 2:
                continue
            f1 = [seeds[s]["f1"] for s in sorted(seeds)]
            pr_auc = [seeds[s]["pr_auc"] for s in sorted(seeds)]
            errors = [f"{seeds[s]['fp']}/{seeds[s]['fn']}" for s in sorted(seeds)]
            rows.append(
                f"| {family} | {name} | {', '.join(map(str, sorted(seeds)))} | "
                f"{', '.join(f'{v:.3f}' for v in f1)} | **{statistics.mean(f1):.3f}** | "
                f"{min(f1):.3f}-{max(f1):.3f} | {min(pr_auc):.3f}-{max(pr_auc):.3f} | {', '.join(errors)} |"
            )
    if not rows:
        return []
    return [
        "## Seed variation",
        "",
        "The same in-domain runs with other seeds (`python -m trainer.results --seed N --only 'in_domain-*'`). The",
        "seed draws the random parts: HDFS's and Hadoop's splits (BGL and Thunderbird are split by time, the same",
        "for every seed), the initialisation and the batch order. The tables above are seed 0.",
        "",
        "| family | data | seeds | F1 per seed | mean F1 | F1 range | PR-AUC range | FP/FN per seed |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _train_windows(run: dict[str, Any]) -> str:
    if "train_windows" in run:
        return f"{run['train_windows']:,}"
    # runs from before the count was recorded: every family there read all its training windows each epoch
    return f"{run['fit']['windows_seen'] // max(len(run['fit']['losses']), 1):,}"


def _trivial(run: dict[str, Any]) -> float:
    """F1 of flagging every test window."""
    return 2 * run["test_anomalous"] / (run["test_windows"] + run["test_anomalous"])


def few_label_threshold(run: dict[str, Any]) -> bool:
    """Whether a transfer run was scored with the threshold its few labels chose."""
    return str(run.get("threshold_chosen_on", "")).startswith(FEW_LABELS_THRESHOLD)


def _old_threshold(run: dict[str, Any]) -> bool:
    """A transfer run (it records its ``labels``) scored with a threshold its few labels did not choose."""
    return "labels" in run and not few_label_threshold(run)


def _f1(run: dict[str, Any] | None) -> str:
    if run is None:
        return "—"
    stale = _old_threshold(run)
    return f"{run['f1']:.3f}" + (OLD_THRESHOLD if stale else "")


def _old_threshold_note(results: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    stale = [key for key, run in results.items() if _old_threshold(run)]
    if not stale:
        return []
    return [
        f"{OLD_THRESHOLD} {len(stale)} runs kept from before 2026-12-02, whose threshold was chosen on the target's",
        "whole validation part: more labels than N, some of them the few-label model's own training windows. The",
        "figure is optimistic; `python -m trainer.results` recomputes exactly these runs with the few labels'",
        "threshold.",
        "",
    ]


def _used(run: dict[str, Any]) -> int:
    labels = run.get("labels", {})
    return labels.get("train_anomalous", 0) + labels.get("validation_anomalous", 0)


# Our data set names -> the names the papers' tables use (docs/paper_figures.json, gathered from the papers'
# repositories and abstracts; null where no figure could be read).
PAPER_NAMES = {"hdfs": "HDFS", "bgl": "BGL", "thunderbird": "Thunderbird", "hadoop": "Hadoop"}


def _paper(papers: dict[str, Any], family: str, name: str) -> str:
    figures = papers.get(family, {}).get("results", {}).get(PAPER_NAMES[name], {})
    value = figures.get("f1") if isinstance(figures, dict) else None
    return "—" if value is None else f"{value:.3f}"


def _goal(results: dict[tuple[str, str], dict[str, Any]], name: str, goal: float) -> str:
    scores = {f: r["f1"] for (f, key), r in results.items() if key == f"in_domain-{name}"}
    if not scores:
        return f"{name} >= {goal}: not run"
    family, best = max(scores.items(), key=lambda kv: kv[1])
    verdict = "met" if best >= goal else "MISSED"
    ceiling = results[(family, f"in_domain-{name}")].get("ceiling")
    if best < goal and ceiling and ceiling["f1"] < goal:
        verdict += f", beyond the data's ceiling of {ceiling['f1']:.3f}"
    return f"{name} >= {goal}: {verdict} ({family} {best:.3f})"


def _ceiling(run: dict[str, Any]) -> str:
    return "—" if "ceiling" not in run else f"{run['ceiling']['f1']:.3f}"


def _transfer_goal(adapter: dict[str, Any], scratch: dict[str, Any] | None, reference: dict[str, Any] | None) -> str:
    if scratch is None or reference is None:
        return "—"
    stale = _old_threshold(adapter) or _old_threshold(scratch)
    return _goal_verdict(adapter, scratch, reference) + (OLD_THRESHOLD if stale else "")


def _goal_verdict(adapter: dict[str, Any], scratch: dict[str, Any], reference: dict[str, Any]) -> str:
    close = adapter["f1"] >= reference["f1"] - 0.03
    above = adapter["f1"] > scratch["f1"]
    if close and above:
        return "met"
    return (
        "MISSED ("
        + ", ".join(m for m, bad in (("not within 0.03", not close), ("not above scratch", not above)) if bad)
        + ")"
    )
