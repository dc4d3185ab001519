"""Ingest: decode input records and route each line to the ``lines`` topic keyed by its system.

Keying by system puts all lines of a system on one partition of ``lines``, so one miner sees all of them in one order:
the same line gets the same template whichever worker received it (the scale-out unit is the system).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stream.decode import Decoder, RawRecord
from stream.pipeline.stage import InputRecord, Outgoing, dead_letter, encode_routed, envelope_values, guarded
from stream.records import DeadLetter, Routed
from stream.settings import Settings

STAGE = "ingest"


class IngestPartition:
    def __init__(self, settings: Settings, decoder: Decoder) -> None:
        self._decoder = decoder
        self._lines_topic = settings.topics.lines
        self._deadletter_topic = settings.topics.deadletter

    def process_batch(self, records: Sequence[InputRecord]) -> list[Outgoing]:
        by_system: dict[str, list[bytes]] = {}
        # Per record inside guarded: decode never raises, but a line it accepts could still fail to encode, and that
        # must dead-letter the one record, not crash the stage into a restart loop on the same batch.
        out = guarded(records, lambda record: self._process(record, by_system), STAGE, self._deadletter_topic)
        for system, lines in by_system.items():
            key = system.encode()
            out += [Outgoing(self._lines_topic, value, key=key) for value in envelope_values(lines)]
        return out

    def _process(self, record: InputRecord, by_system: dict[str, list[bytes]]) -> list[Outgoing]:
        raw = RawRecord(
            record.topic, record.partition, record.offset, record.value, record.headers, record.timestamp_ms
        )
        decoded = self._decoder.decode(raw)  # never raises: bad input comes back as a dead letter
        if isinstance(decoded, DeadLetter):
            return [dead_letter(self._deadletter_topic, decoded)]
        upstream = (record.topic, record.partition, record.offset, 0)
        by_system.setdefault(decoded.system, []).append(encode_routed(Routed(upstream, decoded.to_dict())))
        return []

    def wants_ticks(self) -> bool:
        return False

    def snapshot(self) -> dict[str, Any] | None:
        return None
