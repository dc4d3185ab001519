"""``adaptlog-train``: pretrain a base, tune a target's adapter, evaluate.

    adaptlog-train pretrain --family translog --data ../shared/data/hdfs/HDFS_5k.log --out models/hdfs-base
    adaptlog-train adapt --base models/hdfs-base --data ../shared/data/hadoop --target hadoop \\
        --max-anomalies 50 --out models/hadoop-adapter
    adaptlog-train evaluate --model models/hdfs-base --adapter models/hadoop-adapter --data ../shared/data/hadoop \\
        --json eval.json --plot pr.png

Exit codes: 0 done, 2 bad arguments or data (the message names the file or setting), 3 incompatible artifact.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from stream.errors import AdaptlogError, ConfigError, IncompatibleArtifactError
from stream.model.artifacts import load_adapter, load_base, save_adapter
from stream.model.detector import FitOptions, resolve_device
from stream.model.families import FAMILIES
from stream.model.registry import Registry
from trainer.data_source import DataSource, add_data_arguments, load, source_from_arguments
from trainer.datasets import Dataset, default_split, limit
from trainer.evaluate import evaluate, plot_pr_curve
from trainer.progress import progress_bar
from trainer.service_cli import add_commands
from trainer.train import adapt, few_labels, pretrain, save_trained


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        torch.set_num_threads(getattr(args, "threads", 2))
        if hasattr(args, "device"):
            resolve_device(args.device)  # a device this machine lacks fails before any data is read
        return args.run(args)
    except IncompatibleArtifactError as exc:
        print(f"adaptlog-train: {exc}", file=sys.stderr)
        return 3
    except (AdaptlogError, ValueError) as exc:
        print(f"adaptlog-train: {exc}", file=sys.stderr)
        return 2


def run_pretrain(args: argparse.Namespace) -> int:
    source = source_from_arguments(args)
    dataset, split = _load(source, args.seed)
    train = limit(dataset, split.train, max_anomalies=args.max_anomalies, max_normals=args.max_normals, seed=args.seed)
    split = type(split)(train, split.validation, split.test, split.method, split.seed)
    _say(args, f"pretraining {args.family} on {dataset.name}: {len(train)} training windows")
    with progress_bar(args.quiet) as progress:
        trained = pretrain(
            args.family, _config(args), dataset, split, options=_options(args), progress=progress, device=args.device
        )
    manifest = save_trained(trained, args.out, dataset, {"train": split.train, "validation": split.validation})
    _say(args, f"wrote {args.out}: validation {trained.validation}, {trained.report.seconds:.1f}s")
    _publish(args, "base", args.out, manifest)
    return 0


def run_adapt(args: argparse.Namespace) -> int:
    detector, base = load_base(args.base)
    detector.to_device(args.device)
    dataset, split = _load(source_from_arguments(args), args.seed)
    labels = few_labels(dataset, split, max_anomalies=args.max_anomalies, max_normals=args.max_normals, seed=args.seed)
    _say(args, f"tuning a {base.family} adapter for {args.target}: {len(labels.train)} training windows")
    with progress_bar(args.quiet) as progress:
        trained = adapt(detector, args.target, dataset, labels, options=_options(args), progress=progress)
    training = trained.training_summary(dataset, {"train": labels.train, "validation": labels.validation})
    training["labels"] = labels.method
    manifest = save_adapter(
        detector,
        args.target,
        args.out,
        base=base,
        threshold=trained.threshold,
        training=training,
        metrics={"validation": trained.validation},
    )
    _say(args, f"wrote {args.out}: validation {trained.validation}, {trained.report.seconds:.1f}s")
    _publish(args, "adapter", args.out, manifest)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    detector, base = load_base(args.model)
    detector.to_device(args.device)
    target, threshold = None, base.threshold
    if args.adapter is not None:
        adapter = load_adapter(detector, base, args.adapter)
        target, threshold = adapter.target, adapter.threshold
    dataset, split = _load(source_from_arguments(args), args.seed)
    result = evaluate(detector, dataset, split, target=target, manifest_threshold=threshold)
    result["model"] = str(args.model)
    result["adapter"] = None if args.adapter is None else str(args.adapter)
    summary = {k: v for k, v in result.items() if k not in ("pr_curve", "test_scores")}  # these two go to --json
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot is not None:
        plot_pr_curve(result, args.plot, f"{base.family} on {dataset.name}" + (f" ({target})" if target else ""))
    return 0


def _load(source: DataSource, seed: int) -> tuple[Dataset, Any]:
    dataset = load(source)
    if not dataset.windows:
        raise ConfigError("--data", f"{source.describe()} holds no windows")
    return dataset, default_split(dataset, seed=seed)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--set", f"expected KEY=VALUE, got {item!r}")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value  # a bare string (a path)
    return config


def _options(args: argparse.Namespace) -> FitOptions:
    return FitOptions(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed, min_steps=args.min_steps
    )


def _publish(args: argparse.Namespace, kind: str, directory: Path, manifest: Any) -> None:
    if args.registry is None:
        return
    registry = Registry(args.registry)
    if kind == "base":
        published = registry.publish_base(directory, name=args.name or manifest.target)
    else:
        published = registry.publish_adapter(directory)
    _say(args, f"published {kind} {published.name} {published.version} to {args.registry}")


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaptlog-train", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    pre = sub.add_parser("pretrain", help="train a base model on a labeled source system")
    pre.set_defaults(run=run_pretrain)
    pre.add_argument("--family", required=True, choices=sorted(FAMILIES))
    pre.add_argument("--config", type=Path, help="JSON file of hyperparameters")
    pre.add_argument("--set", action="append", metavar="KEY=VALUE", help="one hyperparameter (JSON value)")
    pre.add_argument("--name", help="registry name of the base (default: the source system)")

    ada = sub.add_parser("adapt", help="tune a target system's adapter on a trained base")
    ada.set_defaults(run=run_adapt)
    ada.add_argument("--base", type=Path, required=True, help="base model directory")
    ada.add_argument("--target", required=True, help="the target system's name")

    for command in (pre, ada):
        add_data_arguments(command)
        command.add_argument("--out", type=Path, required=True, help="artifact directory to write")
        command.add_argument("--max-anomalies", type=int, help="at most this many labeled anomalous windows")
        command.add_argument("--max-normals", type=int, help="at most this many labeled normal windows")
        command.add_argument("--epochs", type=int)
        command.add_argument("--lr", type=float)
        command.add_argument("--batch-size", type=int)
        command.add_argument(
            "--min-steps",
            type=int,
            help="train small sets at least this many optimizer steps before early stopping may stop "
            "(default: the family's: 300 for translog and logtransfer, 0 for logllm)",
        )
        command.add_argument("--registry", type=Path, help="also publish the artifact to this registry")

    ev = sub.add_parser("evaluate", help="score a model (and adapter) on the test part of a data set")
    ev.set_defaults(run=run_evaluate)
    ev.add_argument("--model", type=Path, required=True, help="base model directory")
    ev.add_argument("--adapter", type=Path, help="adapter directory (scores as its target)")
    add_data_arguments(ev)
    ev.add_argument("--json", type=Path, help="write the full result (PR curve included) as JSON")
    ev.add_argument("--plot", type=Path, help="write the PR curve as a PNG")

    for command in (pre, ada, ev):
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--threads", type=int, default=2, help="torch CPU threads")
        command.add_argument(
            "--device", default="auto", help="auto (the first CUDA device when torch sees one, else cpu), cpu, cuda[:N]"
        )
        command.add_argument("--quiet", action="store_true", help="no progress output")
    add_commands(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
