"""A stream worker: the three stages (ingest, parse, session) in one process, sharing one producer.

Run several workers (``adaptlog run`` on several hosts or pods) to scale out: each stage is its own consumer group, so
Kafka spreads each topic's partitions over the workers, and a partition's checkpoint moves with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from stream.decode import Decoder
from stream.errors import StateError
from stream.ops_http import BuildInfoCollector, OpsServer
from stream.pipeline import ingest_stage, parse_stage, session_stage
from stream.pipeline.checkpoint import Checkpoint, CheckpointStore
from stream.pipeline.kafka_clients import ensure_topics, make_producer, topic_specs
from stream.pipeline.metrics import StageCountsCollector
from stream.pipeline.runner import ProcessorFactory, StageRunner
from stream.settings import Settings

log = logging.getLogger(__name__)
STAGES = (ingest_stage.STAGE, parse_stage.STAGE, session_stage.STAGE)


def whole_state(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    """The state of a stage that checkpoints it whole (its head; a changelog of entries would be a bug)."""
    if checkpoint is None:
        return None
    if checkpoint.entries:
        raise StateError(f"a whole-state stage's checkpoint holds {len(checkpoint.entries)} changelog entries")
    return checkpoint.state


def build_runners(
    settings: Settings,
    producer: AIOKafkaProducer,
    checkpoints: CheckpointStore,
    session_partitions: int,
    lines_partitions: int = 0,
) -> list[StageRunner]:
    decoder = Decoder(settings)
    topics = settings.topics
    # (stage, input topics, processor per assigned partition, whether it keeps checkpointed state)
    stages: list[tuple[str, tuple[str, ...], ProcessorFactory, bool]] = [
        (
            ingest_stage.STAGE,
            settings.inputs,
            lambda tp, _: ingest_stage.IngestPartition(settings, decoder, lines_partitions),
            False,
        ),
        (
            parse_stage.STAGE,
            (topics.lines,),
            lambda tp, checkpoint: parse_stage.ParsePartition(settings, whole_state(checkpoint), session_partitions),
            True,
        ),
        (
            session_stage.STAGE,
            (topics.sessions,),
            lambda tp, checkpoint: session_stage.SessionPartition(settings, checkpoint, lines_partitions),
            True,
        ),
    ]
    return [
        StageRunner(stage, settings, inputs, factory, producer, checkpoints, stateful=stateful)
        for stage, inputs, factory, stateful in stages
    ]


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    report_every_s: float = 10.0,
    registry: CollectorRegistry | None = None,
    ops: OpsServer | None = None,
) -> Counter[str]:
    """Run until ``stop`` is set (then checkpoint and leave the groups cleanly). Returns the counts per stage.

    With ``registry``, the stages' counts are exported to it (the CLI serves it on ``metrics_port``); with ``ops``,
    its /readyz answers ready once every stage has had its first assignment."""
    await ensure_topics(settings, topic_specs(settings))
    producer = make_producer(settings)
    await producer.start()
    # Lines are routed to sessions partitions by key in batches, so the parse stage needs the real partition count;
    # and a keyed system's lines to lines partitions by Drain key, so the ingest stage needs that one's (and the
    # session stage too: a merge waits for a mark from each of them).
    session_partitions = len(await producer.partitions_for(settings.topics.sessions))
    lines_partitions = len(await producer.partitions_for(settings.topics.lines))
    checkpoints = CheckpointStore(settings, producer)
    runners = build_runners(settings, producer, checkpoints, session_partitions, lines_partitions)
    if registry is not None:
        registry.register(StageCountsCollector(runners, settings.group_prefix))
        registry.register(BuildInfoCollector("stream"))
    if ops is not None:
        ops.watch_readiness(lambda: all(runner.assigned for runner in runners))
    reporter = asyncio.create_task(_report(runners, stop, report_every_s))
    try:
        tasks = [asyncio.create_task(runner.run(stop), name=runner.stage) for runner in runners]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                stop.set()  # a stage crashed (a bug or a lost broker): stop the others cleanly, then fail loudly
                await asyncio.gather(*tasks, return_exceptions=True)
                raise task.exception()  # type: ignore[misc]
    finally:
        reporter.cancel()
        await producer.stop()
    return _totals(runners)


def _totals(runners: list[StageRunner]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for runner in runners:
        totals.update({f"{runner.stage}.{name}": count for name, count in runner.counts.items()})
    return totals


async def _report(runners: list[StageRunner], stop: asyncio.Event, every_s: float) -> None:
    while not stop.is_set():
        await asyncio.sleep(every_s)
        log.info("progress %s", dict(sorted(_totals(runners).items())))
