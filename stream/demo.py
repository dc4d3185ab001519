"""``adaptlog demo``: the whole product on one machine, with nothing to set up.

1. Starts the embedded broker (Tansu) unless a bootstrap server is configured (then it uses topics with a fresh
   ``demo-`` prefix, so it never mixes with real traffic).
2. Pretrains a TransLog source model on a bundled HDFS slice, or reuses it from the local registry
   (``inference.registry``, default ``./.adaptlog/registry``), and tunes a BGL adapter on the first half of a
   bundled BGL slice with at most 30 labeled anomalous windows (``stream.demo_models``).
3. Runs the stream workers and the inference worker, replays HDFS_5k (the source system: scored by the base) and the
   second half of the BGL slice (the target: scored by its adapter) with a few bad records among them, and prints
   alerts as they arrive, with the templates that drove them.
4. Prints a summary: windows per system, precision / recall / F1 of the verdicts against the replayed labels, and
   the dead letters.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from stream.demo_models import BASE_NAME, TARGET_SYSTEM, prepare_models
from stream.inference.worker import InferenceWorker, open_host
from stream.model.quality import label_confusion
from stream.pipeline.kafka_clients import (
    assign_from_beginning,
    ensure_topics,
    inference_topic_specs,
    make_consumer,
    make_producer,
    topic_specs,
)
from stream.pipeline.worker import run_worker
from stream.records import ANOMALOUS
from stream.replay import read_block_labels, replay, replay_records
from stream.settings import Settings, SystemSettings, Topics
from stream.tail import read_json_records

BAD_RECORDS = [
    (b"\xff\xfe not UTF-8", [("system", b"bgl")]),
    (b'{"system": "bgl", "message": "truncated JSON', []),
    (b"a line from a system nobody configured", [("system", b"mainframe")]),
    (b'{"system": "hdfs", "message": "081109 203518 143 INFO dfs.DataNode: x", "ts": "not a time"}', []),
]


def _samples() -> Path:
    return Path(str(resources.files("stream.samples")))


def demo_settings(settings: Settings, bootstrap: str | None, idempotent: bool) -> Settings:
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    topics = Topics.prefixed(prefix)
    systems = dict(settings.systems)
    # Close the demo's last HDFS sessions soon after the replay ends (production uses a longer idle timeout).
    systems["hdfs"] = systems["hdfs"].model_copy(update={"window": {**systems["hdfs"].window, "idle_timeout_ms": 3000}})
    systems.setdefault("bgl", SystemSettings(format="bgl"))
    update: dict[str, Any] = {
        "topics": topics,
        "group_prefix": prefix,
        "systems": systems,
        "checkpoint_interval_ms": 1000,
    }
    if bootstrap is not None:
        update |= {"bootstrap_servers": bootstrap, "idempotent_producer": idempotent}
    return settings.model_copy(update=update)


async def run_demo(settings: Settings, timeout_s: float = 180.0) -> int:
    with ExitStack() as stack:
        if settings.bootstrap_servers:
            print(f"demo: using the configured broker {settings.bootstrap_servers}", flush=True)
            settings = demo_settings(settings, None, settings.idempotent_producer)
        else:
            from stream.embedded_broker import start_tansu

            print("demo: no ADAPTLOG_BOOTSTRAP_SERVERS set, starting the embedded broker (Tansu)...", flush=True)
            broker = start_tansu()
            stack.callback(broker.stop)
            print(f"demo: {broker.kind} at {broker.bootstrap}", flush=True)
            settings = demo_settings(settings, broker.bootstrap, broker.supports_idempotence)
        return await _demo(settings, timeout_s)


async def _demo(settings: Settings, timeout_s: float) -> int:
    started = time.monotonic()
    samples = _samples()
    with tempfile.TemporaryDirectory(prefix="adaptlog-demo-") as tmp:
        registry = settings.inference.registry or Path.cwd() / ".adaptlog" / "registry"
        models = prepare_models(samples, registry, Path(tmp))
        inference = settings.inference.model_copy(
            update={"registry": registry, "base": BASE_NAME, "publish_verdicts": True, "max_wait_ms": 100}
        )
        settings = settings.model_copy(update={"inference": inference})
        await ensure_topics(settings, [*topic_specs(settings), *inference_topic_specs(settings)])
        stop = asyncio.Event()
        host = open_host(settings)  # as `adaptlog infer` opens it: every inference setting applies
        tasks = [
            asyncio.create_task(run_worker(settings, stop, report_every_s=30)),
            asyncio.create_task(InferenceWorker(settings, host).run(stop)),
            asyncio.create_task(_print_alerts(settings, stop)),
        ]
        hdfs_fmt = settings.systems["hdfs"].line_format("hdfs")
        bgl_fmt = settings.systems[TARGET_SYSTEM].line_format(TARGET_SYSTEM)
        labels = read_block_labels(samples / "HDFS_5k_block_labels.csv")
        sent = await replay(settings, replay_records(samples / "HDFS_5k.log.gz", "hdfs", hdfs_fmt, labels), "hdfs")
        bgl_lines = await replay(settings, replay_records(models.replay_file, TARGET_SYSTEM, bgl_fmt), TARGET_SYSTEM)
        sent += bgl_lines
        await _send_bad_records(settings)
        expected = len(labels) + bgl_lines // 20  # HDFS_5k: one session per block; BGL: tumbling windows of 20
        print(f"demo: replayed {sent} lines and {len(BAD_RECORDS)} bad records; scoring {expected} windows", flush=True)
        verdicts: list[dict[str, Any]] = []
        while time.monotonic() - started < timeout_s and len(verdicts) < expected:
            await asyncio.sleep(3)
            verdicts = await read_json_records(settings, settings.topics.verdicts)
            print(f"demo: {len(verdicts)}/{expected} windows have a verdict", flush=True)
        windows = await read_json_records(settings, settings.topics.windows)
        dead = await read_json_records(settings, settings.topics.deadletter)
        stop.set()
        await asyncio.gather(*tasks)
    _print_summary(windows, verdicts, dead, sent, time.monotonic() - started)
    if len({v["window_id"] for v in verdicts}) < expected:
        print(f"demo: FAILED, only {len(verdicts)} of {expected} windows scored in {timeout_s:.0f}s", file=sys.stderr)
        return 1
    return 0


async def _print_alerts(settings: Settings, stop: asyncio.Event) -> None:
    """Print alerts as they arrive, with the templates that drove them."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        await assign_from_beginning(consumer, settings.topics.alerts)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    print(_alert_text(orjson.loads(record.value)), flush=True)
    finally:
        await consumer.stop()


def _alert_text(alert: dict[str, Any]) -> str:
    verdict = alert.get("verdict") or {}
    model = (verdict.get("adapter_version") and f"adapter {verdict['adapter_version']}") or "base model"
    lines = [
        f"ALERT {alert['status']:<8} {alert['system']:<5} x{alert['count']:<3} score {alert['last_score']:.2f} "
        f"(threshold {verdict.get('threshold', 0):.2f}, {model}) window {verdict.get('window_id', '')[:12]}"
    ]
    for cause in verdict.get("explanation", []):
        offsets = ",".join(str(o) for o in cause["offsets"][:5])
        lines.append(f"      {cause['weight']:+.2f}  lines {offsets:<10} {cause['template'][:90]}")
    return "\n".join(lines)


async def _send_bad_records(settings: Settings) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for value, headers in BAD_RECORDS:
            await producer.send_and_wait(settings.topics.logs, value, headers=headers)
    finally:
        await producer.stop()


def _print_summary(
    windows: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    dead: list[dict[str, Any]],
    sent: int,
    elapsed_s: float,
) -> None:
    print("\n=== adaptlog demo: summary ===")
    print(f"{sent} lines replayed; {elapsed_s:.0f}s in all (training, startup, replay, windowing and scoring)")
    by_system: Counter[tuple[str, str]] = Counter((w["system"], w["policy"]) for w in windows)
    for (system, policy), count in sorted(by_system.items()):
        mine = [w for w in windows if w["system"] == system]
        lines = sum(len(w["lines"]) for w in mine)
        templates = len({line["template_id"] for w in mine for line in w["lines"]})
        print(f"  {system:<8} {policy:<15} {count:>4} windows, {lines:>5} lines, {templates:>3} templates")
    latest = {v["window_id"]: v for v in verdicts}  # at least once: a repeat is the same verdict again
    print("Verdicts against the replayed labels:")
    for system in sorted({v["system"] for v in latest.values()}):
        mine = [v for v in latest.values() if v["system"] == system]
        counts = label_confusion([v["label"] == ANOMALOUS for v in mine], [v["truth"] == ANOMALOUS for v in mine])
        served = sorted({(v["adapter_version"] and f"adapter {v['adapter_version']}") or "base model" for v in mine})
        print(
            f"  {system:<8} {len(mine):>4} windows ({counts.tp + counts.fn} anomalous): precision "
            f"{counts.precision:.3f} recall {counts.recall:.3f} F1 {counts.f1:.3f}  "
            f"[{', '.join(served)}, model {mine[0]['model']}]"
        )
    print(f"{len(dead)} dead letters:")
    for letter in dead:
        print(f"  {letter['topic']}[{letter['partition']}]@{letter['offset']} {letter['stage']}: {letter['reason']}")
