"""Windows that decode but cannot be judged: each is dead-lettered with a reason and the rest of its batch is
scored, so one such window never fails its batch on every restart. A model that fails every window still stops
the worker. Real registry, real (small, untrained) TransLog, the worker's own decode, scoring and publication."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from harness.inference import small_registry, stream_window
from stream.inference.model_host import ModelHost
from stream.inference.worker import InferenceWorker
from stream.records import ANOMALOUS, DeadLetter, Outgoing, Window, encode
from stream.settings import InferenceSettings, Settings

RECEIVING = "Receiving block <*> src: <*> dest: <*>"
TERMINATING = "PacketResponder <*> for block <*> terminating"


@pytest.fixture
def worker(tmp_path) -> InferenceWorker:
    registry, _ = small_registry(tmp_path / "registry")  # threshold 0: every verdict is anomalous, so alerted
    settings = Settings(inference=InferenceSettings(registry=str(registry.root), publish_verdicts=True))
    return InferenceWorker(settings, ModelHost(registry, device="cpu"))


def record(value: bytes, offset: int) -> ConsumerRecord:
    return ConsumerRecord("windows", 0, offset, 0, 0, None, value, None, 0, len(value), ())


def judged(worker: InferenceWorker, records: Sequence[ConsumerRecord]) -> tuple[dict[str, list], list[DeadLetter]]:
    """What the worker publishes for one batch of records, as ``_process_owned`` makes it: by topic."""

    async def run() -> list[Outgoing]:
        decoded, outgoing = worker._decode(records)
        if decoded:
            scored, letters = await worker._score(decoded)
            outgoing += letters + worker._publications(scored)
        return outgoing

    try:
        outgoing = asyncio.run(run())
    finally:
        worker._executor.shutdown()
    topics = worker.settings.topics
    by_topic: dict[str, list] = {}
    for out in outgoing:
        by_topic.setdefault(out.topic, []).append(orjson.loads(out.value))
    letters = [DeadLetter.from_dict(d) for d in by_topic.pop(topics.deadletter, [])]
    return by_topic, letters


def test_a_window_without_lines_is_dead_lettered_not_scored(worker):
    good = stream_window("hdfs", [RECEIVING, TERMINATING], key="good")
    empty = dataclasses.replace(stream_window("hdfs", [RECEIVING], key="empty"), lines=())
    published, letters = judged(worker, [record(encode(empty), 1), record(encode(good), 2)])
    assert [(letter.offset, letter.reason) for letter in letters] == [(1, "a window with no lines: nothing to score")]
    assert letters[0].original == encode(empty) and letters[0].system == "hdfs"
    assert [v["window_id"] for v in published[worker.settings.topics.verdicts]] == [good.window_id]
    assert worker.host.counts["windows_scored"] == 1


def test_blank_lines_are_never_named_as_a_cause(worker):
    """Drain gives a blank line the template ''. A window of blank lines, or one with a blank line among others,
    is judged, explained without it and alerted on; '' once made the alert book raise, on every restart."""
    blank = stream_window("hdfs", ["", "", ""], key="blank")
    mixed = stream_window("hdfs", [RECEIVING, "", TERMINATING, ""], key="mixed")
    published, letters = judged(worker, [record(encode(blank), 1), record(encode(mixed), 2)])
    assert letters == []
    verdicts = {v["window_id"]: v for v in published[worker.settings.topics.verdicts]}
    assert {v["label"] for v in verdicts.values()} == {ANOMALOUS}
    assert verdicts[blank.window_id]["explanation"] == []
    causes = verdicts[mixed.window_id]["explanation"]
    assert {cause["template"] for cause in causes} == {RECEIVING, TERMINATING}
    assert {tuple(cause["offsets"]) for cause in causes} == {(0,), (2,)}  # offsets still count the blank lines
    assert len(published[worker.settings.topics.alerts]) == 2  # the blank window's incident is named by nothing


def test_a_window_the_model_cannot_score_is_dead_lettered_and_the_rest_of_its_batch_is_scored(worker):
    """A window that slipped past decoding with a line the model cannot read (a template that is not text)."""
    good = [stream_window("hdfs", [RECEIVING] * (n + 1), key=f"good{n}") for n in range(3)]
    line = stream_window("hdfs", [RECEIVING], key="bad").lines[0]
    bad = dataclasses.replace(good[0], window_id="bad", lines=(dataclasses.replace(line, template=None),))
    decoded = [(record(encode(w), n), w) for n, w in enumerate([good[0], bad, *good[1:]])]

    async def run():
        return await worker._score(decoded)

    try:
        scored, letters = asyncio.run(run())
    finally:
        worker._executor.shutdown()
    assert [verdict.window_id for _, verdict in scored] == [w.window_id for w in good]
    assert len(letters) == 1
    letter = DeadLetter.from_dict(orjson.loads(letters[0].value))
    assert letter.offset == 1 and letter.reason.startswith("the model cannot score this window: AttributeError")
    assert worker.counts["dead_letters"] == 1


def test_a_verdict_the_alert_book_refuses_is_dead_lettered_and_the_others_alerted(worker):
    """A window that slipped past decoding with what the alert book refuses (an empty window id)."""
    good = stream_window("hdfs", [RECEIVING, TERMINATING], key="good")
    unnamed = dataclasses.replace(stream_window("hdfs", [TERMINATING], key="unnamed"), window_id="")
    verdicts = worker.host.score([unnamed, good])
    out = worker._publications([(record(encode(unnamed), 1), verdicts[0]), (record(encode(good), 2), verdicts[1])])
    published: dict[str, list] = {}
    for each in out:
        published.setdefault(each.topic, []).append(orjson.loads(each.value))
    topics = worker.settings.topics
    letters = [DeadLetter.from_dict(d) for d in published[topics.deadletter]]
    assert [letter.offset for letter in letters] == [1]
    assert "window_id must be a non-empty string" in letters[0].reason
    assert [v["window_id"] for v in published[topics.verdicts]] == [good.window_id]
    assert [a["window_ids"] for a in published[topics.alerts]] == [[good.window_id]]


def test_a_model_that_fails_every_window_stops_the_worker_instead(worker):
    """Dead-lettering is for windows; when the model cannot score even a plain window, the error goes up."""
    windows: list[Window] = [stream_window("bgl", [RECEIVING], key=str(n)) for n in range(3)]
    worker.host.detector.add_target("bgl__gone")
    worker.host.routes["bgl"] = dataclasses.replace(worker.host.route("hdfs"), target="bgl__gone")
    worker.host.detector.remove_target("bgl__gone")  # the route now names an adapter the model no longer has

    async def run():
        return await worker._score([(record(encode(w), n), w) for n, w in enumerate(windows)])

    try:
        with pytest.raises(KeyError):
            asyncio.run(run())
    finally:
        worker._executor.shutdown()
    assert worker.counts["dead_letters"] == 0
