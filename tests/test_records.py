"""Window records: the stream's fast window encoding is byte for byte the record's own, and ids never change."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from stream.records import ANOMALOUS, NORMAL, Window, WindowLine, encode, encode_window, window_id_for


def lines(labels: list[str | None]) -> tuple[WindowLine, ...]:
    return tuple(
        WindowLine(
            topic="logs-ü",
            partition=i % 3,
            offset=1_000 + i,
            event_ms=1_600_000_000_000 + i,
            template_id=i % 2,
            template=f'Receiving block <*> src: <*> "quoted" {i % 2}',
            masked=f"Receiving block blk_<*> src: /<*> ünïcode {i}",
            label=label,
        )
        for i, label in enumerate(labels)
    )


def historic_window_id(system: str, policy: str, key: str, window_lines: tuple[WindowLine, ...]) -> str:
    """The id as adaptlog first computed it (one digest update per line): feedback and alerts key on it."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{system}\x1f{policy}\x1f{key}".encode())
    for line in window_lines:
        digest.update(f"\x1e{line.topic}\x1f{line.partition}\x1f{line.offset}".encode())
    return digest.hexdigest()


@pytest.mark.parametrize(
    "labels",
    [[None] * 5, [NORMAL] * 4, [NORMAL, ANOMALOUS, NORMAL], [NORMAL, None, NORMAL], [ANOMALOUS, None], []],
)
def test_encode_window_writes_the_bytes_of_the_window_record(labels: list[str | None]) -> None:
    window_lines = lines(labels)
    record = Window(
        window_id_for("hdfs", "session", "blk_7", window_lines),
        "hdfs",
        "session",
        "blk_7",
        5,
        9,
        "gap",
        window_lines,
    )
    fast = encode_window("hdfs", "session", "blk_7", 5, 9, "gap", [line.to_dict() for line in window_lines])
    assert fast == encode(record)
    assert Window.from_dict(orjson.loads(fast)) == record
    assert orjson.loads(fast)["label"] == record.label


def test_window_ids_are_the_ids_adaptlog_always_gave() -> None:
    window_lines = lines([NORMAL] * 30)
    assert window_id_for("bgl", "count_tumbling", "", window_lines) == historic_window_id(
        "bgl", "count_tumbling", "", window_lines
    )
    assert window_id_for("bgl", "count_tumbling", "", ()) == historic_window_id("bgl", "count_tumbling", "", ())


def test_encode_window_refuses_a_line_missing_a_field() -> None:
    broken = lines([NORMAL])[0].to_dict()
    del broken["masked"]
    with pytest.raises(KeyError, match="masked"):
        encode_window("hdfs", "session", "blk_7", 5, 9, "gap", [broken])
