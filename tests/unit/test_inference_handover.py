"""A pipelined loop's side of a rebalance (``stream.runtime.pipeline.Assignment``, the inference worker's): the
batch in flight settles before partitions move, nothing else fetched under the old assignment is scored, and the
next assignment is current again. The group protocol itself is exercised on a real broker in
tests/broker/test_inference_alert_restart.py."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from stream.runtime.pipeline import Assignment

WINDOWS = "windows"


def tps(*partitions: int) -> set[TopicPartition]:
    return {TopicPartition(WINDOWS, p) for p in partitions}


def test_a_revocation_waits_for_the_batch_in_flight_and_stops_every_other_batch() -> None:
    async def scenario() -> list[str]:
        events: list[str] = []
        in_flight_done = asyncio.Event()

        async def settle() -> None:
            events.append("settling")
            await in_flight_done.wait()
            events.append("settled")

        assignment = Assignment(settle=settle)
        await assignment.on_partitions_revoked(set())  # the first join revokes nothing: no wait
        await assignment.on_partitions_assigned(tps(0, 1))
        first = assignment.generation
        assert assignment.partitions == frozenset({0, 1}) and assignment.current(first)

        revocation = asyncio.create_task(assignment.on_partitions_revoked(tps(0, 1)))
        await asyncio.sleep(0.05)
        assert not revocation.done()  # the group waits while the batch in flight finishes
        assert not assignment.current(first)  # and no queued batch starts meanwhile
        events.append("in flight published and committed")
        in_flight_done.set()
        await revocation
        assert not assignment.current(first)

        await assignment.on_partitions_assigned(tps(1))
        assert assignment.partitions == frozenset({1})
        assert assignment.current(assignment.generation)
        assert not assignment.current(first)  # a batch fetched before the rebalance stays stale for good
        return events

    assert asyncio.run(scenario()) == ["settling", "in flight published and committed", "settled"]


def test_without_a_settle_hook_a_revocation_only_marks_the_hand_over() -> None:
    async def scenario() -> None:
        assignment = Assignment()
        await assignment.on_partitions_assigned(tps(0))
        await assignment.on_partitions_revoked(tps(0))
        assert assignment.revoking and not assignment.current(assignment.generation)
        await assignment.on_partitions_assigned(tps(0))  # the same partition back: a new generation
        assert assignment.generation == 2 and assignment.current(2) and not assignment.current(1)

    asyncio.run(scenario())
