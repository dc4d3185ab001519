"""Records adaptlog could not use, as published on ``deadletter``."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record adaptlog could not use, with the original bytes and why. Published on ``deadletter``; built by
    ``stream.runtime.dead_letters`` (``letter``, ``DeadLetters``), and read back with ``from_dict``."""

    stage: str  # decode | parse | window
    reason: str
    topic: str
    partition: int
    offset: int
    original: bytes
    system: str | None = None
    # the line's index in its record (SourceRef.index); None when the whole record is refused before its lines are
    # told apart. For a line of a multi-line record, ``original`` holds that line's part of the record.
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "reason": self.reason,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "index": self.index,
            "system": self.system,
            "original_b64": base64.b64encode(self.original).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeadLetter:
        return cls(
            stage=d["stage"],
            reason=d["reason"],
            topic=d["topic"],
            partition=int(d["partition"]),
            offset=int(d["offset"]),
            original=base64.b64decode(d["original_b64"]),
            system=d.get("system"),
            index=d.get("index"),
        )
