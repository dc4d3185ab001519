"""Records on their way out: the bytes of a record, and where they go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


def encode(record: Any) -> bytes:
    """Encode a record (anything with ``to_dict``) or a plain dict as JSON bytes."""
    return orjson.dumps(record.to_dict() if hasattr(record, "to_dict") else record)


# Not frozen, though never changed after construction: built for every record a stage sends (see
# stream.records.lines.SourceRef for what frozen costs).
@dataclass(slots=True)
class Outgoing:
    """A record to publish: its topic, value and key, as every stage, the inference worker and the trainer send
    them."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int | None = None  # None: Kafka's default partitioning of the key
    # a dead letter's (stage, reason category): the stage runner counts it for the metrics (stream.reasons)
    dead: tuple[str, str] | None = None
