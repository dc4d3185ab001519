"""The stream workers on a real broker: session and count windows from real logs, dead letters for bad input."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest

from harness.broker.running import RunningBroker
from harness.streaming import DATA, block_lines, hdfs_system, read_topic, running_worker, settings_for
from stream.pipeline.kafka_clients import ensure_topics, make_producer, topic_specs
from stream.replay import read_block_labels, replay, replay_records
from stream.settings import SystemSettings

pytestmark = pytest.mark.broker


def test_hdfs_5k_gives_exactly_one_session_window_per_block(kafka_broker: RunningBroker, topic_prefix: str) -> None:
    settings = settings_for(
        kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence, systems={"hdfs": hdfs_system(3000)}
    )
    path = DATA / "hdfs" / "HDFS_5k.log"
    truth = block_lines(path)
    labels = read_block_labels(DATA / "hdfs" / "HDFS_5k_block_labels.csv")

    async def scenario() -> list[dict]:
        async with running_worker(settings):
            fmt = settings.systems["hdfs"].line_format("hdfs")
            await replay(settings, replay_records(path, "hdfs", fmt, labels), "hdfs")
            return await read_topic(settings, settings.topics.windows, until=len(truth), timeout_s=120)

    windows = asyncio.run(scenario())
    assert len(windows) == len(truth) == 110
    by_key = {w["key"]: w for w in windows}
    assert set(by_key) == set(truth)
    for block, offsets in truth.items():
        window = by_key[block]
        assert [line["offset"] for line in window["lines"]] == offsets, block
        assert window["policy"] == "session" and window["system"] == "hdfs"
        assert window["label"] == labels[block]
        assert all(line["template_id"] > 0 and line["template"] for line in window["lines"])
    assert len({w["window_id"] for w in windows}) == 110
    assert sum(w["label"] == "anomalous" for w in windows) == 10


def test_bgl_2k_count_tumbling_gives_100_windows_in_order(kafka_broker: RunningBroker, topic_prefix: str) -> None:
    bgl = SystemSettings(format="bgl", drain={"depth": 4, "sim_th": 0.5}, window={"kind": "count_tumbling", "size": 20})
    settings = settings_for(
        kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence, systems={"bgl": bgl}
    )
    path = DATA / "bgl" / "BGL_2k.log"

    async def scenario() -> list[dict]:
        async with running_worker(settings):
            await replay(settings, replay_records(path, "bgl", bgl.line_format("bgl")), "bgl")
            return await read_topic(settings, settings.topics.windows, until=100, timeout_s=120)

    windows = asyncio.run(scenario())
    assert len(windows) == 100
    for index, window in enumerate(windows):
        assert [line["offset"] for line in window["lines"]] == list(range(index * 20, index * 20 + 20))
        assert window["reason"] == "count"
    anomalous_lines = sum(line["label"] == "anomalous" for w in windows for line in w["lines"])
    assert anomalous_lines == 143  # BGL_2k's alert lines, carried from the label column into the header


BAD_RECORDS: list[tuple[bytes, list[tuple[str, bytes]], str]] = [
    (b"\xff\xfe\x00garbage", [("system", b"bgl")], "invalid UTF-8"),
    (bytes(range(256)), [], "invalid UTF-8"),
    (b'{"system": "bgl", "message": "truncated', [], "invalid JSON"),
    (b'{"system": 42, "message": "x"}', [], "expected a string"),
    (b'["not", "an", "object"]', [("system", b"bgl")], "does not match format"),
    (b'{"system": "bgl", "message": "x", "ts": "yesterday"}', [], "neither epoch ms nor ISO 8601"),
    (b"x" * (64 * 1024 + 1), [("system", b"bgl")], "over the limit"),
    (b"a line from a system nobody configured", [("system", b"nosuch")], "unknown system"),
    (b"a line with no system at all", [], "no system"),
    (b"not a bgl line", [("system", b"bgl")], "does not match format"),
    (b'{"message": "no system field"}', [], "no system"),
    (
        b'{"system": "bgl", "message": "1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-13-45-15.42.50.675872 '
        b'R02-M1-N0-C:J12-U11 RAS KERNEL INFO bad month"}',
        [],
        "does not parse",
    ),
]


def test_bad_records_go_to_deadletter_and_good_ones_are_windowed(
    kafka_broker: RunningBroker, topic_prefix: str
) -> None:
    bgl = SystemSettings(format="bgl", window={"kind": "count_tumbling", "size": 20})
    settings = settings_for(
        kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence, systems={"bgl": bgl}
    )
    good = [r for r in replay_records(DATA / "bgl" / "BGL_2k.log", "bgl", bgl.line_format("bgl"))][:200]

    async def scenario() -> tuple[list[dict], list[dict]]:
        await ensure_topics(settings, topic_specs(settings))
        producer = make_producer(settings)
        await producer.start()
        try:
            # Interleave: after every 17 good lines, one bad record.
            bad_iter = iter(BAD_RECORDS)
            for index, record in enumerate(good):
                await producer.send(settings.topics.logs, record.value, key=b"bgl", headers=record.headers)
                if index % 17 == 16:
                    bad = next(bad_iter, None)
                    if bad is not None:
                        await producer.send(settings.topics.logs, bad[0], key=b"bgl", headers=bad[1])
            for bad in bad_iter:
                await producer.send(settings.topics.logs, bad[0], key=b"bgl", headers=bad[1])
            await producer.flush()
        finally:
            await producer.stop()
        async with running_worker(settings):
            windows = await read_topic(settings, settings.topics.windows, until=10, timeout_s=90)
            dead = await read_topic(settings, settings.topics.deadletter, until=len(BAD_RECORDS), timeout_s=30)
        return windows, dead

    windows, dead = asyncio.run(scenario())
    assert len(windows) == 10 and sum(len(w["lines"]) for w in windows) == 200
    assert len(dead) == len(BAD_RECORDS)
    originals = {base64.b64decode(d["original_b64"]): d for d in dead}
    for value, _headers, reason in BAD_RECORDS:
        letter = originals[value]
        assert reason in letter["reason"], (reason, letter["reason"])
        assert letter["stage"] == "decode" and letter["topic"] == settings.topics.logs and letter["offset"] >= 0
    good_offsets = sorted(line["offset"] for w in windows for line in w["lines"])
    assert not set(good_offsets) & {d["offset"] for d in dead}
    assert orjson.dumps(windows)  # windows are plain JSON all the way down
