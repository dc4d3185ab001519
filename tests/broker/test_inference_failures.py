"""The inference worker when something fails, on a real broker: a failure in the model loop while a backlog waits
stops ``run()`` at once with nothing committed (a worker that hung instead would keep its health checks green and
its partitions forever), after the in-process retries ``policy.SCORING`` gives running out of device memory; a
batch that runs out of memory for a while is scored once it gets the memory, and committed only then."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
import torch
from aiokafka import TopicPartition

from harness.inference import OutOfMemoryHost, inference_settings, produce_windows, windows_of
from stream.inference.model_host import ModelHost
from stream.inference.worker import STAGE, InferenceWorker
from stream.model.registry import Registry
from stream.pipeline.kafka_clients import ensure_topics, inference_topic_specs, make_consumer
from stream.records import Verdict, Window
from stream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.slow]


class OutOfMemoryInBacklog:
    """The GPU runs out of memory once the fetch loop waits behind a full queue of batches (a backlog)."""

    def __init__(self, worker: InferenceWorker) -> None:
        self.worker = worker
        worker.host.score = self  # type: ignore[method-assign]

    def __call__(self, windows: Sequence[Window]) -> list[Verdict]:
        deadline = time.monotonic() + 60
        while not self.worker.loop.queue.full():
            assert time.monotonic() < deadline, "no backlog formed"
            time.sleep(0.02)
        raise torch.OutOfMemoryError("CUDA out of memory (raised by the test)")


async def committed_offsets(settings: Settings) -> dict[int, int | None]:
    consumer = make_consumer(settings, group_id=f"{settings.group_prefix}-{STAGE}")
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topics.windows, p) for p in range(settings.internal_partitions)]
        return {tp.partition: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


def test_a_failure_in_the_model_loop_during_a_backlog_stops_run_promptly(kafka_broker, topic_prefix, hdfs_registry):
    settings = inference_settings(
        kafka_broker, topic_prefix, hdfs_registry.registry.root, max_batch=4, max_pending_batches=1
    )
    windows = windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:80])

    async def scenario() -> tuple[bool, BaseException | None, dict[int, int | None]]:
        nonlocal worker
        await ensure_topics(settings, inference_topic_specs(settings))
        await produce_windows(settings, windows)
        worker = InferenceWorker(settings, ModelHost(Registry(settings.inference.registry)))
        OutOfMemoryInBacklog(worker)
        task = asyncio.create_task(worker.run(asyncio.Event()))
        done, _ = await asyncio.wait([task], timeout=60)
        finished = bool(done)
        while not task.done():  # it hung: unblock it (drain the queue) so that the test fails instead of hanging
            while not worker.loop.queue.empty():
                worker.loop.queue.get_nowait()
            await asyncio.sleep(0.05)
        return finished, task.exception(), await committed_offsets(settings)

    worker: InferenceWorker | None = None
    finished, error, committed = asyncio.run(scenario())
    assert finished, "run() did not return within 60 s of the model loop failing"
    assert isinstance(error, torch.OutOfMemoryError)  # the worker exits non-zero, and its restart replays
    assert set(committed.values()) == {None}  # nothing was committed: every window is fetched again
    assert worker is not None and worker.counts["scoring_retries"] == 3  # SCORING's 4 tries, then it stopped


def test_a_batch_out_of_device_memory_for_a_while_is_scored_in_process_and_committed_only_then(
    kafka_broker, topic_prefix, hdfs_registry
):
    settings = inference_settings(kafka_broker, topic_prefix, hdfs_registry.registry.root, max_batch=8)
    windows = windows_of(hdfs_registry.dataset, hdfs_registry.split.test[:40])
    seen_at_failures: list[dict[int, int | None]] = []

    async def scenario() -> tuple[InferenceWorker, OutOfMemoryHost, dict[int, int | None]]:
        await ensure_topics(settings, inference_topic_specs(settings))
        await produce_windows(settings, windows)
        loop = asyncio.get_running_loop()

        def look(_: Sequence[Window]) -> None:  # on the model thread, while the worker waits for the model
            seen_at_failures.append(asyncio.run_coroutine_threadsafe(committed_offsets(settings), loop).result(30))

        host = OutOfMemoryHost(Registry(settings.inference.registry), 2, before_failure=look)
        worker = InferenceWorker(settings, host)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 90
        committed: dict[int, int | None] = {}
        while time.monotonic() < deadline and not task.done():
            committed = await committed_offsets(settings)
            if sum(offset or 0 for offset in committed.values()) >= len(windows):
                break
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 60)
        return worker, host, committed

    worker, host, committed = asyncio.run(scenario())
    # while the first batch was out of memory, nothing of it (nor anything after it) was committed
    assert len(seen_at_failures) == 2 and all(set(seen.values()) == {None} for seen in seen_at_failures)
    assert worker.counts["scoring_retries"] == 2
    assert sum(offset or 0 for offset in committed.values()) == len(windows)  # every window committed in the end
    assert worker.counts["windows_in"] == len(windows) and worker.counts["dead_letters"] == 0
    verdicts = sum(n for name, n in worker.counts.items() if name.startswith("verdicts_"))
    assert verdicts == len(windows)  # each scored, once: the retried batch was neither lost nor dead-lettered
    assert host.counts["windows_scored"] + host.counts["windows_reused"] == len(windows)
