"""Scoring that runs out of device memory is retried in process (``policy.SCORING``): the same batch, after the
policy's backoff, each retry logged and counted; when the attempts are used up the error is raised (the worker
stops with the batch uncommitted). Real registry, real small TransLog behind a ModelHost that runs out of memory a
set number of times (harness.inference.OutOfMemoryHost), the worker's own scoring."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import orjson
import pytest
import torch
from aiokafka.structs import ConsumerRecord

from harness.inference import OutOfMemoryHost, small_registry, stream_window
from stream.inference.model_host import ModelHost
from stream.inference.worker import HANDOVER_WAIT_S, InferenceWorker
from stream.records import Window, encode
from stream.runtime.policy import SCORING, Action, Backoff, ErrorPolicy
from stream.runtime.retry import retrying
from stream.settings import InferenceSettings, Settings

RECEIVING = "Receiving block <*> src: <*> dest: <*>"
TERMINATING = "PacketResponder <*> for block <*> terminating"
# SCORING's rules with a backoff short enough for a unit test
FAST = ErrorPolicy("scoring-fast", SCORING.rules, backoff=Backoff(first_s=0.01, max_s=0.04, attempts=4))


def record(value: bytes, offset: int) -> ConsumerRecord:
    return ConsumerRecord("windows", 0, offset, 0, 0, None, value, None, 0, len(value), ())


def windows() -> list[Window]:
    return [stream_window("hdfs", [RECEIVING] * (n + 1) + [TERMINATING], key=f"w{n}") for n in range(3)]


def score(worker: InferenceWorker, batch: list[Window]):
    decoded = [(record(encode(w), n), w) for n, w in enumerate(batch)]
    try:
        return asyncio.run(worker._score(decoded))
    finally:
        worker._executor.shutdown()


def make_worker(tmp_path, failures: int) -> tuple[InferenceWorker, OutOfMemoryHost]:
    registry, _ = small_registry(tmp_path / "registry")
    settings = Settings(inference=InferenceSettings(registry=str(registry.root), publish_verdicts=True))
    host = OutOfMemoryHost(registry, failures, device="cpu")
    return InferenceWorker(settings, host, scoring=FAST), host


def test_a_batch_out_of_memory_twice_is_scored_whole_on_the_third_try(tmp_path, caplog):
    worker, host = make_worker(tmp_path, failures=2)
    batch = windows()
    with caplog.at_level(logging.WARNING, logger="stream.runtime.retry"):
        scored, letters = score(worker, batch)
    assert letters == []
    assert [verdict.window_id for _, verdict in scored] == [w.window_id for w in batch]
    assert [r.offset for r, _ in scored] == [0, 1, 2]
    # the same verdicts as a host that never failed: the retry scored the same batch, not a part of it
    plain = ModelHost(host.registry, device="cpu").score(batch)
    assert [v.score for _, v in scored] == pytest.approx([v.score for v in plain])
    assert host.calls == 3  # two failures, then the whole batch at once (never one window at a time)
    assert host.counts["windows_scored"] == 3
    assert worker.counts["scoring_retries"] == 2 and worker.counts["dead_letters"] == 0
    assert worker.metrics.registry.get_sample_value("adaptlog_infer_scoring_retries_total") == 2  # what /metrics says
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and "retry 1 of 3" in retries[0] and "OutOfMemoryError" in retries[0]


def test_a_batch_out_of_memory_on_every_try_raises_after_the_policys_attempts(tmp_path):
    worker, host = make_worker(tmp_path, failures=100)
    with pytest.raises(torch.OutOfMemoryError):
        score(worker, windows())
    assert host.calls == 4  # FAST's attempts; no window was scored alone nor dead-lettered
    assert worker.counts["scoring_retries"] == 3 and worker.counts["dead_letters"] == 0
    assert host.counts["windows_scored"] == 0


def test_a_window_error_after_a_retry_still_dead_letters_that_window_alone(tmp_path):
    """Out of memory once, then a window the model cannot read: the retry does not hide the dead-letter path."""
    worker, host = make_worker(tmp_path, failures=1)
    good = windows()
    line = dataclasses.replace(good[0].lines[0], template=None)  # a line the model cannot read (not text)
    bad = dataclasses.replace(good[0], window_id="bad", lines=(line,))
    scored, letters = score(worker, [good[0], bad, good[1]])
    assert [verdict.window_id for _, verdict in scored] == [good[0].window_id, good[1].window_id]
    [letter] = [orjson.loads(out.value) for out in letters]
    assert letter["offset"] == 1 and "AttributeError" in letter["reason"]
    assert worker.counts["scoring_retries"] == 1
    assert host.calls == 5  # out of memory, the batch again (the bad window fails it), then each window alone


def test_retrying_waits_the_backoff_and_raises_what_it_does_not_retry_at_once():
    policy = ErrorPolicy("p", {OSError: Action.RETRY, Exception: Action.DEAD_LETTER}, backoff=Backoff(0.0, 0.0, 2.0, 3))
    calls: list[int] = []
    seen: list[int] = []

    async def flaky() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise OSError("volume busy")
        return "done"

    async def bad() -> str:
        calls.append(len(calls))
        raise ValueError("bad data")

    assert asyncio.run(retrying(flaky, policy, "flaky", on_retry=lambda _, n: seen.append(n))) == "done"
    assert calls == [0, 1, 2] and seen == [1, 2]
    calls.clear()
    with pytest.raises(ValueError):
        asyncio.run(retrying(bad, policy, "bad"))
    assert calls == [0]  # dead-lettering is the caller's business: never retried


def test_scorings_retries_fit_within_the_hand_over_a_rebalance_waits_for():
    backoff = SCORING.backoff
    assert backoff is not None and backoff.attempts == 4
    waits = [backoff.delay_s(n) for n in range(1, backoff.attempts)]
    assert waits == [0.5, 1.0, 2.0]
    assert sum(waits) < HANDOVER_WAIT_S / 4
    assert backoff.gives_up(4) and not backoff.gives_up(3)
    with pytest.raises(ValueError):
        Backoff(0.1, 1.0, attempts=0)
