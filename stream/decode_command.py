"""``adaptlog decode``: decode records from a file or stdin exactly as the ingest stage would, with no broker.

A user points it at what a shipper writes (one Kafka record a line, as ``kafka-console-consumer`` prints them, or
the shipper's file output) before going live. Each record goes through the same :class:`Decoder` as ``adaptlog run``
uses, as if read from ``--topic`` (default: the first input topic) at partition 0, offset = its 0-based line number
in the input, with the wall clock as its broker timestamp (the time of last resort, and what ``max_ahead_ms`` is
measured from). Empty input lines are skipped: they are the gaps between records, not records. Output, one JSON
object a line on stdout::

    {"kind": "line", "system", "event_ms", "time", "content", "label", "key_labels", "source": [topic, partition,
     offset(, index)]}
    {"kind": "deadletter", "stage", "reason", "topic", "partition", "offset", "index", "system", "original_b64"}

(the ``lines`` and ``deadletter`` topics' own fields, plus ``time``: event_ms in RFC 3339, to spot a 1970 at a
glance). Exit 0 when every record decoded, 1 when any was dead-lettered (so a check in a script fails), 2 for bad
usage (unknown system, unreadable file).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, TextIO

import orjson

from stream.decode import Decoder, RawRecord
from stream.errors import ConfigError
from stream.records import DeadLetter
from stream.settings import InputFormat, Settings

STDIN = "-"


def decode_settings(settings: Settings, topic: str | None, system: str | None, preset: str | None) -> Settings:
    """The settings ingest would read ``topic`` with, ``--system`` as the topic's default system and ``--input-format``
    as its input format. Raises ConfigError for an unknown system."""
    topic = topic or settings.inputs[0]
    update: dict[str, object] = {}
    if system is not None:
        if system not in settings.systems:
            known = ", ".join(sorted(settings.systems))
            raise ConfigError("--system", f"unknown system {system!r}; known: {known}")
        update["default_systems"] = {**settings.default_systems, topic: system}
    if preset is not None:
        update["input_formats"] = {**settings.input_formats, topic: InputFormat(preset=preset)}  # type: ignore[arg-type]
    return settings.model_copy(update=update)


def run_decode(settings: Settings, source: str, topic: str | None, out: TextIO = sys.stdout) -> int:
    topic = topic or settings.inputs[0]
    decoder = Decoder(settings)
    records = lines = dead = 0
    for offset, value in _records(source):
        records += 1
        arrival_ms = time.time_ns() // 1_000_000
        for decoded in decoder.decode_lines(RawRecord(topic, 0, offset, value, (), arrival_ms)):
            if isinstance(decoded, DeadLetter):
                dead += 1
                row = {"kind": "deadletter", **decoded.to_dict()}
            else:
                lines += 1
                row = {
                    "kind": "line",
                    "system": decoded.system,
                    "event_ms": decoded.event_ms,
                    "time": _rfc3339(decoded.event_ms),
                    "content": decoded.content,
                    "label": decoded.label,
                    "key_labels": decoded.key_labels,
                    "source": decoded.to_dict()["source"],
                }
            out.write(orjson.dumps(row).decode() + "\n")
    print(f"adaptlog decode: {records} records: {lines} lines, {dead} dead letters", file=sys.stderr)
    return 1 if dead else 0


def _records(source: str) -> Iterator[tuple[int, bytes]]:
    """(0-based line number, bytes without the newline) of each non-empty line."""
    if source == STDIN:
        yield from _lines(sys.stdin.buffer)
        return
    path = Path(source)
    if not path.is_file():
        raise ConfigError("FILE", f"no such file {path}")
    with path.open("rb") as handle:
        yield from _lines(handle)


def _lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(handle):
        value = raw.rstrip(b"\n")
        if value:
            yield number, value


def _rfc3339(event_ms: int) -> str | None:
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=event_ms)
    except OverflowError:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
