"""Ingest: decode input records and route each line to the ``lines`` topic keyed by its system.

Keying by system puts all lines of a system on one partition of ``lines``, so one miner sees all of them in one order:
the same line gets the same template whichever worker received it (the scale-out unit is the system).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from stream.decode import Decoder, RawRecord
from stream.pipeline.stage import InputRecord, SystemStats, encode_routed, envelope_values
from stream.records import DeadLetter, Outgoing, Routed
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.processing import each_record
from stream.settings import Settings

STAGE = "ingest"
log = logging.getLogger(__name__)


class IngestPartition:
    def __init__(self, settings: Settings, decoder: Decoder) -> None:
        self._decoder = decoder
        self._lines_topic = settings.topics.lines
        self._dead_letters = DeadLetters(STAGE, settings.topics.deadletter)

    def process_batch(self, records: Sequence[InputRecord]) -> list[Outgoing]:
        by_system: dict[str, list[bytes]] = {}
        # Decode never raises, and a line it accepts that fails to encode is dead-lettered alone (in _process);
        # each_record is the last resort that keeps one record from crashing the stage into a restart loop.
        out = each_record(records, lambda record: self._process(record, by_system), self._dead_letters)
        for system, lines in by_system.items():
            key = system.encode()
            out += [Outgoing(self._lines_topic, value, key=key) for value in envelope_values(lines)]
        return out

    def _process(self, record: InputRecord, by_system: dict[str, list[bytes]]) -> list[Outgoing]:
        raw = RawRecord(
            record.topic, record.partition, record.offset, record.value, record.headers, record.timestamp_ms
        )
        out: list[Outgoing] = []
        # Never raises: bad input comes back as dead letters. A record may hold several lines (an OTLP batch).
        for decoded in self._decoder.decode_lines(raw):
            if isinstance(decoded, DeadLetter):
                out.append(self._dead_letters.outgoing(decoded))
                continue
            # The line's index is the sub-index: the parse stage's dedup keeps every line of a multi-line record.
            upstream = (record.topic, record.partition, record.offset, decoded.source.index)
            try:
                encoded = encode_routed(Routed(upstream, decoded.to_dict()))
            except Exception as exc:  # a line decode let through but orjson refuses: that line alone is dead-lettered
                log.exception("%s: %s failed on %s", STAGE, type(exc).__name__, record.where)
                reason = f"{type(exc).__name__}: {exc}"
                out.append(self._dead_letters.of(reason, record, system=decoded.system, index=decoded.source.index))
                continue
            by_system.setdefault(decoded.system, []).append(encoded)
        return out

    def wants_ticks(self) -> bool:
        return False

    def snapshot(self) -> dict[str, Any] | None:
        return None

    def system_stats(self) -> list[SystemStats]:
        return []
