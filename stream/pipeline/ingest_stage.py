"""Ingest: decode input records and route each line to the ``lines`` topic keyed by its system.

Keying by system puts all lines of a system on one partition of ``lines``, so one miner sees all of them in one order:
the same line gets the same template whichever worker received it (the scale-out unit is the system).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stream.decode import Decoder, RawRecord
from stream.pipeline.stage import InputRecord, Outgoing, dead_letter, envelopes
from stream.records import DeadLetter, Routed, encode
from stream.settings import Settings

STAGE = "ingest"


class IngestPartition:
    def __init__(self, settings: Settings, decoder: Decoder) -> None:
        self._decoder = decoder
        self._lines_topic = settings.topics.lines
        self._deadletter_topic = settings.topics.deadletter

    def process_batch(self, records: Sequence[InputRecord]) -> list[Outgoing]:
        out: list[Outgoing] = []
        by_system: dict[str, list[tuple[Routed, int]]] = {}
        for record in records:
            raw = RawRecord(
                record.topic, record.partition, record.offset, record.value, record.headers, record.timestamp_ms
            )
            decoded = self._decoder.decode(raw)  # never raises: bad input comes back as a dead letter
            if isinstance(decoded, DeadLetter):
                out.append(dead_letter(self._deadletter_topic, decoded))
                continue
            upstream = (record.topic, record.partition, record.offset, 0)
            by_system.setdefault(decoded.system, []).append((Routed(upstream, decoded.to_dict()), len(decoded.content)))
        for system, lines in by_system.items():
            key = system.encode()
            out += [Outgoing(self._lines_topic, encode(envelope), key=key) for envelope in envelopes(lines)]
        return out

    def wants_ticks(self) -> bool:
        return False

    def snapshot(self) -> dict[str, Any] | None:
        return None
