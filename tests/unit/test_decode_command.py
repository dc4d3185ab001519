"""`adaptlog decode`: the shipper samples of docs/inputs.md decode as ingest would, from a file or stdin, with the
exit codes of the other subcommands (0 all decoded, 1 some dead-lettered, 2 bad usage)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from harness.commands import clean_env
from harness.shippers import PRESET_FILES, SAMPLES
from harness.streaming import DATA
from stream.settings import load_settings

HDFS = load_settings().systems["hdfs"].line_format("hdfs")
SIX = (DATA / "hdfs" / "HDFS_5k.log").read_text(encoding="utf-8").splitlines()[:6]
CONTENTS = [HDFS.split(text)[0] for text in SIX]
# the samples stamp line i at its own second + 17 * (i + 1) ms (harness/shippers.py)
EVENT_MS = [HDFS.split(text)[1] + 17 * (i + 1) for i, text in enumerate(SIX)]  # type: ignore[operator]


def decode(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream", "decode", *args],
        input=stdin,
        env=env or clean_env(),
        capture_output=True,
        timeout=120,
    )


def rows(result: subprocess.CompletedProcess) -> list[dict]:
    return [orjson.loads(row) for row in result.stdout.splitlines()]


@pytest.mark.parametrize(
    ("preset", "system", "sources"),
    [
        ("fluent-bit", "hdfs", [[0, i] for i in range(6)]),
        ("vector", "hdfs", [[0, i] for i in range(6)]),
        # two OTLP records of 4 and 2 log records: offset (the record's line) and index in it
        ("otel", "hdfs", [[0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3], [0, 1], [0, 1, 1]]),
        ("zap", "raw", [[0, i] for i in range(6)]),
        ("pino", "raw", [[0, i] for i in range(6)]),
    ],
)
def test_the_documented_shipper_samples_decode_to_the_hdfs_lines(
    preset: str, system: str, sources: list[list[int]]
) -> None:
    # otel names its system itself (service.name hdfs); --system is for records that name none
    args = ["--input-format", preset] + (["--system", system] if preset != "otel" else [])
    result = decode(*args, str(SAMPLES / PRESET_FILES[preset]))
    assert result.returncode == 0, result.stderr
    decoded = rows(result)
    assert [row["kind"] for row in decoded] == ["line"] * 6
    assert [row["system"] for row in decoded] == [system] * 6
    assert [row["content"] for row in decoded] == CONTENTS
    assert [row["event_ms"] for row in decoded] == EVENT_MS
    assert decoded[0]["time"] == "2008-11-09T20:35:18.017Z"
    assert [row["source"] for row in decoded] == [["logs", *source] for source in sources]
    assert f"{len(decoded)} lines, 0 dead letters" in result.stderr.decode()


def test_stdin_and_dead_letters_with_reasons_exit_1() -> None:
    records = b"\n".join(
        [
            (SAMPLES / "fluent-bit.jsonl").read_bytes().splitlines()[0],
            b'{"@timestamp": 1733443200.5, "msg": "a zap record on a fluent-bit topic"}',
            b"",  # a gap between records, not a record
            b'{"@timestamp": 1733443200, "log": "081109 203518 143 INFO dfs.X: y"}',
            b'{"@timestamp": 1733443200000, "log": "081109 203518 143 INFO dfs.X: y"}',  # ms where seconds go
        ]
    )
    result = decode("--system", "hdfs", "--input-format", "fluent-bit", "-", stdin=records)
    assert result.returncode == 1
    kinds = [(row["kind"], row["offset"] if row["kind"] == "deadletter" else row["source"][2]) for row in rows(result)]
    assert kinds == [("line", 0), ("deadletter", 1), ("line", 3), ("deadletter", 4)]
    letters = [row for row in rows(result) if row["kind"] == "deadletter"]
    assert "has no 'log' or 'MESSAGE'" in letters[0]["reason"] and "'msg'" in letters[0]["reason"]
    assert "s after the record's timestamp" in letters[1]["reason"]
    assert all(letter["stage"] == "decode" and letter["original_b64"] for letter in letters)
    assert "4 records: 2 lines, 2 dead letters" in result.stderr.decode()


def test_the_topics_configured_format_applies_without_flags(tmp_path: Path) -> None:
    systems = tmp_path / "systems.yaml"
    systems.write_text(
        "systems:\n  hdfs: {format: hdfs, masks: hdfs, window: {kind: count_tumbling, size: 20}}\n"
        "default_systems: {vector-logs: hdfs}\ninput_formats: {vector-logs: vector}\n"
    )
    env = clean_env(ADAPTLOG_SYSTEMS_FILE=str(systems))
    result = decode("--topic", "vector-logs", str(SAMPLES / "vector.jsonl"), env=env)
    assert result.returncode == 0, result.stderr
    assert [row["content"] for row in rows(result)] == CONTENTS
    assert rows(result)[0]["source"] == ["vector-logs", 0, 0]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--system", "nosuch", "-"], "unknown system 'nosuch'"),
        (["--input-format", "graylog", "-"], "invalid choice: 'graylog'"),
        (["/no/such/file.jsonl"], "no such file"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_usage_exits_2(args: list[str], said: str) -> None:
    result = decode(*args, stdin=b"")
    assert result.returncode == 2
    assert said in result.stderr.decode()
