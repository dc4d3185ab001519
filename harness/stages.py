"""The stage processors' shared inputs, for tests that run them without a broker: real HDFS and BGL lines as the
``lines`` and ``sessions`` topics would hold them, with ticks between; and one miner's windows of a file, which
keyed mining's merged windows are checked against (unit and broker tests, the scale-out bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from harness.streaming import DATA, hdfs_system
from stream.decode import Decoder
from stream.pipeline.ingest_stage import IngestPartition
from stream.pipeline.parse_stage import ParsePartition
from stream.pipeline.stage import InputRecord
from stream.records import TICK as TICK_ENVELOPE
from stream.records import Outgoing, encode
from stream.replay import replay_records
from stream.settings import Settings, SystemSettings, load_settings

BGL = SystemSettings(format="bgl", window={"kind": "count_sliding", "size": 20, "step": 4, "idle_timeout_ms": 500})
SETTINGS = load_settings(systems={"hdfs": hdfs_system(2_000), "bgl": BGL})
TICK = encode(TICK_ENVELOPE)


def lines_topic_records(settings: Settings = SETTINGS) -> list[InputRecord]:
    """HDFS_5k then BGL_2k through the ingest stage, as the ``lines`` topic would hold them, with ticks between.
    ``settings``: SETTINGS, or a copy of them with other stage options (``internal_format``)."""
    ingest = IngestPartition(settings, Decoder(settings))
    records: list[InputRecord] = []
    sources = [
        ("hdfs", DATA / "hdfs" / "HDFS_5k.log"),
        ("bgl", DATA / "bgl" / "BGL_2k.log"),
    ]
    offset = 0
    for system, path in sources:
        fmt = SETTINGS.systems[system].line_format(system)
        replayed = list(replay_records(path, system, fmt))
        # Batches of 37 input records, as a consumer's fetch would hand them over: envelopes of many lines.
        for start in range(0, len(replayed), 37):
            raw = [
                InputRecord("logs", 0, offset + i, system.encode(), r.value, 1_000 + offset + i, r.headers)
                for i, r in enumerate(replayed[start : start + 37])
            ]
            offset += len(raw)
            for out in ingest.process_batch(raw):
                records.append(InputRecord(out.topic, 0, len(records), out.key, out.value, 10_000 + start * 3))
            if start // 500 != (start + 37) // 500:  # a quiet spell: time jumps past the idle timeouts, then a tick
                records.append(
                    InputRecord(SETTINGS.topics.lines, 0, len(records), None, TICK, 10_000 + start * 3 + 5_000)
                )
    return records


def to_sessions_topic(outgoing: list[Outgoing]) -> list[InputRecord]:
    records = [o for o in outgoing if o.topic == SETTINGS.topics.sessions]
    return [InputRecord(o.topic, 0, i, o.key, o.value, 20_000 + i * 2) for i, o in enumerate(records)] + [
        InputRecord(SETTINGS.topics.sessions, 0, len(records), None, TICK, 20_000 + len(records) * 2 + 10_000)
    ]


def one_miner_windows(name: str, system: SystemSettings, path: Path) -> list[dict[str, Any]]:
    """The count or event-time windows of one miner reading ``path`` in order (``mining: system``, windowed by the
    parse stage), the last closed by a tick: what a keyed system's merged windows must equal."""
    settings = load_settings(systems={name: system.model_copy(update={"mining": "system"})})
    ingest = IngestPartition(settings, Decoder(settings))
    replayed = replay_records(path, name, system.line_format(name))
    records = [InputRecord("logs", 0, i, name.encode(), r.value, 1_000 + i, r.headers) for i, r in enumerate(replayed)]
    lines = [InputRecord(o.topic, 0, i, o.key, o.value, 10_000) for i, o in enumerate(ingest.process_batch(records))]
    tick = InputRecord(settings.topics.lines, 0, len(lines), None, TICK, 10**12)
    out = ParsePartition(settings).process_batch([*lines, tick])
    return [orjson.loads(o.value) for o in out if o.topic == settings.topics.windows]


def comparable_windows(windows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Windows as the model reads them: bounds, and each line's offset, template, text and label. Not the template
    ids (a keyed miner's are global hashes, one miner's are counters) nor the window id (a hash of the lines' input
    topic, partition and offset, where a test's broker and its in-process run may differ in the first two)."""
    return [
        (
            w["start_ms"],
            w["end_ms"],
            w["reason"],
            [(line["offset"], line["template"], line["masked"], line["label"]) for line in w["lines"]],
        )
        for w in windows
    ]
