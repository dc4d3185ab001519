"""Ingest: decode input records and route each line to the ``lines`` topic keyed by its system.

Keying by system puts all lines of a system on one partition of ``lines``, so one miner sees all of them in one order:
the same line gets the same template whichever worker received it (the scale-out unit is the system).
"""

from __future__ import annotations

from typing import Any

from stream.decode import Decoder, RawRecord
from stream.pipeline.stage import InputRecord, Outgoing, dead_letter
from stream.records import DeadLetter, Envelope, encode
from stream.settings import Settings

STAGE = "ingest"


class IngestPartition:
    def __init__(self, settings: Settings, decoder: Decoder) -> None:
        self._decoder = decoder
        self._lines_topic = settings.topics.lines
        self._deadletter_topic = settings.topics.deadletter

    def process(self, record: InputRecord) -> list[Outgoing]:
        raw = RawRecord(
            record.topic, record.partition, record.offset, record.value, record.headers, record.timestamp_ms
        )
        decoded = self._decoder.decode(raw)
        if isinstance(decoded, DeadLetter):
            return [dead_letter(self._deadletter_topic, decoded)]
        envelope = Envelope(upstream=(record.topic, record.partition, record.offset, 0), payload=decoded.to_dict())
        return [Outgoing(self._lines_topic, encode(envelope), key=decoded.system.encode())]

    def wants_ticks(self) -> bool:
        return False

    def snapshot(self) -> dict[str, Any] | None:
        return None
