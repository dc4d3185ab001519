"""``adaptlog-train``: pretrain a base, tune a target's adapter, evaluate.

    adaptlog-train pretrain --family translog --data ../shared/data/hdfs/HDFS_5k.log --out models/hdfs-base
    adaptlog-train adapt --base models/hdfs-base --data ../shared/data/hadoop --target hadoop \\
        --max-anomalies 50 --out models/hadoop-adapter
    adaptlog-train evaluate --model models/hdfs-base --adapter models/hadoop-adapter --data ../shared/data/hadoop \\
        --json eval.json --plot pr.png

Exit codes: 0 done; 1 failed (data that cannot be read, a model or training error); 2 bad usage (a bad flag or
value, a malformed --set, a hyperparameter the family rejects, a device this machine lacks: the message names it);
3 incompatible artifact (an adapter made for another base); 130 interrupted.

Building the parser imports no torch: ``--help`` and ``--version`` answer at once. The model code is imported by
the command that runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.errors import AdaptlogError, ConfigError, IncompatibleArtifactError, ModelError
from stream.model.thresholds import (  # plain Python: --help still imports no torch
    BEST_F1,
    BUDGET_AND_ANOMALIES,
    DEFAULT_BUDGET_PER_1000,
    FALSE_ALARM_BUDGET,
    NORMALS_AND_TRAFFIC,
    RULES,
    SCORE_MIXTURE,
    ZERO_LABEL_RULES,
)
from trainer.data_source import DataSource, add_data_arguments, infer_format, load, source_from_arguments
from trainer.progress import progress_bar
from trainer.service_cli import add_commands

DEFAULT_MAX_UNLABELED = 2000  # trainer.unlabeled's (not imported here: --help imports no torch)

if TYPE_CHECKING:
    from stream.model.alignment import DomainAdversarial, MomentMatching
    from stream.model.detector import Detector, FitOptions, WindowText
    from trainer.datasets import Dataset
    from trainer.unlabeled import UnlabeledWindows

# The names of stream.model.families.FAMILIES (a test keeps them equal), here so that --help needs no torch.
FAMILY_NAMES = ("translog", "logtransfer", "logllm")

FAILED, USAGE, INCOMPATIBLE, INTERRUPTED = 1, 2, 3, 130


def package_version() -> str:
    try:
        return version("adaptlog")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # a usage error exits 2 here, with argparse's message
    try:
        return _run(args)
    except IncompatibleArtifactError as exc:
        print(f"adaptlog-train: {exc}", file=sys.stderr)
        return INCOMPATIBLE
    except ConfigError as exc:
        if _unreadable_data(exc):
            print(f"adaptlog-train: {exc}", file=sys.stderr)
            return FAILED
        print(f"adaptlog-train: error: {exc}", file=sys.stderr)
        return USAGE
    except (AdaptlogError, ValueError, OSError) as exc:
        print(f"adaptlog-train: {exc}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("adaptlog-train: interrupted", file=sys.stderr)
        return INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        # the libraries' own bars (transformers' "Loading weights") follow ours: only on a terminal, not with --quiet;
        # read when huggingface_hub is first imported, which is below
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    from stream.model.detector import resolve_device

    torch.set_num_threads(getattr(args, "threads", 2))
    if hasattr(args, "device"):
        try:
            resolve_device(args.device)  # a device this machine lacks fails before any data is read
        except ModelError as exc:
            raise ConfigError("--device", str(exc)) from None
    return args.run(args)


def _unreadable_data(exc: ConfigError) -> bool:
    """A data file that is missing, unreadable or malformed (or holds no windows) is a failure, not bad usage; a
    flag the data needs (--data-format, --data-labels, ...) and every other setting are usage."""
    return exc.setting == "--data" or exc.setting.startswith(("dataset file ", "unlabeled windows "))


def run_pretrain(args: argparse.Namespace) -> int:
    from trainer.datasets import limit
    from trainer.train import fit_base, save_trained

    source = source_from_arguments(args)
    config = _config(args)
    _require_paths(source)
    detector = _new_base(args.family, config, args)  # hyperparameters the family rejects fail before data is read
    unlabeled, objective = _alignment(args)  # and --align-to without its windows (or them without it)
    dataset, split = _load(source, args.seed)
    if args.also_data:
        dataset, split = _several_sources(dataset, split, args)
    train = limit(dataset, split.train, max_anomalies=args.max_anomalies, max_normals=args.max_normals, seed=args.seed)
    split = type(split)(train, split.validation, split.test, split.method, split.seed)
    aligned = f", aligned to {len(unlabeled.windows)} unlabeled {args.align_to} windows" if unlabeled else ""
    _say(args, f"pretraining {args.family} on {dataset.name}: {len(train)} training windows{aligned}")
    with progress_bar(args.quiet) as progress:
        trained = fit_base(
            detector,
            dataset,
            split,
            options=_options(args),
            progress=progress,
            threshold_rule=args.threshold_rule,
            budget_per_1000=args.false_alarms_per_1000,
            unlabeled=unlabeled.windows if unlabeled else (),
            objective=objective,
        )
    alignment = None
    if unlabeled is not None and objective is not None:  # _alignment gives both or neither
        alignment = {"target": args.align_to, "objective": args.alignment, "weight": objective.weight}
        alignment["unlabeled"] = unlabeled.summary()
    parts = {"train": split.train, "validation": split.validation}
    manifest = save_trained(trained, args.out, dataset, parts, alignment=alignment)
    _say(args, f"wrote {args.out}: validation {trained.validation}, {trained.report.seconds:.1f}s")
    _publish(args, "base", args.out, manifest)
    return 0


def run_adapt(args: argparse.Namespace) -> int:
    """A target's adapter from its few labels (``--data``), its unlabeled windows (``--unlabeled-*``), or both.

    With no labeled anomaly (no ``--data``, or ``--max-anomalies 0``) the adapter is ``zero-label``
    (``trainer.train.zero_label``): nothing trains, the threshold is the false-alarm budget read off the unlabeled
    windows and any labeled normals. With labeled anomalies the unlabeled windows join the threshold rules'
    false-alarm reference."""
    from stream.model.artifacts import load_base, save_adapter
    from trainer.train import adapt, few_labels, inputs, supervision, zero_label

    if args.data is None and args.unlabeled_file is None and args.unlabeled_topic is None:
        raise ConfigError("adapt", "give the target's labeled windows (--data), its unlabeled ones, or both")
    if args.data is None and args.max_anomalies:
        raise ConfigError("--max-anomalies", f"{args.max_anomalies} labeled anomalies asked for, but no --data")
    source = source_from_arguments(args) if args.data is not None else None
    if source is not None:
        _require_paths(source)
    detector, base = load_base(args.base)
    detector.to_device(args.device)
    unlabeled = _unlabeled(args, args.target)
    unlabeled_windows = unlabeled.windows if unlabeled else []
    if source is None:
        anomalies = 0
        normals: list[WindowText] = []
    else:
        dataset, split = _load(source, args.seed)
        labels = few_labels(
            dataset, split, max_anomalies=args.max_anomalies, max_normals=args.max_normals, seed=args.seed
        )
        normals, flags = inputs(dataset, labels.train + labels.validation)
        anomalies = sum(flags)
    if anomalies == 0:
        if args.threshold_rule not in (None, *ZERO_LABEL_RULES):
            allowed = " or ".join(ZERO_LABEL_RULES)
            raise ConfigError("--threshold-rule", f"with no labeled anomaly only {allowed} can set it")
        if args.threshold_rule in (SCORE_MIXTURE, NORMALS_AND_TRAFFIC) and not unlabeled_windows:
            raise ConfigError("--threshold-rule", f"{args.threshold_rule} reads unlabeled windows: give --unlabeled-*")
        if not unlabeled_windows and not normals:
            raise ConfigError("--data", "no labeled window and no unlabeled one: nothing can place the threshold")
        _say(
            args,
            f"zero-label adapter for {args.target}: {len(normals)} labeled normal, "
            f"{len(unlabeled_windows)} unlabeled windows, no training",
        )
        trained = zero_label(
            detector,
            args.target,
            unlabeled_windows,
            normals=normals,
            budget_per_1000=args.false_alarms_per_1000,
            threshold_rule=args.threshold_rule or FALSE_ALARM_BUDGET,
        )
    else:
        _say(args, f"tuning a {base.family} adapter for {args.target}: {len(labels.train)} training windows")
        with progress_bar(args.quiet) as progress:
            trained = adapt(
                detector,
                args.target,
                dataset,
                labels,
                options=_options(args),
                progress=progress,
                threshold_rule=args.threshold_rule,
                budget_per_1000=args.false_alarms_per_1000,
                unlabeled=unlabeled_windows,
            )
    training: dict[str, Any]
    if source is not None:
        training = trained.training_summary(dataset, {"train": labels.train, "validation": labels.validation})
        training["labels"] = labels.method
    else:
        training = {"fit": trained.report.to_dict()}
    training["supervision"] = supervision(anomalies)
    if unlabeled is not None:
        training["unlabeled"] = unlabeled.summary()
    manifest = save_adapter(
        detector,
        args.target,
        args.out,
        base=base,
        threshold=trained.threshold,
        training=training,
        metrics={"validation": trained.validation},
    )
    _say(args, f"wrote {args.out} ({training['supervision']}): validation {trained.validation}")
    _publish(args, "adapter", args.out, manifest)
    return 0


def _unlabeled(args: argparse.Namespace, system: str) -> UnlabeledWindows | None:
    """``system``'s unlabeled windows from ``--unlabeled-file`` or ``--unlabeled-topic`` (the broker of
    ADAPTLOG_BOOTSTRAP_SERVERS and the other Kafka settings, as every adaptlog process reads them)."""
    from trainer.unlabeled import read_windows_file, read_windows_topic

    if args.unlabeled_file is not None and args.unlabeled_topic is not None:
        raise ConfigError("--unlabeled-file", "give --unlabeled-file or --unlabeled-topic, not both")
    if args.unlabeled_file is not None:
        found = read_windows_file(args.unlabeled_file, system, args.max_unlabeled)
    elif args.unlabeled_topic is not None:
        from stream.settings import load_settings

        found = read_windows_topic(load_settings(), args.unlabeled_topic, system, args.max_unlabeled)
    else:
        return None
    _say(args, f"read {len(found.windows)} unlabeled windows of {system} from {found.source}")
    return found


def _alignment(
    args: argparse.Namespace,
) -> tuple[UnlabeledWindows | None, DomainAdversarial | MomentMatching | None]:
    """pretrain's ``--align-to``: the target's unlabeled windows and the alignment loss on them, or neither."""
    given = args.unlabeled_file is not None or args.unlabeled_topic is not None
    if args.align_to is None:
        if given:
            flag = "--unlabeled-file" if args.unlabeled_file is not None else "--unlabeled-topic"
            raise ConfigError(flag, "pretrain reads unlabeled windows only to align the base to them: add --align-to")
        return None, None
    if not given:
        raise ConfigError("--align-to", "name where its unlabeled windows are: --unlabeled-file or --unlabeled-topic")
    from stream.model.alignment import OBJECTIVES

    unlabeled = _unlabeled(args, args.align_to)
    assert unlabeled is not None  # one of the two sources was given
    objective = (
        OBJECTIVES[args.alignment]() if args.align_weight is None else OBJECTIVES[args.alignment](args.align_weight)
    )
    return unlabeled, objective


def run_evaluate(args: argparse.Namespace) -> int:
    from stream.model.artifacts import load_adapter, load_base
    from trainer.evaluate import evaluate, plot_pr_curve

    source = source_from_arguments(args)
    _require_paths(source)
    detector, base = load_base(args.model)
    detector.to_device(args.device)
    target, threshold = None, base.threshold
    if args.adapter is not None:
        adapter = load_adapter(detector, base, args.adapter)
        target, threshold = adapter.target, adapter.threshold
    dataset, split = _load(source, args.seed)
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


def _new_base(family: str, config: dict[str, Any], args: argparse.Namespace) -> Detector:
    """The untrained base on ``--device``; a hyperparameter the family rejects is a usage error naming it."""
    from stream.model.families import create_detector

    try:
        detector = create_detector(family, config, seed=args.seed)
    except ConfigError as exc:
        raise ConfigError("--config/--set", exc.problem) from None
    detector.to_device(args.device)
    return detector


def _require_paths(source: DataSource) -> None:
    """Before a model is built: a --data path that is not there is as clear at once as after a minute's loading."""
    for path in source.paths:
        if not path.exists():
            raise ConfigError("--data", f"{path} does not exist")


def _several_sources(dataset: Dataset, split: Any, args: argparse.Namespace) -> tuple[Dataset, Any]:
    """--data and every --also-data as one data set: a base that is not tied to one system."""
    from trainer.datasets.combined import combine

    parts = [(dataset, split)]
    for path in args.also_data:
        other = DataSource(paths=(path,), format=infer_format(path))
        _require_paths(other)
        parts.append(_load(other, args.seed))
    name = args.name or "+".join(part.system for part, _ in parts)
    return combine(parts, name=name, max_normals=args.max_normals_per_source, seed=args.seed)


def _load(source: DataSource, seed: int) -> tuple[Dataset, Any]:
    from trainer.datasets import default_split

    dataset = load(source)
    if not dataset.windows:
        raise ConfigError("--data", f"{source.describe()} holds no windows")
    return dataset, default_split(dataset, seed=seed)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.config is not None:
        try:
            config = json.loads(args.config.read_text())
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
            raise ConfigError("--config", f"cannot read {args.config}: {exc}") from None
        if not isinstance(config, dict):
            raise ConfigError("--config", f"{args.config} holds a {type(config).__name__}, not a JSON object")
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", f"expected KEY=VALUE, got {item!r}")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value  # a bare string (a path)
    return config


def _options(args: argparse.Namespace) -> FitOptions:
    from stream.model.detector import FitOptions

    return FitOptions(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed, min_steps=args.min_steps
    )


def _publish(args: argparse.Namespace, kind: str, directory: Path, manifest: Any) -> None:
    if args.registry is None:
        return
    from stream.model.registry import Registry

    registry = Registry(args.registry)
    if kind == "base":
        published = registry.publish_base(directory, name=args.name or manifest.target)
    else:
        published = registry.publish_adapter(directory)
    _say(args, f"published {kind} {published.name} {published.version} to {args.registry}")


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _at_least(minimum: int) -> Any:
    """An argparse type: an integer >= ``minimum`` (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def _positive(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < number < float("inf"):  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return number


def _budget(text: str) -> float:
    """An argparse type: a false-alarm budget per 1,000 windows, in [0, 1000]."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= number <= 1000.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be between 0 and 1000, got {text}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaptlog-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", help="what to do (COMMAND --help for its options)")

    pre = sub.add_parser("pretrain", help="train a base model on a labeled source system")
    pre.set_defaults(run=run_pretrain)
    pre.add_argument("--family", required=True, choices=sorted(FAMILY_NAMES), help="model family")
    pre.add_argument("--config", type=Path, help="JSON file of hyperparameters")
    pre.add_argument("--set", action="append", metavar="KEY=VALUE", help="one hyperparameter (JSON value)")
    pre.add_argument("--name", help="registry name of the base (default: the source system)")
    pre.add_argument(
        "--also-data",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="another labeled source system (format from its name, default windows), repeatable: one base trains on"
        " them all, each split its own way",
    )
    pre.add_argument(
        "--max-normals-per-source",
        type=_at_least(1),
        default=10_000,
        help="with --also-data: at most this many normal training windows from each source (default 10000)",
    )

    ada = sub.add_parser("adapt", help="tune a target system's adapter on a trained base")
    ada.set_defaults(run=run_adapt)
    ada.add_argument("--base", type=Path, required=True, help="base model directory")
    ada.add_argument("--target", required=True, help="the target system's name")

    pre.add_argument(
        "--align-to",
        metavar="SYSTEM",
        help="a target system to align the base to: its unlabeled windows (--unlabeled-file or --unlabeled-topic) "
        "train beside the labeled ones with --alignment's loss, so that the base scores that system without a label "
        "(then: adapt --max-anomalies 0 with the same unlabeled windows)",
    )
    pre.add_argument(
        "--alignment",
        choices=("moments", "adversarial"),
        default="moments",
        help="with --align-to: moments matches the two systems' representation means and covariances (Deep CORAL), "
        "adversarial trains a domain discriminator whose reversed gradient reaches the encoder (DANN) "
        "(default: moments, the better of the two in docs/transfer.md)",
    )
    pre.add_argument(
        "--align-weight",
        type=_positive,
        help="with --align-to: the alignment loss's weight against the supervised loss (default: 1 for moments, "
        "0.1 for adversarial)",
    )

    for command in (pre, ada):
        command.add_argument(
            "--unlabeled-file",
            type=Path,
            metavar="PATH",
            help="the target's unlabeled windows: a JSON-lines file of windows-topic records (other systems skipped)",
        )
        command.add_argument(
            "--unlabeled-topic",
            metavar="TOPIC",
            help="the target's unlabeled windows: read TOPIC (e.g. windows) to its end on the broker of "
            "ADAPTLOG_BOOTSTRAP_SERVERS, without a consumer group",
        )
        command.add_argument(
            "--max-unlabeled",
            type=_at_least(1),
            default=DEFAULT_MAX_UNLABELED,
            help=f"keep the target's most recent N unlabeled windows (default {DEFAULT_MAX_UNLABELED})",
        )

        # adapt needs no labeled data for a zero-label adapter (only unlabeled windows); pretrain always does
        add_data_arguments(command, required=command is pre)
        command.add_argument("--out", type=Path, required=True, help="artifact directory to write")
        command.add_argument(
            "--max-anomalies", type=_at_least(0), help="at most this many labeled anomalous windows (default: all)"
        )
        command.add_argument(
            "--max-normals", type=_at_least(0), help="at most this many labeled normal windows (default: all)"
        )
        command.add_argument("--epochs", type=_at_least(1), help="training epochs (default: the family's)")
        command.add_argument("--lr", type=float, help="learning rate (default: the family's)")
        command.add_argument("--batch-size", type=_at_least(1), help="windows per batch (default: the family's)")
        command.add_argument(
            "--min-steps",
            type=_at_least(0),
            help="train small sets at least this many optimizer steps before early stopping may stop "
            "(default: the family's: 300 for translog and logtransfer, 0 for logllm)",
        )
        command.add_argument("--registry", type=Path, help="also publish the artifact to this registry")
        command.add_argument(
            "--threshold-rule",
            choices=RULES,
            help=f"how the validation windows set the threshold: {BEST_F1} (best F1 on the labeled windows), "
            f"{FALSE_ALARM_BUDGET} (at most --false-alarms-per-1000 of the validation normals flagged), "
            f"{BUDGET_AND_ANOMALIES} (within that budget, the best F1 estimated from the labeled anomalies' recall; "
            f"{BEST_F1} where the normals are too few to resolve it), "
            f"{SCORE_MIXTURE} (no label read: where the unlabeled windows' scores show a minority upper mode, where "
            f"it begins; else the budget), {NORMALS_AND_TRAFFIC} (no anomaly read: the anomaly share estimated from "
            f"how much more of the unlabeled traffic than of the labeled normals each threshold flags, and the "
            f"threshold with the best F1 so estimated) "
            f"(default: {BEST_F1} when validation holds an anomaly, else {FALSE_ALARM_BUDGET}); "
            "the manifest records it",
        )
        command.add_argument(
            "--false-alarms-per-1000",
            type=_budget,
            default=DEFAULT_BUDGET_PER_1000,
            metavar="X",
            help="false-alarm budget of the budget rules: normal windows flagged per 1,000, 0 to 1000 "
            f"(default: {DEFAULT_BUDGET_PER_1000:g}; it needs about 1000/X - 1 validation normals to resolve, "
            "else the threshold flags none of them)",
        )

    ev = sub.add_parser("evaluate", help="score a model (and adapter) on the test part of a data set")
    ev.set_defaults(run=run_evaluate)
    ev.add_argument("--model", type=Path, required=True, help="base model directory")
    ev.add_argument("--adapter", type=Path, help="adapter directory (scores as its target)")
    add_data_arguments(ev)
    ev.add_argument("--json", type=Path, help="write the full result (PR curve included) as JSON")
    ev.add_argument("--plot", type=Path, help="write the PR curve as a PNG")

    for command in (pre, ada, ev):
        command.add_argument(
            "--seed",
            type=int,
            default=0,
            help="seed of the data split (training: also of the labels drawn and the initial weights)",
        )
        command.add_argument("--threads", type=_at_least(1), default=2, help="torch CPU threads")
        command.add_argument(
            "--device", default="auto", help="auto (the first CUDA device when torch sees one, else cpu), cpu, cuda[:N]"
        )
        command.add_argument("--quiet", action="store_true", help="no progress output")
    add_commands(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
