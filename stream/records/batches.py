"""The internal topics' records, format 2: a batch of lines as rows of arrays under one header.

Format 1 (``lines.Envelope``, ``{"i": [...]}``) carried one array per line holding its upstream position, its key and
its payload as a JSON object: each line cost a dict built and encoded by one stage and decoded and rebuilt by the
next, with the field names spelled out in every line. Those records between the stages were 19 of the 34 us a line
of the whole HDFS path (bench/pipeline_bench.py, ``stages_records_routing``). A format-2 record states once what its
lines share (the system, the upstream partition) and carries each line as a row: one ``orjson`` call a record
instead of one a line, no per-line objects on either side, and about half the bytes (the lines records of
HDFS_5k and BGL_2k: 0.73 MB against 1.35 MB, tests/unit/test_internal_format.py).

A record is a batch when its JSON object has ``"v": 2``; anything else is format 1 (ticks are format 1 still:
``{"i": []}``), which the stages keep reading, so the records a previous version left on the internal topics are
processed after an upgrade. The rows' layouts are fixed by position (``LINE_ROW``, ``SESSION_ROW``); a stage that
finds a row of another length refuses the record (a bug: only adaptlog writes these topics).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from stream.records.fields import RecordError, int64_field, json_type, text_field
from stream.records.lines import Envelope, LogLine, Routed, SessionLine, SourceRef
from stream.records.windows import window_line_dict

FORMAT = 2
# A ``lines`` row: the line's position in its input record's partition (offset, and its index in a record of several
# lines), its event time, content and ground truth; a keyed system's line (``mining: keyed``) adds its Drain key and
# masked text. The position is the line's source and its upstream position both (the ingest stage reads the input).
LINE_ROW = ("offset", "index", "event_ms", "content", "label", "key_labels")
KEYED_LINE_ROW = (*LINE_ROW, "drain_key", "masked")
# A ``sessions`` row: ``sub`` numbers the copies the upstream ``lines`` record made (the downstream dedup's
# sub-index), ``key`` is the session key, and the rest is the window line (``WindowLine``; its label is the one of
# the session the copy joins).
SESSION_ROW = (
    "sub",
    "key",
    "topic",
    "partition",
    "offset",
    "index",
    "event_ms",
    "template_id",
    "template",
    "masked",
    "label",
)


@dataclass(slots=True)
class LineBatch:
    """A ``lines`` record: lines of one system read from one input partition, in input order (``LINE_ROW``).

    ``upto`` makes the record a progress mark of a system merged after mining (``SystemSettings.merged``; it then
    has no rows): every line of the system read from the input partition at offsets up to ``upto`` that is bound for
    this ``lines`` partition was written before it."""

    system: str
    topic: str  # the input topic and partition the rows' offsets are in
    partition: int
    rows: list[list[Any]]
    upto: int | None = None

    def header(self) -> dict[str, Any]:
        header = {"v": FORMAT, "system": self.system, "topic": self.topic, "partition": self.partition}
        if self.upto is not None:
            header["upto"] = self.upto
        return header

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LineBatch:
        system, topic, partition, rows = _header(d)
        for at, row in enumerate(rows):
            if not isinstance(row, list) or len(row) not in (len(LINE_ROW), len(KEYED_LINE_ROW)):
                raise RecordError(f"rows[{at}]: a lines row is an array of {len(LINE_ROW)} or {len(KEYED_LINE_ROW)}")
        upto = int64_field(d, "upto") if "upto" in d else None
        if upto is not None and rows:
            raise RecordError("a progress mark ('upto') carries no rows")
        return cls(system, topic, partition, rows, upto)


@dataclass(slots=True)
class SessionBatch:
    """A ``sessions`` record: copies of lines one ``lines`` record (``topic``, ``partition``, ``offset``: the
    upstream record) routed to one partition of ``sessions``, all of one system (``SESSION_ROW``)."""

    system: str
    topic: str
    partition: int
    offset: int
    rows: list[list[Any]]
    # A progress mark passed on by the parse stage (no rows): ``[input topic, input partition, offset]``, every line
    # of the system up to it that the upstream ``lines`` partition held has been written before this record.
    upto: list[Any] | None = None

    def header(self) -> dict[str, Any]:
        header = {
            "v": FORMAT,
            "system": self.system,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }
        if self.upto is not None:
            header["upto"] = self.upto
        return header

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionBatch:
        """Checked as format 1's SessionLine was: the header, each row's length and its event time (what the session
        stage orders by); the other fields' types are not checked again (only the parse stage writes the topic)."""
        system, topic, partition, rows = _header(d)
        offset = int64_field(d, "offset")
        for at, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(SESSION_ROW):
                raise RecordError(f"rows[{at}]: a sessions row is an array of {len(SESSION_ROW)}")
            event_ms = row[6]
            if isinstance(event_ms, bool) or not isinstance(event_ms, int):
                raise RecordError(f"rows[{at}]: event_ms must be an integer, not {json_type(event_ms)}")
        return cls(system, topic, partition, offset, rows, _session_mark(d, rows))


def _session_mark(d: dict[str, Any], rows: list[Any]) -> list[Any] | None:
    upto = d.get("upto")
    if upto is None:
        return None
    if rows:
        raise RecordError("a progress mark ('upto') carries no rows")
    if (
        not isinstance(upto, list)
        or len(upto) != 3
        or not isinstance(upto[0], str)
        or any(isinstance(v, bool) or not isinstance(v, int) for v in upto[1:])
    ):
        raise RecordError(f"field 'upto' must be [input topic, partition, offset], not {upto!r:.80}")
    return upto


def session_window_line(row: list[Any]) -> dict[str, Any]:
    """The window line a ``sessions`` row carries, as ``WindowLine.to_dict`` writes it (the form windowers hold)."""
    return window_line_dict(*row[2:])


def _header(d: dict[str, Any]) -> tuple[str, str, int, list[Any]]:
    rows = d.get("rows")
    if not isinstance(rows, list):
        raise RecordError(f"field 'rows' must be an array, not {json_type(rows)}")
    return text_field(d, "system", empty=False), text_field(d, "topic"), int64_field(d, "partition"), rows


def is_batch(d: dict[str, Any]) -> bool:
    return d.get("v") == FORMAT


def batch_values(header: dict[str, Any], rows: list[list[Any]], max_rows: int, max_bytes: int) -> Iterator[bytes]:
    """``rows`` in order under ``header``, as records of at most ``max_rows`` rows and ``max_bytes`` bytes (a single
    larger row travels alone). Encodes each record once; one that comes out too large is halved and encoded again.

    Raises what orjson raises (an integer past 64 bits, a lone surrogate): the ingest stage finds the row and
    dead-letters it alone (``encodable``)."""
    for start in range(0, len(rows), max_rows):
        yield from _sized(header, rows[start : start + max_rows], max_bytes)


def mark_value(batch: LineBatch | SessionBatch) -> bytes:
    """A progress mark's record (``batch.upto`` set, no rows): ``batch_values`` writes no record for no rows."""
    return orjson.dumps({**batch.header(), "rows": []})


def _sized(header: dict[str, Any], rows: list[list[Any]], max_bytes: int) -> Iterator[bytes]:
    value = orjson.dumps({**header, "rows": rows})
    if len(value) <= max_bytes or len(rows) == 1:
        yield value
        return
    half = len(rows) // 2
    yield from _sized(header, rows[:half], max_bytes)
    yield from _sized(header, rows[half:], max_bytes)


def encodable(row: list[Any]) -> str | None:
    """None when ``row`` encodes as JSON, else why not."""
    try:
        orjson.dumps(row)
    except (TypeError, orjson.JSONEncodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def line_batches_of(envelope: Envelope) -> list[LineBatch]:
    """A format-1 ``lines`` record's lines as batches (consecutive lines of one system and input partition)."""
    batches: list[LineBatch] = []
    for item in envelope.items:
        line = LogLine.from_dict(item.payload)
        source = line.source
        if not batches or (batches[-1].system, batches[-1].topic, batches[-1].partition) != (
            line.system,
            source.topic,
            source.partition,
        ):
            batches.append(LineBatch(line.system, source.topic, source.partition, []))
        row = [source.offset, source.index, line.event_ms, line.content, line.label, line.key_labels]
        if line.drain_key is not None:
            row += [line.drain_key, line.masked]
        batches[-1].rows.append(row)
    return batches


def session_batches_of(envelope: Envelope) -> list[SessionBatch]:
    """A format-1 ``sessions`` record's lines as batches (consecutive lines of one system and upstream record)."""
    batches: list[SessionBatch] = []
    for item in envelope.items:
        hop = SessionLine.from_dict(item.payload)
        topic, partition, offset, sub = item.upstream
        last = batches[-1] if batches else None
        if last is None or (last.system, last.topic, last.partition, last.offset) != (hop.system, *item.upstream[:3]):
            batches.append(SessionBatch(hop.system, topic, partition, offset, []))
        line = hop.line
        batches[-1].rows.append(
            [sub, item.key, *(line[name] for name in SESSION_ROW[2:5]), line.get("index", 0)]
            + [line[name] for name in SESSION_ROW[6:]]
        )
    return batches


def format_1_items(batch: LineBatch | SessionBatch) -> Iterator[Routed]:
    """The batch's lines as format 1 writes them (``settings.internal_format: 1``, for readers that know no other)."""
    if isinstance(batch, LineBatch):
        for offset, index, event_ms, content, label, key_labels, *keyed in batch.rows:
            source = SourceRef(batch.topic, batch.partition, offset, index)
            line = LogLine(batch.system, content, event_ms, source, label, key_labels, *keyed)
            yield Routed((batch.topic, batch.partition, offset, index), line.to_dict())
        return
    for row in batch.rows:
        hop = SessionLine(batch.system, session_window_line(row))
        yield Routed((batch.topic, batch.partition, batch.offset, row[0]), hop.to_dict(), row[1])
