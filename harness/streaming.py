"""Test support for the stream pipeline: per-test settings on the session broker, reading topics back, a worker's
environment, and the operations endpoint over HTTP."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from stream.pipeline.kafka_clients import assign_from_beginning, make_consumer
from stream.settings import Settings, SystemSettings, Topics, load_settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BLOCK = re.compile(r"blk_-?\d+")


def settings_for(
    bootstrap: str, prefix: str, idempotent: bool = True, checkpoint_interval_ms: int = 1000, **overrides: Any
) -> Settings:
    """Settings whose topics and consumer groups are unique to one test (checkpoints more often than in production,
    so that crash tests exercise restores from recent checkpoints)."""
    topics = Topics.prefixed(prefix)
    return load_settings(
        bootstrap_servers=bootstrap,
        topics=topics,
        group_prefix=prefix,
        idempotent_producer=idempotent,
        checkpoint_interval_ms=checkpoint_interval_ms,
        **overrides,
    )


def hdfs_system(idle_timeout_ms: int) -> SystemSettings:
    return SystemSettings(
        format="hdfs",
        drain={"depth": 4, "sim_th": 0.5},
        window={"kind": "session", "gap_ms": 24 * 3600 * 1000, "idle_timeout_ms": idle_timeout_ms},
        session_key_pattern=r"blk_-?\d+",
    )


def block_lines(path: Path, max_lines: int | None = None) -> dict[str, list[int]]:
    """Ground truth: block id -> the 0-based line numbers (= offsets when replayed into a fresh topic) naming it,
    among the first ``max_lines`` lines (all by default)."""
    opener = gzip.open if path.suffix == ".gz" else open
    blocks: dict[str, list[int]] = defaultdict(list)
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        for number, line in enumerate(itertools.islice(handle, max_lines)):
            for block in dict.fromkeys(BLOCK.findall(line)):
                blocks[block].append(number)
    return dict(blocks)


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    """The stream workers (ingest, parse, session) in this process for the duration of the block."""
    from stream.pipeline.worker import run_worker

    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, report_every_s=5))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def count_records(settings: Settings, topic: str) -> int:
    """How many records ``topic`` holds now (end minus beginning offsets, all partitions); 0 if it has none yet."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = await assign_from_beginning(consumer, topic, timeout_s=1.0)
        if not tps:
            return 0
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)
    finally:
        await consumer.stop()


async def read_topic(
    settings: Settings, topic: str, *, until: int | None = None, quiet_s: float = 5.0, timeout_s: float = 120.0
) -> list[dict[str, Any]]:
    """All JSON records of a topic: stops once ``until`` records are read and none came for a short while, or
    when none came for ``quiet_s``, or at ``timeout_s``."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        await assign_from_beginning(consumer, topic, timeout_s)
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(orjson.loads(r.value) for r in records)
                last = time.monotonic()
            idle = time.monotonic() - last
            if until is not None and len(out) >= until and idle >= 1.0:
                break
            if until is None and idle >= quiet_s:
                break
    finally:
        await consumer.stop()
    return out


def worker_env(settings: Settings, systems_file: Path, base: dict[str, str]) -> dict[str, str]:
    """Environment for an ``adaptlog run`` subprocess that uses the same topics and groups as ``settings``."""
    env = dict(base)
    env.update(
        {
            "ADAPTLOG_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "ADAPTLOG_GROUP_PREFIX": settings.group_prefix,
            "ADAPTLOG_IDEMPOTENT_PRODUCER": str(settings.idempotent_producer).lower(),
            "ADAPTLOG_CHECKPOINT_INTERVAL_MS": str(settings.checkpoint_interval_ms),
            "ADAPTLOG_SYSTEMS_FILE": str(systems_file),
        }
    )
    for name, topic in settings.topics.model_dump().items():
        env[f"ADAPTLOG_TOPICS__{name.upper()}"] = topic
    if settings.input_topics:
        env["ADAPTLOG_INPUT_TOPICS"] = json.dumps(list(settings.input_topics))
    return env


def write_systems_file(path: Path, systems: dict[str, SystemSettings]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"systems": {name: s.model_dump() for name, s in systems.items()}}))
    return path


def free_port() -> int:
    """A TCP port nothing listens on now (for a worker's metrics endpoint in a test or bench)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(port: int, name: str) -> float:
    """One sample's value from a worker's /metrics on ``port`` (the first line starting with ``name``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name):
                return float(line.split()[-1])
    raise RuntimeError(f"{name} is missing from the worker's /metrics on port {port}")


def ops_get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` of an operations endpoint on loopback ``port``: the status and the body, error statuses included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def check_sessions(windows: list[dict], truth: dict[str, list[int]]) -> None:
    """Every block in a window with exactly its lines; repeats only as identical records with the same id."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for window in windows:
        by_key[window["key"]].append(window)
    assert set(by_key) == set(truth)
    for block, copies in by_key.items():
        first = copies[0]
        assert all(copy == first for copy in copies), f"{block}: differing windows {[c['window_id'] for c in copies]}"
        offsets = [line["offset"] for line in first["lines"]]
        missing, extra = sorted(set(truth[block]) - set(offsets)), sorted(set(offsets) - set(truth[block]))
        assert offsets == truth[block], f"{block}: lines missing {missing}, extra {extra}, or out of source order"


def until_logged(logs: list[Path], text: str, timeout_s: float = 60.0) -> None:
    """Block until every log in ``logs`` holds ``text`` (a worker process's "assigned", say); AssertionError naming
    the logs still without it after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not all(log.exists() and text in log.read_text(errors="replace") for log in logs):
        missing = [str(log) for log in logs if not (log.exists() and text in log.read_text(errors="replace"))]
        assert time.monotonic() < deadline, f"no {text!r} within {timeout_s} s in {missing}"
        time.sleep(0.25)
