"""Offset commits: past the records a loop has stored or produced, within a timeout, refused ones skipped.

One policy for every loop that commits (the stream stages, the inference worker, the feedback service, the
notifier): a commit the group refuses because it rebalanced meanwhile, or that takes longer than ``timeout_s``, is
logged and skipped (``policy.COMMIT``), not raised. Every loop has stored or produced its records before it commits,
so the partition's next owner replays from the last commit (at least once) and nothing is lost. The timeout keeps a
commit racing a rebalance from holding the lock the rebalance listener waits for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from aiokafka import TopicPartition

from stream.runtime.dead_letters import Position
from stream.runtime.policy import COMMIT, Action

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 10.0


class Committer(Protocol):
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


def offsets_after(records: Iterable[Position]) -> dict[TopicPartition, int]:
    """The offsets that commit past ``records``: each partition's highest offset + 1."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


async def commit_offsets(
    consumer: Committer, offsets: dict[TopicPartition, int], stage: str, timeout_s: float = COMMIT_TIMEOUT_S
) -> bool:
    """Commit ``offsets`` within ``timeout_s``; whether they were committed (True when there were none). What
    ``policy.COMMIT`` skips is logged and answered False; anything else is raised."""
    if not offsets:
        return True
    try:
        await asyncio.wait_for(consumer.commit(offsets), timeout=timeout_s)
    except Exception as exc:
        if COMMIT.decide(exc) is not Action.SKIP:
            raise
        log.warning("%s: offset commit skipped (%s)", stage, exc or type(exc).__name__)
        return False
    return True
