"""The feedback loop's cost and benefit, on 2 CPU cores with TransLog:

1. **F1 by labels received**: a Thunderbird adapter on the HDFS base retrained from the first 50, 100, 200 and 500
   labeled windows, scored on the file's last 150 windows, never labeled; zero-shot (the base alone) is the baseline
   row. Labels arrive in log order from window 450 of Thunderbird_19k (line 9,000, just before its alerts begin)
   to the test windows, 368 of them; after that the operator labels the earlier windows, newest first, which is
   how the 500-label point is reached with real labels (the 132 backfilled windows precede every alert, so all are
   normal). Table in the JSON, plot as PNG.
2. **Label to serving**: the stream workers, the inference worker and the trainer service running on a broker;
   windows keep arriving; the labels for 300 windows are sent, and the clock runs from the broker time of the label
   that makes the target due to the broker time of the first verdict by the new adapter. Goal <= 5 minutes.

    python bench/feedback_bench.py -> bench/results/feedback.json, bench/results/feedback_f1.png, docs/feedback_f1.png
    python bench/feedback_bench.py --skip-broker    # part 1 only; part 2's last result is kept in the JSON
    python bench/feedback_bench.py --plot-only      # redraw both PNGs from the JSON
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.bench_results import write_result  # noqa: E402
from harness.inference import stream_window, train_hdfs_registry  # noqa: E402
from harness.streaming import DATA, running_worker, settings_for  # noqa: E402
from stream.inference.model_host import ModelHost  # noqa: E402
from stream.inference.worker import InferenceWorker  # noqa: E402
from stream.model.detector import FitOptions  # noqa: E402
from stream.model.quality import label_confusion  # noqa: E402
from stream.model.registry import Registry  # noqa: E402
from stream.pipeline.kafka_clients import ensure_topics, inference_topic_specs, make_producer, topic_specs  # noqa: E402
from stream.replay import replay, replay_records  # noqa: E402
from stream.tail import read_records  # noqa: E402
from trainer.datasets import load_labeled_lines  # noqa: E402
from trainer.feedback.retrain import RetrainPolicy, retrain  # noqa: E402
from trainer.feedback.service import FeedbackService  # noqa: E402
from trainer.feedback.store import LabelStore  # noqa: E402

TARGET = "thunderbird"
START_WINDOW = 450  # Thunderbird_19k's first alert is in window 478 (line 9,560)
LABELS = (50, 100, 200, 500)
TEST_WINDOWS = 150  # the last windows of the file: never labeled


@dataclass(frozen=True)
class Example:  # what the label store gives a retrain
    window_id: str
    templates: tuple[str, ...]
    masked: tuple[str, ...]
    label: int


def f1_by_labels(registry_root: Path, work: Path) -> dict[str, Any]:
    dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system=TARGET)
    windows = [
        stream_window(TARGET, list(w.templates), list(w.masked), key=f"w{i}") for i, w in enumerate(dataset.windows)
    ]
    truth = [w.label for w in dataset.windows]
    test = list(range(len(windows) - TEST_WINDOWS, len(windows)))
    rows = []
    base_only = work / "base-only"
    shutil.copytree(registry_root / "bases", base_only / "bases")
    zero = ModelHost(Registry(base_only)).score([windows[i] for i in test])
    rows.append({"labels": 0, "model": "zero-shot", "f1": _f1(zero, [truth[i] for i in test])})
    # the order labels arrive in: forward from START_WINDOW to the test windows, then backfilled before it
    arrival = [*range(START_WINDOW, test[0]), *range(START_WINDOW - 1, -1, -1)]
    for count in LABELS:
        if count > len(arrival):
            raise ValueError(f"{count} labels asked for, only {len(arrival)} windows precede the test windows")
        root = work / f"labels-{count}"
        shutil.copytree(registry_root / "bases", root / "bases")
        pool = [
            Example(windows[i].window_id, dataset.windows[i].templates, dataset.windows[i].masked, truth[i])
            for i in sorted(arrival[:count])
        ]
        started = time.perf_counter()
        decision = retrain(Registry(root), "hdfs", TARGET, pool, RetrainPolicy(), options=FitOptions(seed=0))
        seconds = time.perf_counter() - started
        host = ModelHost(Registry(root))
        host.refresh()
        verdicts = host.score([windows[i] for i in test])
        rows.append(
            {
                "labels": len(pool),
                "anomalous_labels": sum(e.label for e in pool),
                "windows": f"{min(arrival[:count])}-{max(arrival[:count])}",
                "split": decision.labels,
                "model": f"adapter {decision.version}" if decision.published else f"rejected: {decision.reason}",
                "f1": _f1(verdicts, [truth[i] for i in test]),
                "held_out_f1": decision.challenger.get("f1"),
                "retrain_seconds": round(seconds, 1),
            }
        )
    return {"test_windows": TEST_WINDOWS, "first_test_window": test[0], "rows": rows}


def _f1(verdicts, truth: list[int]) -> float:
    return round(label_confusion([v.label == "anomalous" for v in verdicts], truth).f1, 4)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.2))
    adapted = [r for r in rows if r["labels"]]
    axis.plot([r["labels"] for r in adapted], [r["f1"] for r in adapted], marker="o", label="retrained adapter")
    axis.axhline(rows[0]["f1"], color="grey", linestyle="--", label="zero-shot (HDFS base)")
    axis.set_xscale("log")
    axis.set_xticks([r["labels"] for r in adapted], [str(r["labels"]) for r in adapted])
    axis.minorticks_off()
    axis.set_xlabel("labeled Thunderbird windows received")
    axis.set_ylabel(f"F1 on the last {TEST_WINDOWS} windows")
    axis.set_ylim(0, 1.02)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def label_to_serving(bootstrap: str, idempotent: bool, registry_root: Path, work: Path) -> dict[str, Any]:
    root = work / "serving"
    shutil.copytree(registry_root / "bases", root / "bases")
    prefix = f"bench-{os.getpid()}-{int(time.time())}"
    settings = settings_for(
        bootstrap,
        prefix,
        idempotent,
        inference={"registry": str(root), "publish_verdicts": True, "refresh_interval_s": 3600},
        trainer={"registry": str(root), "min_new_labels": 300, "check_interval_s": 1},
    )
    with gzip.open(DATA / "thunderbird" / "Thunderbird_19k.log.gz", "rt", encoding="utf-8") as f:
        lines = f.readlines()
    first, later = work / "first.log", work / "later.log"
    first.write_text("".join(lines[8000:14000]))
    later.write_text("".join(lines[14000:]))
    fmt = settings.systems[TARGET].line_format(TARGET)

    async def scenario() -> dict[str, Any]:
        await ensure_topics(settings, [*topic_specs(settings), *inference_topic_specs(settings)])
        stop = asyncio.Event()
        infer = InferenceWorker(settings, ModelHost(Registry(root)))
        with LabelStore(root / "labels.sqlite") as store:
            service = FeedbackService(settings, store)
            async with running_worker(settings):
                tasks = [asyncio.create_task(infer.run(stop)), asyncio.create_task(service.run(stop))]
                await replay(settings, replay_records(first, TARGET, fmt), TARGET)
                verdicts = []
                while len(verdicts) < 300:
                    await asyncio.sleep(1)
                    verdicts = [orjson.loads(r.value) for r in await read_records(settings, settings.topics.verdicts)]
                producer = make_producer(settings)
                await producer.start()
                for verdict in verdicts[:300]:
                    label = {"kind": "label", "window_id": verdict["window_id"], "label": verdict["truth"]}
                    last = await producer.send_and_wait(settings.topics.feedback, orjson.dumps(label))
                await producer.stop()
                # windows keep arriving while the trainer works: the new adapter's first verdict ends the clock
                feeding = asyncio.create_task(replay(settings, replay_records(later, TARGET, fmt), TARGET, rate=100))
                while True:
                    await asyncio.sleep(2)
                    records = await read_records(settings, settings.topics.verdicts)
                    new = [r for r in records if orjson.loads(r.value)["adapter_version"]]
                    if new:
                        break
                feeding.cancel()
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                decision = service.decisions[0].to_dict() if service.decisions else {}
        first_new = min(r.timestamp for r in new)
        return {
            "labels": 300,
            "label_to_serving_s": round((first_new - last.timestamp) / 1000, 1),
            "retrain_s": decision.get("seconds"),
            "decision": decision,
            "goal": "<= 300 s",
        }

    return asyncio.run(scenario())


def _plot_both(rows: list[dict[str, Any]], out: Path, docs: Path) -> None:
    """Beside the JSON and in docs/, where the write-up shows it."""
    plot(rows, out.with_name("feedback_f1.png"))
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out.with_name("feedback_f1.png"), docs / "feedback_f1.png")


def _earlier_broker_result(path: Path) -> dict[str, Any]:
    """Part 2 from the last run that measured it, marked as such, so a part-1-only run does not erase it."""
    if not path.exists():
        return {}
    earlier = orjson.loads(path.read_bytes())
    kept = {key: earlier[key] for key in ("broker", "label_to_serving") if key in earlier}
    if kept:
        kept["label_to_serving_run"] = earlier.get("label_to_serving_run", earlier.get("run", "an earlier run"))
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "feedback.json")
    parser.add_argument("--skip-broker", action="store_true", help="part 1 only; keep part 2's last result")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where the plot is copied for the write-up")
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from --out, measure nothing")
    args = parser.parse_args(argv)
    if args.plot_only:
        _plot_both(orjson.loads(args.out.read_bytes())["f1_by_labels"]["rows"], args.out, args.docs)
        return 0
    torch.set_num_threads(2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "run": time.strftime("%Y-%m-%d %H:%M"),
    }
    with tempfile.TemporaryDirectory(prefix="adaptlog-feedback-") as tmp:
        work = Path(tmp)
        trained = train_hdfs_registry(work / "registry")
        result["f1_by_labels"] = f1_by_labels(trained.registry.root, work)
        _plot_both(result["f1_by_labels"]["rows"], args.out, args.docs)
        if args.skip_broker:
            result |= _earlier_broker_result(args.out)
        else:
            from harness.broker.selection import bench_broker

            with bench_broker() as broker:
                result["broker"] = broker.describe()
                result["label_to_serving"] = label_to_serving(
                    broker.bootstrap, broker.supports_idempotence, trained.registry.root, work
                )
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
