"""Kafka clients built from settings, and topic creation: the one place that knows aiokafka's constructor options.

Library errors are mapped to :class:`BrokerError` here, so callers deal with our exceptions only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from stream.errors import BrokerError, ConfigError
from stream.kafka_options import TokenFileProvider
from stream.pipeline.topics import create_topics, wait_for_topics
from stream.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Snapshots of window state can hold many open sessions; they are compressed, but allow large ones. Records on the
# other topics can pass the broker's default 1 MiB too (a window of 20 lines of 64 KiB, masked: ~7 MB), so every
# topic adaptlog creates takes records up to this size, as the producer sends and the consumers fetch them.
STATE_MAX_BYTES = 64 * 1024 * 1024
RECORD_MAX_BYTES = STATE_MAX_BYTES


def connection_options(settings: Settings) -> dict[str, Any]:
    if not settings.bootstrap_servers:
        raise ConfigError("bootstrap_servers", "not set (ADAPTLOG_BOOTSTRAP_SERVERS=host:port)")
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile), str(settings.ssl_keyfile) if settings.ssl_keyfile else None
            )
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        if settings.sasl_mechanism == "OAUTHBEARER" and settings.sasl_oauth_token_file is not None:
            options["sasl_oauth_token_provider"] = TokenFileProvider(settings.sasl_oauth_token_file)
        else:
            options["sasl_plain_username"] = settings.sasl_username
            password = settings.sasl_password
            options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


class CachedPartitioner:
    """Kafka's default partitioning (murmur2 of the key), memoized per key.

    aiokafka computes murmur2 in pure Python (~4 µs a record); our keys repeat (a system name, a block id per line
    of its session), so a bounded cache of key -> partition takes that off the per-line path.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        slot = (key, len(all_partitions))
        partition = self._cache.get(slot)
        if partition is None:
            if len(self._cache) >= self._max_keys:
                self._cache.clear()  # crude but bounded; refilling costs one murmur2 per key
            partition = self._cache[slot] = DefaultPartitioner()(key, all_partitions, available)
        return partition


def make_producer(settings: Settings, **extra: Any) -> AIOKafkaProducer:
    options = connection_options(settings) | {
        "partitioner": CachedPartitioner(),
        "acks": "all",
        "enable_idempotence": settings.idempotent_producer,
        "linger_ms": 5,
        "max_batch_size": 1024 * 1024,
        "max_request_size": RECORD_MAX_BYTES,
    }
    # the operator's properties over adaptlog's defaults; what the caller builds this client for over both
    return AIOKafkaProducer(**(options | settings.producer_options | extra))


def make_consumer(settings: Settings, *topics: str, group_id: str | None, **extra: Any) -> AIOKafkaConsumer:
    options = connection_options(settings) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        # a single record may be this large: smaller fetch limits would still return it (Kafka hands over at least
        # one batch), but one at a time
        "fetch_max_bytes": RECORD_MAX_BYTES,
        "max_partition_fetch_bytes": RECORD_MAX_BYTES,
    }
    return AIOKafkaConsumer(*topics, **(options | settings.consumer_options | extra))


async def assign_from_beginning(
    consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 10.0, partitions: Collection[int] | None = None
) -> list[TopicPartition]:
    """Assign partitions of ``topic`` (all of them unless given) to a group-less consumer, at the beginning."""
    if partitions is None:
        partitions = await _partitions(consumer, topic, timeout_s)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if tps:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
    return tps


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() >= deadline:
            return set()
        await asyncio.sleep(0.2)


async def records_to_end(
    settings: Settings, topic: str, partitions: Collection[int] | None = None, timeout_s: float = 5.0
) -> AsyncIterator[ConsumerRecord]:
    """Every record now in ``topic`` (the given partitions, or all), up to the end offsets as of the start.

    An iterator, so that a reader keeping only some records (the latest checkpoint per key) never holds them all.
    """
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = await assign_from_beginning(consumer, topic, timeout_s, partitions)
        end = await consumer.end_offsets(tps) if tps else {}
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for records in batch.values():
                for record in records:
                    yield record
            remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()


def new_topic(settings: Settings, name: str, configs: dict[str, str] | None = None) -> NewTopic:
    """A topic as adaptlog creates it: ``internal_partitions`` partitions, ``replication_factor`` replicas, records
    up to the producer's ``max_request_size`` (the broker's default 1 MiB refused larger ones, and the stage that
    wrote them failed its checkpoint and restarted into the same record forever)."""
    topic_configs = {"max.message.bytes": str(RECORD_MAX_BYTES)} | (configs or {})
    return NewTopic(name, settings.internal_partitions, settings.replication_factor, topic_configs=topic_configs)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Every topic the stream workers write, with configs: the internal ones partitioned for scale-out."""
    t = settings.topics
    compacted = {
        "cleanup.policy": "compact",
        "max.message.bytes": str(STATE_MAX_BYTES),
        "segment.ms": str(10 * 60 * 1000),
        "min.cleanable.dirty.ratio": "0.1",
    }
    internal = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    specs = [new_topic(settings, name, internal) for name in (t.lines, t.sessions)]
    specs.append(new_topic(settings, t.state, compacted))
    specs += [new_topic(settings, name) for name in (*settings.inputs, t.windows, t.deadletter)]
    return specs


def inference_topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics the inference worker reads and writes."""
    t = settings.topics
    return [new_topic(settings, name) for name in (t.windows, t.alerts, t.verdicts, t.model_updates, t.deadletter)]


def trainer_topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics the trainer service reads (windows, labeled feedback) and writes (model-updates, dead letters)."""
    t = settings.topics
    names = {t.windows, t.feedback, t.model_updates, t.deadletter, *settings.trainer.feedback_topics}
    return [new_topic(settings, name) for name in sorted(names)]


def all_topic_specs(settings: Settings) -> list[NewTopic]:
    """Every topic of a deployment (`adaptlog topics`, the chart's topics Job), one spec per name."""
    specs = [*topic_specs(settings), *inference_topic_specs(settings), *trainer_topic_specs(settings)]
    return list({spec.name: spec for spec in reversed(specs)}.values())[::-1]


async def ensure_topics(settings: Settings, specs: Iterable[NewTopic]) -> None:
    """Create missing topics (existing ones are left as they are) and wait until every partition has a leader.

    Retries while the broker comes up. Raises BrokerError when the broker refuses or never shows the topics.
    """
    # one spec per name (the first wins): callers combine lists (stream + inference topics), and Kafka refuses a
    # CreateTopics request that names a topic twice
    specs = list({spec.name: spec for spec in reversed(list(specs))}.values())[::-1]
    admin = AIOKafkaAdminClient(**connection_options(settings))
    try:
        await _retry(admin.start, "connect admin client")
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        created = await create_topics(admin, missing, wait_s=30.0) if missing else set()
        if created:
            log.info("created topics %s", ", ".join(sorted(created)))
        # Topics someone else created (a producer's auto-creation, an operator) keep their partition count.
        await wait_for_topics(admin, {spec.name: 1 for spec in specs if spec.name not in created}, wait_s=30.0)
    except (KafkaError, TimeoutError) as exc:
        raise BrokerError(f"cannot create topics: {exc}") from exc
    finally:
        await admin.close()


async def _retry(action: Callable[[], Awaitable[T]], what: str, attempts: int = 10, delay_s: float = 0.5) -> T:
    for attempt in itertools.count(1):
        try:
            return await action()
        except KafkaError as exc:
            if attempt >= attempts:
                raise BrokerError(f"{what}: {exc}") from exc
            log.warning("%s failed (%s), retrying in %.1fs", what, exc, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)
    raise BrokerError(f"{what}: gave up")  # unreachable: count() never ends; keeps type checkers content
