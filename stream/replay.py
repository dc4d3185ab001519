"""Replay a log file into the input topic: the way to feed real logs (and their ground truth) into adaptlog.

Loghub ground truth travels in record headers, never in the content: BGL and Thunderbird files lead each line with a
label column (``-`` normal, else an alert category), which is cut off into the ``label`` header (and the category
into ``label_detail``); HDFS labels blocks, so a block label CSV (``--labels``) becomes a ``key_labels`` header giving
the label of each block the line names, and ``label`` (anomalous when any named block is).

Records are keyed by system, so all lines of one system keep their order through the input topic (count windows
depend on that order).
"""

from __future__ import annotations

import asyncio
import gzip
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from stream.formats import LineFormat
from stream.labels import read_block_labels
from stream.pipeline.kafka_clients import make_producer
from stream.records import ANOMALOUS, NORMAL
from stream.settings import Settings

HDFS_BLOCK = re.compile(r"blk_-?\d+")
__all__ = ["ReplayRecord", "read_block_labels", "replay", "replay_records"]


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    value: bytes
    headers: list[tuple[str, bytes]]


def open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            yield line.rstrip("\r\n")


def replay_records(
    path: Path, system: str, line_format: LineFormat, block_labels: dict[str, str] | None = None
) -> Iterator[ReplayRecord]:
    system_header = ("system", system.encode())
    for line in open_text(path):
        if not line:
            continue
        headers = [system_header]
        if line_format.label_column:
            tag, _, line = line.partition(" ")
            headers.append(("label", (NORMAL if tag == "-" else ANOMALOUS).encode()))
            if tag != "-":
                headers.append(("label_detail", tag.encode()))
        elif block_labels is not None:
            named = {block: block_labels[block] for block in HDFS_BLOCK.findall(line) if block in block_labels}
            if named:
                headers.append(("key_labels", orjson.dumps(named)))
                headers.append(("label", (ANOMALOUS if ANOMALOUS in named.values() else NORMAL).encode()))
        yield ReplayRecord(line.encode("utf-8", errors="surrogateescape"), headers)


async def replay(
    settings: Settings,
    records: Iterator[ReplayRecord],
    system: str,
    topic: str | None = None,
    rate: float | None = None,
) -> int:
    """Produce the records (at ``rate`` lines/s when given). Returns how many were sent, all acknowledged."""
    producer = make_producer(settings)
    await producer.start()
    sent = 0
    started = time.monotonic()
    key = system.encode()
    try:
        for record in records:
            await producer.send(topic or settings.topics.logs, record.value, key=key, headers=record.headers)
            sent += 1
            if rate:
                ahead_s = sent / rate - (time.monotonic() - started)
                if ahead_s > 0.01:
                    await asyncio.sleep(ahead_s)
        await producer.flush()
    finally:
        await producer.stop()
    return sent
