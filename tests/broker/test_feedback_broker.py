"""The feedback loop end to end on a real broker, with the stream workers, the inference worker and the trainer
service running: Thunderbird starts zero-shot on the HDFS base, labels for its windows arrive on ``feedback``, a new
adapter is published and picked up by the running inference worker, and F1 on later windows rises above zero-shot.
A restarted trainer keeps every label and does not retrain on labels it has already used."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from harness.broker.running import RunningBroker
from harness.streaming import DATA, read_topic, running_worker, settings_for
from stream.inference.model_host import ModelHost
from stream.inference.worker import InferenceWorker
from stream.model.quality import label_confusion
from stream.model.registry import Registry
from stream.pipeline.kafka_clients import ensure_topics, inference_topic_specs, make_producer, topic_specs
from stream.records import ANOMALOUS, Window
from stream.replay import replay, replay_records
from stream.settings import Settings
from trainer.feedback.service import FeedbackService
from trainer.feedback.store import LabelStore

pytestmark = [pytest.mark.broker, pytest.mark.slow]
TARGET = "thunderbird"
# Thunderbird_19k's alerts start near line 9,200 (one node, dn30): both parts are taken after line 8,000
START = 8000
FIRST = 6000  # lines replayed before any label: 300 windows whose labels train the adapter
LATER = 5000  # lines replayed after the adapter is published: 250 windows to judge it on


@asynccontextmanager
async def running(coroutine) -> AsyncIterator[asyncio.Task]:
    stop = asyncio.Event()
    task = asyncio.create_task(coroutine(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 300)


async def send_labels(settings: Settings, verdicts: list[dict]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for verdict in verdicts:
            label = {"kind": "label", "window_id": verdict["window_id"], "label": verdict["truth"], "by": "test"}
            await producer.send(settings.topics.feedback, orjson.dumps(label))
        await producer.send(settings.topics.feedback, b'{"kind": "label", "window_id": 7}')  # malformed
        await producer.flush()
    finally:
        await producer.stop()


def split_log(tmp: Path) -> tuple[Path, Path]:
    with gzip.open(DATA / "thunderbird" / "Thunderbird_19k.log.gz", "rt", encoding="utf-8") as f:
        lines = f.readlines()
    first, later = tmp / "first.log", tmp / "later.log"
    first.write_text("".join(lines[START : START + FIRST]))
    later.write_text("".join(lines[START + FIRST : START + FIRST + LATER]))
    return first, later


def f1(verdicts: list[dict]) -> float:
    return label_confusion([v["label"] == ANOMALOUS for v in verdicts], [v["truth"] == ANOMALOUS for v in verdicts]).f1


def test_labels_on_feedback_publish_an_adapter_that_inference_picks_up_and_a_restart_keeps_them(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry, tmp_path: Path
) -> None:
    shutil.copytree(hdfs_registry.registry.root / "bases", tmp_path / "registry" / "bases")
    registry = Registry(tmp_path / "registry")
    settings = settings_for(
        kafka_broker.bootstrap,
        topic_prefix,
        kafka_broker.supports_idempotence,
        inference={"registry": str(registry.root), "publish_verdicts": True, "refresh_interval_s": 3600},
        trainer={"registry": str(registry.root), "min_new_labels": FIRST // 20, "check_interval_s": 1},
    )
    first, later = split_log(tmp_path)
    fmt = settings.systems[TARGET].line_format(TARGET)
    db = registry.root / "labels.sqlite"

    async def scenario() -> tuple[list[dict], list[dict], FeedbackService]:
        await ensure_topics(settings, [*topic_specs(settings), *inference_topic_specs(settings)])
        infer = InferenceWorker(settings, ModelHost(Registry(registry.root)))
        with LabelStore(db) as store:
            service = FeedbackService(settings, store)
            async with running_worker(settings), running(infer.run), running(service.run) as trainer:
                await replay(settings, replay_records(first, TARGET, fmt), TARGET)
                zero_shot = await read_topic(settings, settings.topics.verdicts, until=FIRST // 20, timeout_s=180)
                assert all(v["zero_shot"] for v in zero_shot)
                await send_labels(settings, zero_shot)
                deadline = time.monotonic() + 600
                while registry.pointer("adapter", TARGET) is None and time.monotonic() < deadline:
                    if trainer.done():
                        trainer.result()  # the service failed: raise its error here
                    await asyncio.sleep(2)
                assert registry.pointer("adapter", TARGET) is not None, service.decisions
                await asyncio.sleep(3)  # the announcement reaches the inference worker
                await replay(settings, replay_records(later, TARGET, fmt), TARGET)
                total = (FIRST + LATER) // 20
                verdicts = await read_topic(settings, settings.topics.verdicts, until=total, timeout_s=180)
            windows = await read_topic(settings, settings.topics.windows, until=total, timeout_s=60)
        return windows, verdicts, service

    windows, verdicts, service = asyncio.run(scenario())
    adapted = [v for v in verdicts if v["adapter_version"] == "v0001"]
    assert len(adapted) >= LATER // 20 - 1  # the later windows are scored by the published adapter
    # zero-shot on the same later windows: the base alone, from a registry without the adapter
    shutil.copytree(registry.root / "bases", tmp_path / "bases-only" / "bases")
    scored = {v["window_id"] for v in adapted}
    later_windows = [Window.from_dict(w) for w in windows if w["window_id"] in scored]
    zero_shot = [v.to_dict() for v in ModelHost(Registry(tmp_path / "bases-only")).score(later_windows)]
    print(f"decision: {service.decisions[0].to_dict()}")
    print(f"thunderbird F1 on {len(adapted)} later windows: zero-shot {f1(zero_shot):.3f} -> adapter {f1(adapted):.3f}")
    assert f1(adapted) > f1(zero_shot) + 0.1
    assert service.counts["dead_letters"] == 1 and service.counts["published"] == 1

    async def restart() -> FeedbackService:
        with LabelStore(db) as store:
            again = FeedbackService(settings, store)
            async with running(again.run):
                await asyncio.sleep(6)  # several checks: nothing is due
            assert store.counts(TARGET)["total"] == FIRST // 20
            assert store.counts(TARGET)["unused"] == 0
        return again

    again = asyncio.run(restart())
    assert again.decisions == []  # no retrain on labels already used
