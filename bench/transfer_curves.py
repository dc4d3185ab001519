"""Transfer learning curves: F1 against the number N of labeled anomalous target windows, per pair and method.

    nice -n 19 .venv/bin/python bench/transfer_curves.py --families logtransfer --threads 1
    nice -n 19 .venv/bin/python bench/transfer_curves.py --families translog --pairs bgl:thunderbird --anomalies 0,10
    .venv/bin/python bench/transfer_curves.py --only-render        # the JSON and docs/transfer.md from kept runs
    nice -n 19 .venv/bin/python bench/transfer_curves.py --families logllm --pairs bgl:hdfs,hdfs:bgl \
        --anomalies 0,50 --methods zero-shot,adapter,scratch,full   # LogLLM's cells (CPU hours; ``SMALLER``)

Protocol (issue "Transfer that earns its keep", item 1):
- pairs: every ordered pair of HDFS, BGL and Thunderbird, and HDFS -> Hadoop (its content ceiling is in each row);
- N = 0, 10, 50, 200 labeled anomalous target windows IN ALL: ``trainer.train.few_labels`` draws them with up to
  5,000 labeled normals of the target's train and validation parts (normals are the plentiful labels), 20% of each
  class picks the threshold, and the test part is never touched;
- multi-source bases (item 4): ``all-but-<target>`` trains one base on every labeled source system but the target
  (``trainer.datasets.combined``: each source's own split, at most 10,000 normal training windows per source);
- methods: ``adapter`` (the source base frozen, the target's adapter trained), ``scratch`` (the same family trained
  on the few labels alone), ``full`` (every base weight fine-tuned on them), and at N = 0 ``zero-shot`` (the base
  scores the target as it is) and ``normal-replay`` (a normal-only objective on the unlabeled target, item 3: the
  target's adapter learns 2,000 unlabeled target windows as normal, beside 2,000 labeled source windows replayed so
  that it keeps what an anomaly looks like) and ``self-trained`` (``trainer.train.self_train``: the
  ``aligned-moments`` base's confident pseudo-labels on the unlabeled target windows train the target's adapter;
  ``self_train`` below, an experiment that is not a product path), ``template-rarity`` (no source either: each
  window's rarest template in the unlabeled pool, ``stream.model.rarity``, the baseline transfer has to beat) and
  ``zero-shot+rarity`` / ``aligned-moments+rarity`` (that method's score plus the rarity), and ``count-pca``
  (no source either: PCA of the unlabeled pool's template counts, ``stream.model.count_pca``, thresholded also by
  its own Q-statistic) -- the methods that need no label;
- ``aligned-moments`` and ``aligned-adversarial`` (item 3, learning from the unlabeled target): the source's base
  trained again, as its plain base is, plus a loss on 2,000 unlabeled target windows (seed 0's draw) that aligns the
  two systems' representations (``stream.model.alignment``: matching their means and covariances, or a domain
  discriminator with a reversed gradient); at N = 0 it scores the target as it is, at N > 0 an adapter is tuned
  on it as in ``adapter``. ``adaptlog-train pretrain --align-to`` trains such a base;
- ``in-domain``: the family trained on all the target's labels (``make results``' run), the bar at N = 50;
- seeds 0, 1, 2: the few labels drawn and the trained weights' initialisation; the base and the split stay seed 0's
  (docs/results.md's), so the spread is that of the labels and the target-side training, not of the base.

Each run is trained ONCE and its validation, test and unlabeled-target scores (2,000 windows of the target's train
part drawn at random, labels ignored, anomalies at their natural share) are kept under
bench/results/transfer_runs/ (ignored by git: tens of MB), so a stopped command resumes and every threshold rule
is applied to the same scores:
- ``best-f1``: today's rule, on the few labels' validation share;
- ``budget-and-anomalies``: a false-alarm budget of 1 per 1,000 read off the labeled validation normals, lowered
  towards the few anomalies (``stream.model.thresholds``);
- at N = 0, ``alert-budget@B``: the threshold that flags B of every 1,000 unlabeled target windows (B = 1, 10, 100),
  the only knob an operator has without labels; unlabeled windows include the anomalies, so B is an alert rate.

Writes bench/results/transfer_curves.json ({"rows": [...]}, one row per family, pair, N, method and rule, with F1
per seed, mean and sd, PR-AUC, the trivial F1 and the content ceiling) and docs/transfer.md with one plot per pair.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from stream.model.alignment import DomainAdversarial, MomentMatching
from stream.model.count_pca import Q_STATISTIC, TemplateCountPCA
from stream.model.detector import Detector, FitOptions, FitReport, WindowText
from stream.model.durable import atomic_write_text
from stream.model.families import family_class
from stream.model.rarity import TemplateRarity
from stream.model.thresholds import DEFAULT_BUDGET_PER_1000, score_mixture
from stream.model.training import UnlabeledObjective
from trainer.datasets import Dataset, Split, limit
from trainer.results import BASES, MULTI_SOURCE, Runner
from trainer.train import (
    Trained,
    adapt,
    few_labels,
    fit_and_calibrate,
    inputs,
    load_trained,
    pretrain,
    save_trained,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer_report import RUNS, UNLABELED, write_outputs  # bench/ is not a package

SYSTEMS = ("hdfs", "bgl", "thunderbird")
PAIRS = (*((s, t) for s in SYSTEMS for t in SYSTEMS if s != t), ("hdfs", "hadoop"))
# a base of every other labeled source (item 4); scratch does not depend on the source, so it is not repeated
MULTI_PAIRS = tuple((f"{MULTI_SOURCE}{t}", t) for t in (*SYSTEMS, "hadoop"))
BUDGETS = (0, 10, 50, 200)
METHODS = ("adapter", "scratch", "full")
SELF_TRAINED = "self-trained"
# the target's traffic alone (stream.model.rarity; no source, no label): what transfer has to beat at N = 0
RARITY = "template-rarity"
# a no-label method's score plus the rarity, by the method whose kept run gives the first term: whether the source's
# knowledge adds anything to what the traffic tells
PLUS_RARITY = {"zero-shot+rarity": "zero-shot", "aligned-moments+rarity": "aligned-moments"}
# the classic unsupervised detector on the same traffic (stream.model.count_pca): PCA of template counts
COUNT_PCA = "count-pca"
ZERO_LABEL_METHODS = ("zero-shot", "normal-replay", SELF_TRAINED, RARITY, *PLUS_RARITY, COUNT_PCA)
# item 3, alignment to the unlabeled target: the source base trained again with a loss on the target's unlabeled
# windows (stream.model.alignment); at N = 0 it scores as it is, at N > 0 an adapter is tuned on it
ALIGNMENTS: dict[str, Callable[[], UnlabeledObjective]] = {
    "aligned-moments": MomentMatching,
    "aligned-adversarial": DomainAdversarial,
}
# labeled normal target windows per run: plentiful, but BGL's 30,000 would make each run 6x slower; 5,000 keep 1,000
# in the validation share, enough for the budget rule to resolve 1 false alarm per 1,000
MAX_NORMALS = 5000
# LogLLM on CPU (a decoder pass per window: ~4 windows/s trained on 20-line windows with 2 threads, fewer on HDFS's
# 64 lines) takes fewer of both, or one seed's N = 50 cell would take hours: 500 labeled normals (100 of them in the
# validation share, so the budget rule resolves 1 per 100 there, not 1 per 1,000) and 500 unlabeled windows. Its base
# is docs/results.md's (trainer.results' LogLLM budget: every 50th BGL window, at most 1,500 normal training windows).
SMALLER = {"logllm": {"max_normals": 500, "unlabeled": 500}}


def max_normals(family: str) -> int:
    return SMALLER.get(family, {}).get("max_normals", MAX_NORMALS)


def unlabeled_size(family: str) -> int:
    return SMALLER.get(family, {}).get("unlabeled", UNLABELED)


def run_path(family: str, source: str, target: str, anomalies: int, method: str, seed: int) -> Path:
    return RUNS / family / f"{source}-{target}-{anomalies}-{method}-seed{seed}.json"


def unlabeled_pool(split: Split, seed: int, size: int = UNLABELED) -> list[int]:
    """Target traffic a method may read without its labels: ``size`` windows of the train part drawn at random,
    anomalies at their natural share (a labeled window may be among them: its label is not read)."""
    pool = list(split.train)
    random.Random(f"unlabeled/{seed}").shuffle(pool)
    return sorted(pool[:size])


def keep_run(path: Path, run: dict[str, Any]) -> None:
    """Keep one run's scores, atomically: invocations side by side read each other's runs (``write_outputs``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(run) + "\n")


def scored_run(runner: Runner, source: str, target: str, anomalies: int, method: str, seed: int) -> dict[str, Any]:
    """Train one method on one pair at one label budget and seed; keep its validation, test and unlabeled scores."""
    path = run_path(runner.family, source, target, anomalies, method, seed)
    if path.exists():
        return json.loads(path.read_text())
    if method == RARITY or method in PLUS_RARITY:
        return rarity_run(runner, source, target, method, seed)
    if method == COUNT_PCA:
        return count_pca_run(runner, source, target, seed)
    dataset, split = runner.data(target)
    labels = few_labels(dataset, split, max_anomalies=anomalies, max_normals=max_normals(runner.family), seed=seed)
    options = replace(runner.options(), seed=seed)
    print(f"[{runner.family}] {source}->{target} N={anomalies} {method} seed {seed} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    unlabeled = unlabeled_pool(split, seed, unlabeled_size(runner.family))
    if method == "zero-shot":  # the base as it is: no label, and no adapter
        detector, target_name = runner.base(source).detector, None
        validation: tuple[int, ...] = ()
    elif method == "normal-replay":  # no label: the adapter learns the target's traffic as normal
        detector, target_name = runner.base(source).detector, target
        detector.add_target(target)
        windows = inputs(dataset, unlabeled)[0]
        replay, replay_labels = inputs(*source_replay(runner, source, seed))
        labels_seen = [0] * len(windows) + replay_labels
        detector.fit(windows + replay, labels_seen, target=target, mode="adapter", options=options)
        validation = ()
    elif method == SELF_TRAINED:  # no label: the aligned base's confident pseudo-labels train its adapter
        detector, target_name = aligned_base(runner, source, target, "aligned-moments").detector, target
        self_train(detector, target, inputs(dataset, unlabeled)[0], options=options)
        validation = ()
    elif method in ALIGNMENTS and anomalies == 0:  # the aligned base as it is
        detector, target_name = aligned_base(runner, source, target, method).detector, None
        validation = ()
    elif method in ("adapter", *ALIGNMENTS):
        base = runner.base(source) if method == "adapter" else aligned_base(runner, source, target, method)
        detector, target_name = base.detector, target
        adapt(detector, target, dataset, labels, options=options)
        validation = labels.validation
    else:
        if method == "scratch":
            detector = family_class(runner.family).create(runner.config(target), seed=seed)
        else:  # full fine-tuning from the source base
            detector = runner.copy_of_base(source)
        target_name = None
        fit_and_calibrate(detector, dataset, labels.train, labels.validation, target=None, mode="base", options=options)
        validation = labels.validation
    run = {
        "family": runner.family,
        "source": source,
        "target": target,
        "n_anomalies": anomalies,
        "method": method,
        "seed": seed,
        "train_windows": 0 if anomalies == 0 else len(labels.train),
        "train_anomalous": 0 if anomalies == 0 else sum(dataset.windows[i].label for i in labels.train),
    }
    kept_test = kept_seed_independent_test(runner.family, source, target, anomalies, method)
    if kept_test is not None:
        run["test"], run["test_scored_by_seed"] = kept_test
    for part, indices in (("validation", validation), ("test", split.test), ("unlabeled", unlabeled)):
        if part in run:
            continue
        windows, part_labels = inputs(dataset, indices)
        scores = detector.scores(windows, target=target_name) if windows else []
        run[part] = {"scores": [round(float(s), 6) for s in scores], "labels": part_labels}
    if target_name is not None:
        detector.remove_target(target)
    return _kept(run, started)


def kept_seed_independent_test(
    family: str, source: str, target: str, anomalies: int, method: str
) -> tuple[dict[str, Any], int] | None:
    """Another seed's test scores where the seed cannot change them, and that seed; else None.

    With no label, ``zero-shot`` and an aligned base as it is score the test part with seed 0's base, which no seed
    changes: only the unlabeled pool, and so the alert-budget threshold, is the seed's. LogLLM scores HDFS's test
    part in about 40 minutes on 2 CPU threads, so the cell's three seeds would repeat the same 40 minutes twice."""
    if anomalies != 0 or not (method == "zero-shot" or method in ALIGNMENTS):
        return None
    folder = run_path(family, source, target, 0, method, 0).parent
    for kept in sorted(folder.glob(f"{source}-{target}-0-{method}-seed*.json")):
        run = json.loads(kept.read_text())
        if run.get("test", {}).get("scores"):
            return run["test"], int(run["seed"])
    return None


def rarity_run(runner: Runner, source: str, target: str, method: str, seed: int) -> dict[str, Any]:
    """``template-rarity``: each window's rarest template in the seed's unlabeled pool (the pool's own windows left
    out of their own reference); ``zero-shot+rarity`` / ``aligned-moments+rarity``: that method's score plus the
    rarity, equal weights fixed beforehand (both lie in [0, 1]). Nothing is trained here; the method's run is
    reused where it is kept."""
    started = time.perf_counter()
    dataset, split = runner.data(target)
    pool = unlabeled_pool(split, seed, unlabeled_size(runner.family))
    unlabeled, unlabeled_labels = inputs(dataset, pool)
    test, test_labels = inputs(dataset, split.test)
    rarity = TemplateRarity.of(unlabeled)
    scores = {"test": rarity.scores(test), "unlabeled": rarity.scores(unlabeled, members=True)}
    if method in PLUS_RARITY:
        base = scored_run(runner, source, target, 0, PLUS_RARITY[method], seed)
        if len(base["unlabeled"]["scores"]) != len(pool):
            raise SystemExit(f"the kept {PLUS_RARITY[method]} run of {source}->{target} scored another unlabeled pool")
        scores = {part: [b + r for b, r in zip(base[part]["scores"], scores[part], strict=True)] for part in scores}
    run = _traffic_run(runner, source, target, method, seed, scores, (test_labels, unlabeled_labels))
    run["template_rarity"] = {
        "reference_windows": rarity.windows,
        "templates": len(rarity.holders),
        # test windows holding a template the pool never held: they score 1.0 whatever they are
        "test_windows_with_an_unseen_template": sum(1 for w in test if not set(w.templates) <= rarity.holders.keys()),
        "test_windows": len(test),
    }
    return _kept(run, started)


def count_pca_run(runner: Runner, source: str, target: str, seed: int) -> dict[str, Any]:
    """``count-pca``: PCA of the seed's unlabeled pool's template counts (``stream.model.count_pca``, loglizer's
    defaults), each window scored by its residual; the pool's own windows out of fold. No source, no label: the
    source is in the run's name only, as ``template-rarity``'s is. Its own threshold, the Q-statistic, is kept as
    ``own_threshold``: a rule read off the reference's eigenvalues, fixed before any run."""
    started = time.perf_counter()
    dataset, split = runner.data(target)
    unlabeled, unlabeled_labels = inputs(dataset, unlabeled_pool(split, seed, unlabeled_size(runner.family)))
    test, test_labels = inputs(dataset, split.test)
    pca = TemplateCountPCA.of(unlabeled)
    scores = {"test": pca.scores(test), "unlabeled": pca.member_scores()}
    run = _traffic_run(runner, source, target, COUNT_PCA, seed, scores, (test_labels, unlabeled_labels))
    run["count_pca"] = pca.describe()
    run["own_threshold"] = {"rule": Q_STATISTIC, "value": pca.threshold}
    return _kept(run, started)


def _traffic_run(
    runner: Runner,
    source: str,
    target: str,
    method: str,
    seed: int,
    scores: dict[str, list[float]],
    labels: tuple[list[int], list[int]],
) -> dict[str, Any]:
    """The run of a no-label method that reads only the target's traffic: test and unlabeled scores, no validation."""
    test_labels, unlabeled_labels = labels
    return {
        "family": runner.family,
        "source": source,
        "target": target,
        "n_anomalies": 0,
        "method": method,
        "seed": seed,
        "train_windows": 0,
        "train_anomalous": 0,
        "validation": {"scores": [], "labels": []},
        "test": {"scores": [round(s, 6) for s in scores["test"]], "labels": test_labels},
        "unlabeled": {"scores": [round(s, 6) for s in scores["unlabeled"]], "labels": unlabeled_labels},
    }


def _kept(run: dict[str, Any], started: float) -> dict[str, Any]:
    """The run with its wall time, kept where ``scored_run`` looks for it."""
    run["wall_s"] = round(time.perf_counter() - started, 1)
    keep_run(run_path(run["family"], run["source"], run["target"], run["n_anomalies"], run["method"], run["seed"]), run)
    return run


def aligned_base(runner: Runner, source: str, target: str, method: str) -> Trained:
    """The source's base trained as ``runner.base`` trains it (seed 0, the same windows and options) plus the
    ``method``'s alignment loss on the target's unlabeled windows (seed 0's draw); kept beside the plain bases."""
    directory = BASES / runner.family / f"{source}-{runner.base_key(source)}-{method}-to-{target}"
    if directory.exists():
        return load_trained(directory)
    print(f"[{runner.family}] base {source} {method} to {target} ...", file=sys.stderr, flush=True)
    dataset, split = runner.data(source)
    target_data, target_split = runner.data(target)
    unlabeled = inputs(target_data, unlabeled_pool(target_split, 0, unlabeled_size(runner.family)))[0]
    capped = Split(runner.train_part(source), split.validation, split.test, split.method, split.seed)
    objective = ALIGNMENTS[method]()
    trained = pretrain(
        runner.family, runner.config(source), dataset, capped, options=runner.options(), unlabeled=unlabeled,
        objective=objective,
    )  # fmt: skip
    save_trained(trained, directory, dataset, {"train": capped.train, "validation": capped.validation})
    return trained


def self_train(
    detector: Detector,
    target: str,
    unlabeled: Sequence[WindowText],
    *,
    options: FitOptions,
    budget_per_1000: float = DEFAULT_BUDGET_PER_1000,
) -> Trained:
    """A target's adapter trained on its own confident pseudo-labels, with no label at all (self-training; an
    experiment of this bench, not a product path: docs/transfer.md has what it measured).

    The base (best one aligned to the target: ``pretrain(..., objective=MomentMatching())``) scores the unlabeled
    windows; where ``score-mixture`` finds a minority upper mode, the windows it flags are taken as anomalous and
    the lowest-scoring ones as normal, leaving out a band below the threshold as wide as the flagged set (the
    windows the base is least sure of), and the target's adapter learns those pseudo-labels. The threshold is then
    ``score-mixture`` again on the adapter's scores of the same windows. Where the base's scores show no such mode
    there is nothing confident to learn: the adapter is left as the base and the detail says so."""
    if target in detector.targets:
        detector.remove_target(target)
    detector.add_target(target)
    windows = list(unlabeled)
    scores = detector.scores(windows, target=target)
    first = score_mixture(scores, budget_per_1000)
    report, pseudo = FitReport(), {"anomalous": 0, "normal": 0, "left_out": 0}
    if "fallback" not in first.detail:
        ranked = sorted(range(len(windows)), key=lambda i: scores[i], reverse=True)
        flagged = sum(1 for score in scores if score >= first.value)
        normal = ranked[2 * flagged :]
        chosen = ranked[:flagged] + normal
        labels = [1] * flagged + [0] * len(normal)
        report = detector.fit([windows[i] for i in chosen], labels, target=target, mode="adapter", options=options)
        pseudo = {"anomalous": flagged, "normal": len(normal), "left_out": len(windows) - len(chosen)}
    scores = detector.scores(windows, target=target)
    choice = score_mixture(scores, budget_per_1000)
    quality: dict[str, Any] = {
        "chosen_on": f"{len(windows)} unlabeled target windows",
        "threshold_rule": choice.rule,
        "threshold_detail": choice.detail,
        "flagged_unlabeled": sum(1 for score in scores if score >= choice.value),
        "self_training": {"pseudo_labels": pseudo, "first_threshold": first.to_dict()},
    }
    return Trained(detector, target, choice.value, report, quality)


def source_replay(runner: Runner, source: str, seed: int) -> tuple[Dataset, list[int]]:
    """Labeled source windows replayed beside the target's unlabeled ones, so that learning the target's traffic as
    normal does not unlearn what an anomaly looks like: up to 500 anomalous and 1,500 normal training windows."""
    dataset, split = runner.data(source)
    return dataset, list(limit(dataset, split.train, max_anomalies=500, max_normals=1500, seed=seed))


def methods_at(anomalies: int, source: str) -> tuple[str, ...]:
    if anomalies == 0:
        return (*ZERO_LABEL_METHODS, *ALIGNMENTS)
    labeled = tuple(m for m in METHODS if m != "scratch") if source.startswith(MULTI_SOURCE) else METHODS
    return (*labeled, *ALIGNMENTS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="logtransfer,translog", help="comma-separated families")
    parser.add_argument(
        "--pairs",
        default=",".join(f"{s}:{t}" for s, t in PAIRS + MULTI_PAIRS),
        help="comma-separated SOURCE:TARGET data sets (hdfs, bgl, thunderbird, hadoop; all-but-<target> as a source:"
        " every other source system)",
    )
    parser.add_argument("--anomalies", default=",".join(map(str, BUDGETS)), help="label budgets N")
    parser.add_argument(
        "--methods", default=",".join((*ZERO_LABEL_METHODS, *METHODS, *ALIGNMENTS)), help="comma-separated methods"
    )
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the few labels and the trained weights")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only-render", action="store_true", help="write the JSON and docs/transfer.md only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted_methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    if not args.only_render:
        for family in [f.strip() for f in args.families.split(",") if f.strip()]:
            runner = Runner(family, fresh=False, seed=0)  # base and split: seed 0, as in docs/results.md
            for anomalies in [int(n) for n in args.anomalies.split(",")]:
                for source, target in [pair.strip().split(":") for pair in args.pairs.split(",") if pair.strip()]:
                    for method in methods_at(anomalies, source):
                        if method not in wanted_methods:
                            continue
                        for seed in [int(s) for s in args.seeds.split(",")]:
                            scored_run(runner, source, target, anomalies, method, seed)
                    write_outputs()  # after each cell: a stopped run leaves the table of what it has
    table = write_outputs()
    print(f"wrote {len(table['rows'])} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
