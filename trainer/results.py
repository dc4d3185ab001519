"""Every figure in docs/results.md, from the real data in ../shared/data, by one command:

    make results                      # all three families (CPU: hours for LogLLM; see --families)
    .venv/bin/python -m trainer.results --families translog,logtransfer --out docs/results.md

For each family: in-domain F1 on HDFS (2% of blocks), BGL (20-line windows), Thunderbird and Hadoop; transfer
BGL -> Thunderbird and HDFS -> Hadoop with 50, 100 and 200 labeled target anomalies, comparing the adapter on the
source base, the same family trained from scratch on the same labels, and full fine-tuning of the base on them.
Each run's result is kept as JSON under bench/results/model_runs/ (a rerun reuses it unless --fresh), so a long
run that is stopped picks up where it was; the Markdown is rendered from those files.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from stream.model.detector import Detector, FitOptions
from stream.model.durable import atomic_write_text
from stream.model.families import family_class
from trainer.datasets import (
    Dataset,
    Split,
    default_split,
    limit,
    load_bgl_windows,
    load_hadoop,
    load_hdfs,
    load_labeled_lines,
)
from trainer.datasets.combined import combine
from trainer.evaluate import content_ceiling, evaluate
from trainer.results_report import FEW_LABELS_THRESHOLD, SEED_SUFFIX, few_label_threshold, render
from trainer.train import Trained, adapt, few_labels, fit_and_calibrate, load_trained, pretrain, save_trained

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RUNS = ROOT / "bench" / "results" / "model_runs"
BASES = ROOT / "bench" / "results" / "model_bases"  # trained bases, reused across invocations (not in git)
FEW = (50, 100, 200)
PAIRS = (("bgl", "thunderbird"), ("hdfs", "hadoop"))


@dataclass(frozen=True)
class Budget:
    """How much of each data set a family trains on (LogLLM on CPU cannot take all of BGL in hours)."""

    bgl_every: int = 5  # every n-th BGL window: 46k windows over all 215 days
    max_train_normals: int | None = None  # cap on normal training windows (all anomalies are kept)
    config: tuple[tuple[str, Any], ...] = ()
    epochs: int | None = None
    min_steps: int | None = None  # FitOptions.min_steps; None: the family's default


BUDGETS = {
    "translog": Budget(),
    "logtransfer": Budget(),
    # bf16 autocast training where the CPU has it natively: 1.7x the windows/s of float32 on an AVX512-BF16 CPU;
    # float32 where it would be emulated (24x slower than float32 on an AVX2-only one)
    "logllm": Budget(bgl_every=50, max_train_normals=1500, config=(("max_lines", 20), ("train_dtype", "auto"))),
}


# Session windows are longer than 20 lines (HDFS blocks: up to ~300 lines in all of HDFS, 44 in the 2% sample here;
# Hadoop containers: hundreds of events): the models see their last 64, and an HDFS base and its Hadoop adapters
# share that length.
WINDOW_LENGTH = {"hdfs": 64, "hadoop": 64}
LENGTH_SETTING = {"translog": "max_len", "logtransfer": "max_len", "logllm": "max_lines"}
# A base of several sources: "all-but-<target>" trains on every labeled source system except the target.
MULTI_SOURCE = "all-but-"
SOURCE_SYSTEMS = ("hdfs", "bgl", "thunderbird")
MAX_NORMALS_PER_SOURCE = 10_000  # each source's normal training windows (trainer/datasets/combined.py says why)


def sources_of(name: str) -> tuple[str, ...]:
    """The systems a data set name stands for: itself, or for "all-but-X" every source system but X."""
    if not name.startswith(MULTI_SOURCE):
        return (name,)
    left_out = name.removeprefix(MULTI_SOURCE)
    if left_out not in (*SOURCE_SYSTEMS, "hadoop"):
        raise ValueError(f"unknown data set {left_out!r} in {name!r}")
    return tuple(system for system in SOURCE_SYSTEMS if system != left_out)


def load_dataset(name: str, budget: Budget) -> Dataset:
    if name == "hdfs":
        return load_hdfs(DATA / "hdfs" / "HDFS_2pct_blocks.log.gz", DATA / "hdfs" / "HDFS_2pct_anomaly_label.csv")
    if name == "bgl":
        bgl = DATA / "bgl"
        return load_bgl_windows(bgl / "bgl_windows20.csv.gz", bgl / "bgl_window_templates.csv", every=budget.bgl_every)
    if name == "thunderbird":
        return load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system="thunderbird")
    if name == "hadoop":
        return load_hadoop(DATA / "hadoop")
    raise ValueError(f"unknown data set {name!r}")


def run_name(key: str, seed: int) -> str:
    """The cache file's stem: seed 0 (the tables' seed) keeps the bare key, another seed gets a suffix, so a
    rerun with ``--seed`` computes its own runs instead of reading seed 0's."""
    return key if seed == 0 else f"{key}{SEED_SUFFIX}{seed}"


class Runner:
    def __init__(self, family: str, fresh: bool, seed: int) -> None:
        self.family = family
        self.budget = BUDGETS[family]
        self.fresh = fresh
        self.seed = seed
        self.datasets: dict[str, tuple[Dataset, Split]] = {}
        self.bases: dict[str, Trained] = {}

    def data(self, name: str) -> tuple[Dataset, Split]:
        if name not in self.datasets:
            if name.startswith(MULTI_SOURCE):
                parts = [self.data(source) for source in sources_of(name)]
                self.datasets[name] = combine(parts, name=name, max_normals=MAX_NORMALS_PER_SOURCE, seed=self.seed)
            else:
                dataset = load_dataset(name, self.budget)
                self.datasets[name] = (dataset, default_split(dataset, seed=self.seed))
        return self.datasets[name]

    def config(self, name: str) -> dict[str, Any]:
        """The family's hyperparameters for a model trained on data set ``name``."""
        config = dict(self.budget.config)
        lengths = [WINDOW_LENGTH[source] for source in sources_of(name) if source in WINDOW_LENGTH]
        if lengths:
            config[LENGTH_SETTING[self.family]] = max(lengths)
        return config

    def options(self) -> FitOptions:
        return FitOptions(epochs=self.budget.epochs, seed=self.seed, min_steps=self.budget.min_steps)

    def run_path(self, key: str) -> Path:
        return RUNS / self.family / f"{run_name(key, self.seed)}.json"

    def cached(self, key: str, compute, current: Callable[[dict[str, Any]], bool] = lambda run: True) -> dict[str, Any]:
        """The run kept on disk, else (or with --fresh, or when ``current`` says the kept run was computed by an
        older protocol) computed now and kept."""
        path = self.run_path(key)
        if path.exists() and not self.fresh:
            kept = json.loads(path.read_text())
            if current(kept):
                return kept
            print(f"[{self.family}] {key}: the kept run is from an older protocol, recomputing", file=sys.stderr)
        print(f"[{self.family}] {key} (seed {self.seed}) ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = compute()
        result["wall_s"] = round(time.perf_counter() - started, 1)
        self.store(key, result)
        print(
            f"[{self.family}] {key} (seed {self.seed}): F1 {result.get('f1')} in {result['wall_s']}s",
            file=sys.stderr,
            flush=True,
        )
        return result

    def store(self, key: str, result: dict[str, Any]) -> None:
        path = self.run_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")

    def base(self, name: str) -> Trained:
        """The in-domain model of a data set, trained on its whole train part (normals capped by the budget).

        It is also kept on disk (BASES, ignored by git), so the transfer rows of a later invocation reuse it
        instead of training it again: a LogLLM base on HDFS takes about an hour of CPU."""
        if name not in self.bases:
            directory = BASES / self.family / f"{name}-{self.base_key(name)}"
            if directory.exists() and not self.fresh:
                self.bases[name] = load_trained(directory)
                print(f"[{self.family}] base {name}: reused {directory}", file=sys.stderr, flush=True)
            else:
                dataset, split = self.data(name)
                capped = Split(self.train_part(name), split.validation, split.test, split.method, split.seed)
                trained = pretrain(self.family, self.config(name), dataset, capped, options=self.options())
                shutil.rmtree(directory, ignore_errors=True)  # --fresh: the old base goes
                save_trained(trained, directory, dataset, {"train": capped.train, "validation": capped.validation})
                self.bases[name] = trained
        return self.bases[name]

    def train_part(self, name: str) -> tuple[int, ...]:
        """The windows a base trains on: the split's train part, normals capped by the budget."""
        dataset, split = self.data(name)
        return limit(dataset, split.train, max_anomalies=None, max_normals=self.budget.max_train_normals)

    def base_key(self, name: str) -> str:
        """What a base depends on besides the code: family, data set, budget, hyperparameters and seed."""
        what = {"family": self.family, "data": name, "budget": asdict(self.budget), "seed": self.seed}
        what["config"] = self.config(name)
        if name.startswith(MULTI_SOURCE):
            what["max_normals_per_source"] = MAX_NORMALS_PER_SOURCE
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def in_domain(self, name: str) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            trained = self.base(name)
            dataset, split = self.data(name)
            return self.scored(trained, dataset, split, mode="base") | {"train_windows": len(self.train_part(name))}

        run = self.cached(f"in_domain-{name}", compute)
        if "ceiling" not in run:  # cached before evaluate recorded it: it needs the data only, not the model
            dataset, split = self.data(name)
            run["ceiling"] = content_ceiling(dataset, split.test)
            self.store(f"in_domain-{name}", run)
        return run

    def transfer(self, source: str, target: str, anomalies: int, approach: str) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            dataset, split = self.data(target)
            labels = few_labels(dataset, split, max_anomalies=anomalies, max_normals=None, seed=self.seed)
            # the threshold too comes from the few labels (their validation share): the rest of the target's
            # validation part would be labels beyond the budget, some of them the adapter's own training windows
            few = f"{FEW_LABELS_THRESHOLD} ({len(labels.validation)} windows)"
            if approach == "adapter":
                detector = self.base(source).detector
                trained = adapt(detector, target, dataset, labels, options=self.options())
                result = self.scored(trained, dataset, split, mode="adapter", threshold_from=few)
                detector.remove_target(target)
            elif approach == "scratch":
                detector = family_class(self.family).create(self.config(target), seed=self.seed)
                trained = self.calibrated(detector, dataset, labels.train, labels.validation)
                result = self.scored(trained, dataset, split, mode="base", threshold_from=few)
            else:  # full fine-tuning: every base weight trains on the target's few labels
                detector = self.copy_of_base(source)
                trained = self.calibrated(detector, dataset, labels.train, labels.validation)
                result = self.scored(trained, dataset, split, mode="base", threshold_from=few)
            result["labels"] = {
                "train_anomalous": sum(dataset.windows[i].label for i in labels.train),
                "validation_anomalous": sum(dataset.windows[i].label for i in labels.validation),
                "windows": len(labels.train) + len(labels.validation),
            }
            return result

        return self.cached(f"transfer-{source}-{target}-{anomalies}-{approach}", compute, current=few_label_threshold)

    def calibrated(self, detector: Detector, dataset: Dataset, train, validation) -> Trained:
        return fit_and_calibrate(detector, dataset, train, validation, target=None, mode="base", options=self.options())

    def copy_of_base(self, source: str) -> Detector:
        base = self.base(source).detector
        copy = family_class(self.family).create(base.config(), seed=self.seed)
        copy.load_base_state(base.base_state())
        return copy

    def scored(
        self, trained: Trained, dataset: Dataset, split: Split, *, mode: str, threshold_from: str | None = None
    ) -> dict[str, Any]:
        """``threshold_from``: where ``trained.threshold`` was chosen, to score with it rather than with one chosen
        on the data set's validation part."""
        given = None if threshold_from is None else (trained.threshold, threshold_from)
        detector, target, own = trained.detector, trained.target, trained.threshold
        result = evaluate(detector, dataset, split, target=target, manifest_threshold=own, threshold=given)
        result.pop("pr_curve")
        counts = trained.detector.parameter_counts("adapter" if trained.target else "base", trained.target)
        return {
            **result,
            "threshold_validation": trained.threshold,
            "fit": trained.report.to_dict(),
            "trainable_parameters": counts.trainable,
            "total_parameters": counts.total,
            "mode": mode,
            "config": trained.detector.config(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="translog,logtransfer,logllm")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--fresh", action="store_true", help="recompute runs that have a cached result")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of splits, initialisation and label sampling; the tables show seed 0, other seeds'"
        " in-domain runs go to the seed variation table",
    )
    parser.add_argument("--only-render", action="store_true", help="render the Markdown from cached runs")
    parser.add_argument(
        "--only",
        default="*",
        help="comma-separated patterns of the runs to compute, e.g. 'in_domain-*' or 'transfer-bgl-*-adapter'",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    wanted = [pattern.strip() for pattern in args.only.split(",") if pattern.strip()]

    def chosen(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in wanted)

    if not args.only_render:
        for family in families:
            runner = Runner(family, args.fresh, args.seed)
            for name in ("hdfs", "bgl", "thunderbird", "hadoop"):
                if chosen(f"in_domain-{name}"):
                    runner.in_domain(name)
            for source, target in PAIRS:
                for anomalies in FEW:
                    for approach in ("adapter", "scratch", "full"):
                        if chosen(f"transfer-{source}-{target}-{anomalies}-{approach}"):
                            runner.transfer(source, target, anomalies, approach)
    machine = f"{platform.processor() or platform.machine()}, {args.threads} torch threads, torch {torch.__version__}"
    args.out.write_text(render(RUNS, machine))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
