"""A target's unlabeled windows for ``adapt``: from a file of ``windows`` records or from the ``windows`` topic.

Unlabeled target windows are the one thing a new system has in plenty. ``adapt`` reads their scores as the
false-alarm reference of the threshold rules (``trainer.train.calibrate``), and with no labeled anomaly at all they
are the only thing that places the threshold (``trainer.train.zero_label``).

Both sources hold records exactly as the stream workers publish them on ``windows`` (``stream.records.Window``):
a file is one JSON record a line, bare or in the envelope ``adaptlog tail windows`` prints (``{"topic", ...,
"value": record}``). Only the target's
windows are kept, the most recent ``limit`` of them (recent traffic is what the threshold will see next). A record
that is not a window record is skipped and counted, never fatal: one bad line must not stop an adaptation that has
thousands of good ones, but the count and the first reasons are reported so that nothing is lost silently. A source
with no window of the target at all is an error, since a threshold read off nothing would be a guess.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from stream.errors import BrokerError, ConfigError
from stream.inference.model_host import window_text
from stream.model.detector import WindowText
from stream.records import RecordError, Window
from stream.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_UNLABELED = 2000  # twice what the default budget (1 per 1,000) needs to resolve
_REASONS_KEPT = 5


@dataclass
class UnlabeledWindows:
    """The target's most recent unlabeled windows from one source, and what was skipped on the way."""

    source: str  # "file <path>" or "topic <name>"
    windows: list[WindowText] = field(default_factory=list)
    read: int = 0  # records read, of any system
    skipped: int = 0  # records that are not window records
    reasons: list[str] = field(default_factory=list)  # the first few skip reasons, with their position

    def summary(self) -> dict[str, object]:
        """What the adapter's manifest records about them."""
        return {"source": self.source, "windows": len(self.windows), "read": self.read, "skipped": self.skipped}


class _Collector:
    """Keeps the last ``limit`` windows of ``system`` from a sequence of raw records."""

    def __init__(self, source: str, system: str, limit: int) -> None:
        if limit < 1:
            raise ConfigError("--max-unlabeled", f"must be at least 1, got {limit}")
        self.system = system
        self.result = UnlabeledWindows(source)
        self._kept: deque[WindowText] = deque(maxlen=limit)

    def add(self, raw: bytes | str, where: str) -> None:
        self.result.read += 1
        try:
            record = json.loads(raw)
            if isinstance(record, dict) and "window_id" not in record and isinstance(record.get("value"), dict):
                record = record["value"]  # a line of `adaptlog tail windows`: the record in its envelope
            window = Window.from_dict(record)
        except (ValueError, RecordError) as exc:  # json.JSONDecodeError is a ValueError
            self.result.skipped += 1
            if len(self.result.reasons) < _REASONS_KEPT:
                self.result.reasons.append(f"{where}: {exc}")
            return
        if window.system == self.system:
            self._kept.append(window_text(window))  # what inference scores for this window

    def finish(self) -> UnlabeledWindows:
        result = self.result
        result.windows = list(self._kept)
        if result.skipped:
            log.warning(
                "unlabeled windows from %s: skipped %d of %d records that are not window records (first: %s)",
                result.source,
                result.skipped,
                result.read,
                "; ".join(result.reasons),
            )
        if not result.windows:
            raise ConfigError(
                f"unlabeled windows ({result.source})",
                f"{result.source} holds no window of system {self.system!r} ({result.read} records read, "
                f"{result.skipped} not window records)",
            )
        return result


def read_windows_file(path: Path, system: str, limit: int = DEFAULT_MAX_UNLABELED) -> UnlabeledWindows:
    """The last ``limit`` windows of ``system`` in a JSON-lines file of ``windows`` records (blank lines ignored)."""
    collector = _Collector(f"file {path}", system, limit)
    try:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    collector.add(line, f"line {number}")
    except OSError as exc:
        raise ConfigError(f"unlabeled windows (file {path})", f"cannot read {path}: {exc.strerror or exc}") from exc
    return collector.finish()


def read_windows_topic(
    settings: Settings, topic: str, system: str, limit: int = DEFAULT_MAX_UNLABELED, timeout_s: float = 120.0
) -> UnlabeledWindows:
    """The last ``limit`` windows of ``system`` on ``topic``: everything on it when called, read from the start of
    every partition up to the end offsets seen then, without a consumer group (nothing is committed: reading
    unlabeled windows leaves the stream's consumers as they were). BrokerError when the broker cannot be reached or
    the topic is not read to its end within ``timeout_s``."""
    return asyncio.run(_read_topic(settings, topic, system, limit, timeout_s))


async def _read_topic(settings: Settings, topic: str, system: str, limit: int, timeout_s: float) -> UnlabeledWindows:
    from aiokafka.errors import KafkaError

    from stream.pipeline.kafka_clients import records_to_end

    collector = _Collector(f"topic {topic}", system, limit)

    async def read() -> None:
        async for record in records_to_end(settings, topic, timeout_s=10.0):
            collector.add(record.value or b"", f"{record.topic}[{record.partition}]@{record.offset}")

    try:
        await asyncio.wait_for(read(), timeout_s)
    except (KafkaError, TimeoutError) as exc:
        raise BrokerError(f"reading unlabeled windows from {topic}: {exc or type(exc).__name__}") from exc
    return collector.finish()
