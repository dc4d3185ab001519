"""Records as log shippers write them to Kafka, built from real log lines (test support).

Each builder takes lines with their event times and returns what the shipper's Kafka output would send for them,
field for field as the configs in docs/inputs.md produce: Fluent Bit's kafka output (``Format json``, float
``@timestamp``), Vector's kafka sink (json codec, RFC 3339 ``timestamp`` with nanoseconds), the OpenTelemetry
Collector's kafka exporter (``otlp_json``: one record per batch of log records), zap's production JSON encoder and
pino's default output. ``python -m harness.shippers`` rewrites the samples in tests/data/inputs from HDFS_5k.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "inputs"
PRESET_FILES = {
    "fluent-bit": "fluent-bit.jsonl",
    "vector": "vector.jsonl",
    "otel": "otel.jsonl",
    "zap": "zap.jsonl",
    "pino": "pino.jsonl",
}
Timed = tuple[str, int]  # (the line as the application wrote it, its event time in epoch ms)


def fluent_bit(lines: Sequence[Timed], systemd: bool = False) -> list[bytes]:
    """tail (``log``) or systemd (``MESSAGE``) input; @timestamp as float seconds (Timestamp_Format double)."""
    key = "MESSAGE" if systemd else "log"
    extra = {"_SYSTEMD_UNIT": "hadoop-hdfs-datanode.service", "_HOSTNAME": "dn-19"} if systemd else {}
    return [orjson.dumps({"@timestamp": ms / 1000, key: line, **extra}) for line, ms in lines]


def vector(lines: Sequence[Timed]) -> list[bytes]:
    """file source -> kafka sink, ``encoding.codec = "json"``."""
    return [
        orjson.dumps(
            {
                "file": "/var/log/hadoop/hdfs/hadoop-hdfs-datanode.log",
                "host": "dn-19",
                "message": line,
                "source_type": "file",
                "timestamp": rfc3339_nanos(ms),
            }
        )
        for line, ms in lines
    ]


def otel(lines: Sequence[Timed], service: str, per_record: int) -> list[bytes]:
    """filelog receiver -> batch -> kafka exporter (``encoding: otlp_json``): ``per_record`` log records a record."""
    return [otel_record(lines[start : start + per_record], service) for start in range(0, len(lines), per_record)]


def otel_record(lines: Sequence[Timed], service: str, log_records: list[dict] | None = None) -> bytes:
    records = [
        {
            "observedTimeUnixNano": str(ms * 1_000_000 + 250_000_000),
            "timeUnixNano": str(ms * 1_000_000),
            "severityNumber": 9,
            "severityText": "INFO",
            "body": {"stringValue": line},
            "attributes": [{"key": "log.file.name", "value": {"stringValue": "hadoop-hdfs-datanode.log"}}],
        }
        for line, ms in lines
    ]
    resource = {
        "attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "host.name", "value": {"stringValue": "dn-19"}},
        ]
    }
    scope = {"scope": {}, "logRecords": records + (log_records or [])}
    return orjson.dumps({"resourceLogs": [{"resource": resource, "scopeLogs": [scope]}]})


def zap(lines: Sequence[Timed]) -> list[bytes]:
    """zap.NewProduction(): ``ts`` as float epoch seconds."""
    return [
        orjson.dumps({"level": "info", "ts": ms / 1000, "caller": "datanode/xceiver.go:143", "msg": line})
        for line, ms in lines
    ]


def pino(lines: Sequence[Timed]) -> list[bytes]:
    """pino(): ``time`` as epoch milliseconds, ``level`` 30 = info."""
    return [orjson.dumps({"level": 30, "time": ms, "pid": 143, "hostname": "dn-19", "msg": line}) for line, ms in lines]


def json_input(lines: Sequence[Timed], system: str) -> list[bytes]:
    """adaptlog's own json records of the same lines (the comparison every preset is held to)."""
    return [orjson.dumps({"system": system, "message": line, "ts": ms}) for line, ms in lines]


def bgl_lines(count: int, start: int = 0) -> list[Timed]:
    """The first ``count`` lines of BGL_2k from ``start``, with their event times, as BGL wrote them."""
    from harness.streaming import DATA
    from stream.settings import load_settings

    fmt = load_settings().systems["bgl"].line_format("bgl")
    raw = (DATA / "bgl" / "BGL_2k.log").read_text(encoding="utf-8").splitlines()[start : start + count]
    texts = [text.split(" ", 1)[1] for text in raw]  # without Loghub's label column, as the system wrote them
    return [(text, fmt.split(text)[1]) for text in texts]  # type: ignore[misc]


def rfc3339_nanos(ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000000Z"


def _write_samples() -> None:
    from harness.streaming import DATA
    from stream.settings import load_settings

    fmt = load_settings().systems["hdfs"].line_format("hdfs")
    raw = (DATA / "hdfs" / "HDFS_5k.log").read_text(encoding="utf-8").splitlines()[:6]
    # Each line at its own second plus a few ms, as a shipper reading the file as it is written would stamp it.
    timed = [(line, fmt.split(line)[1] + 17 * (i + 1)) for i, line in enumerate(raw)]  # type: ignore[operator]
    contents = [(fmt.split(line)[0], ms) for line, ms in timed]  # what a Go or Node service would log itself
    samples = {
        "fluent-bit": fluent_bit(timed[:4]) + fluent_bit(timed[4:], systemd=True),
        "vector": vector(timed),
        "otel": otel(timed, "hdfs", per_record=4),
        "zap": zap(contents),
        "pino": pino(contents),
    }
    for preset, records in samples.items():
        (SAMPLES / PRESET_FILES[preset]).write_bytes(b"".join(r + b"\n" for r in records))


if __name__ == "__main__":
    _write_samples()
