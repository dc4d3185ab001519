"""Shipper records on a real broker: each preset's records are windowed exactly like adaptlog's json records of the
same lines (same templates, same windows), and bad ones are dead-lettered with reasons and their position."""

from __future__ import annotations

import asyncio
import base64
from collections import defaultdict

import orjson
import pytest

from harness import shippers
from harness.broker.running import RunningBroker
from harness.shippers import bgl_lines
from harness.streaming import read_topic, running_worker, settings_for
from stream.pipeline.kafka_clients import ensure_topics, make_producer, topic_specs
from stream.settings import InputFormat, SystemSettings

pytestmark = pytest.mark.broker
PRESETS = ("json", "fluent-bit", "vector", "otel", "zap", "pino")
LINES = 200  # BGL_2k's first 200 lines: 10 windows of 20 per preset


def test_each_presets_records_are_windowed_like_the_json_records_of_the_same_lines(
    kafka_broker: RunningBroker, topic_prefix: str
) -> None:
    lines = bgl_lines(LINES)
    topics = {preset: f"{topic_prefix}-in-{preset}" for preset in PRESETS}
    bgl = SystemSettings(format="bgl", drain={"depth": 4, "sim_th": 0.5}, window={"kind": "count_tumbling", "size": 20})
    settings = settings_for(
        kafka_broker.bootstrap,
        topic_prefix,
        kafka_broker.supports_idempotence,
        systems={f"bgl-{preset}": bgl for preset in PRESETS},
        input_topics=tuple(topics.values()),
        input_formats={topics[p]: InputFormat(preset=p) for p in PRESETS},  # type: ignore[arg-type]
        # json records name their system, otel ones by service.name; the shippers' records rely on the topic
        default_systems={topics[p]: f"bgl-{p}" for p in ("fluent-bit", "vector", "zap", "pino")},
    )
    good = {
        "json": shippers.json_input(lines, "bgl-json"),
        "fluent-bit": shippers.fluent_bit(lines),
        "vector": shippers.vector(lines),
        "otel": shippers.otel(lines, "bgl-otel", per_record=7),  # 29 records, windows cut across them
        "zap": shippers.zap(lines),
        "pino": shippers.pino(lines),
    }
    text, ms = lines[0]
    otel_bad_body = {"timeUnixNano": str(ms * 1_000_000), "body": {"kvlistValue": {"values": []}}}
    # (preset, record, reason, index): each sent after the preset's 50th good record
    bad = [
        ("json", orjson.dumps({"system": "bgl-json", "message": text, "ts": 1733443200}), "before 2000", None),
        ("fluent-bit", orjson.dumps({"@timestamp": 1733443200.5, "msg": text}), "has no 'log' or 'MESSAGE'", None),
        ("vector", orjson.dumps({"message": text, "timestamp": 1733443200}), "is a number", None),
        ("zap", orjson.dumps({"msg": text, "ts": 1733443200500}), "after the record's timestamp", None),
        ("pino", orjson.dumps({"msg": text, "time": 1733443200}), "before 2000", None),
        ("otel", orjson.dumps({"resourceSpans": []}), "no 'resourceLogs'", None),
        ("otel", shippers.otel_record([], "bgl-otel", [otel_bad_body]), "expected stringValue", 0),
    ]

    async def scenario() -> tuple[list[dict], list[dict]]:
        await ensure_topics(settings, topic_specs(settings))
        producer = make_producer(settings)
        await producer.start()
        try:
            for preset, records in good.items():
                for number, value in enumerate(records):
                    await producer.send(topics[preset], value, key=b"bgl")
                    if number == min(50, len(records) // 2):
                        for bad_preset, bad_value, _, _ in bad:
                            if bad_preset == preset:
                                await producer.send(topics[preset], bad_value, key=b"bgl")
            await producer.flush()
        finally:
            await producer.stop()
        async with running_worker(settings):
            windows = await read_topic(settings, settings.topics.windows, until=10 * len(PRESETS), timeout_s=150)
            dead = await read_topic(settings, settings.topics.deadletter, until=len(bad), timeout_s=30)
        return windows, dead

    windows, dead = asyncio.run(scenario())
    by_system: dict[str, list[dict]] = defaultdict(list)
    for window in windows:
        by_system[window["system"]].append(window)
    assert {system: len(ws) for system, ws in by_system.items()} == {f"bgl-{p}": 10 for p in PRESETS}

    def seen(system: str) -> list[list[tuple]]:
        return [
            [(line["template_id"], line["template"], line["masked"], line["event_ms"]) for line in window["lines"]]
            for window in by_system[system]
        ]

    expected = seen("bgl-json")
    assert [ms for window in expected for *_, ms in window] == [ms for _, ms in lines]
    for preset in PRESETS:
        assert seen(f"bgl-{preset}") == expected, preset
    # Source positions: one record a line, but for otel 7 lines a record (offset, index), bad records in between.
    otel_positions = [(line["offset"], line.get("index", 0)) for w in by_system["bgl-otel"] for line in w["lines"]]
    bad_offset = 14  # the two bad otel records were sent after record 14 (200 lines / 7 per record // 2)
    assert otel_positions == [(n // 7 + (2 if n // 7 > bad_offset else 0), n % 7) for n in range(LINES)]
    assert len({w["window_id"] for w in windows}) == len(windows)

    assert len(dead) == len(bad)
    by_original = {base64.b64decode(d["original_b64"]): d for d in dead}
    for preset, value, reason, index in bad:
        letter = by_original[value if index is None else orjson.dumps(otel_bad_body)]
        assert reason in letter["reason"], (preset, letter["reason"])
        assert (letter["stage"], letter["topic"], letter["index"]) == ("decode", topics[preset], index)
