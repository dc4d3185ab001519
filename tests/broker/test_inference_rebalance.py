"""A rebalance in the middle of a batch, on a real broker: the worker losing partitions finishes the batch in
flight (published and committed) before the group moves them, and leaves the batches it fetched behind it to the
partitions' new owners. Every window then gets exactly one verdict, though at-least-once would allow repeats."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Sequence

import pytest
from aiokafka.partitioner import DefaultPartitioner

from harness.broker.running import RunningBroker
from harness.inference import inference_settings, produce_windows, running_inference, windows_of
from harness.streaming import read_topic
from stream.inference.worker import InferenceWorker
from stream.pipeline.kafka_clients import ensure_topics, inference_topic_specs
from stream.records import Verdict, Window

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def systems_on_every_partition(partitions: int) -> list[str]:
    """System names whose windows (keyed by system) land on each windows partition, one per partition."""
    chosen: dict[int, str] = {}
    for n in range(1000):
        name = f"hdfs-{n}"
        chosen.setdefault(DefaultPartitioner()(name.encode(), list(range(partitions)), list(range(partitions))), name)
        if len(chosen) == partitions:
            return [chosen[p] for p in range(partitions)]
    raise AssertionError("no names found for every partition")


class GatedScoring:
    """Holds the worker's second batch inside the model until released, so a rebalance can start mid-batch."""

    def __init__(self, worker: InferenceWorker) -> None:
        self._score = worker.host.score
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        worker.host.score = self  # type: ignore[method-assign]

    def __call__(self, windows: Sequence[Window]) -> list[Verdict]:
        self.calls += 1
        if self.calls == 2:
            self.entered.set()
            assert self.release.wait(60), "the gated batch was never released"
        return self._score(windows)


async def until(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "hold_s",
    [
        1.0,
        # longer than the session timeout (10 s), which aiokafka takes for the rebalance timeout unless told
        # otherwise: the group must still wait for the batch in flight (REBALANCE_TIMEOUT_MS)
        15.0,
    ],
)
def test_a_rebalance_mid_batch_settles_the_batch_and_hands_the_rest_over(
    kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry, hold_s: float
) -> None:
    settings = inference_settings(kafka_broker, topic_prefix, hdfs_registry.registry.root, max_batch=8)
    systems = systems_on_every_partition(settings.internal_partitions)
    test = hdfs_registry.split.test[:240]
    windows = [w for i, system in enumerate(systems) for w in windows_of(hdfs_registry.dataset, test[i::4], system)]

    async def scenario() -> tuple[list[dict], Counter[str], Counter[str]]:
        await ensure_topics(settings, inference_topic_specs(settings))
        async with running_inference(settings) as first:
            gate = GatedScoring(first)
            await produce_windows(settings, windows)
            await asyncio.to_thread(gate.entered.wait, 60)  # the second batch is in the model now
            async with running_inference(settings) as second:
                # the group asks the first worker to give partitions up; it waits for its batch in flight
                await until(lambda: first.loop.assignment.revoking, "the first worker is revoking")
                await asyncio.sleep(hold_s)  # the revocation is really waiting on the batch, not done already
                assert first.loop.assignment.revoking
                gate.release.set()
                await until(lambda: first.partitions and second.partitions, "both workers hold partitions")
                verdicts = await read_topic(settings, settings.topics.verdicts, until=len(windows), timeout_s=120)
                return verdicts, first.counts, second.counts

    verdicts, first, second = asyncio.run(scenario())
    ids = Counter(v["window_id"] for v in verdicts)
    assert set(ids) == {w.window_id for w in windows}  # every window got a verdict
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]  # and no window two
    assert first["batches_settled_on_revoke"] == 1  # the gated batch was committed before the partitions moved
    assert first["windows_handed_over"] > 0  # batches fetched behind it were left to the new owners
    assert second["windows_in"] > 0
    print(f"mid-batch rebalance: first worker {dict(first)}, second {dict(second)}")
