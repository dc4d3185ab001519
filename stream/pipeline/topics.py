"""Topic creation that fails loudly and returns only once the topics are usable.

aiokafka's ``create_topics`` returns per-topic errors instead of raising, and Kafka answers CreateTopics
when the controller has committed the topic -- the broker's metadata cache catches up a moment later,
so a Metadata/describe call straight after can still miss the topic (seen as a flaky test under load).
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

_POLL_S = 0.1


async def create_topics(admin: AIOKafkaAdminClient, topics: list[NewTopic], *, wait_s: float = 15.0) -> set[str]:
    """Create the topics (one that already exists is fine) and wait until every partition has a leader.

    Returns the names this call created. A topic that already existed (perhaps auto-created a moment ago by a
    producer) keeps its own partition count, so only its presence is awaited.
    """
    response = await admin.create_topics(topics)
    created: set[str] = set()
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code == 0:
            created.add(name)
            continue
        if code == TopicAlreadyExistsError.errno:
            continue
        message = entry[2] if len(entry) > 2 else None
        raise for_code(code)(f"create topic {name}: {message}")
    wanted = {t.name: t.num_partitions if t.name in created else 1 for t in topics}
    await wait_for_topics(admin, wanted, wait_s=wait_s)
    return created


async def wait_for_topics(admin: AIOKafkaAdminClient, partitions: dict[str, int], *, wait_s: float) -> None:
    """Poll metadata until each topic shows at least the given number of partitions, all with a leader."""
    if not partitions:
        return  # describe_topics([]) would describe every topic in the cluster
    deadline = time.monotonic() + wait_s
    while True:
        described = await admin.describe_topics(list(partitions))
        pending = [d["topic"] for d in described if not _usable(d, partitions.get(d["topic"], 1))]
        if not pending and len(described) >= len(partitions):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible with leaders after {wait_s:.0f}s: {pending or list(partitions)}")
        await asyncio.sleep(_POLL_S)


def _usable(described: dict[str, object], wanted: int) -> bool:
    parts = described.get("partitions")
    if not isinstance(parts, list):
        return False
    return (
        described.get("error_code") == 0
        and len(parts) >= max(wanted, 1)
        and all(p.get("error_code") == 0 and p.get("leader", -1) >= 0 for p in parts)
    )
