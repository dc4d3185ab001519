"""What operators read: the README's metric list is exactly what the processes export (scraped from the real
operations endpoint), the serving adapter version is an info series per target (not a label of the verdict counter),
and dead-letter reasons reach metrics as a bounded set of categories."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from harness.exporters import ROLES, exported, names_in, scrape
from harness.inference import publish_nudged_adapter, small_registry, stream_window
from stream.decode import Decoder, RawRecord
from stream.inference.model_host import ModelHost
from stream.inference.worker import InferenceWorker
from stream.pipeline.checkpoint import CheckpointStore
from stream.pipeline.kafka_clients import make_consumer, make_producer
from stream.pipeline.metrics import StageCountsCollector
from stream.pipeline.worker import build_runners
from stream.reasons import OTHER, REASON_CATEGORIES, reason_category
from stream.records import encode
from stream.settings import InferenceSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
RECEIVING = "Receiving block <*> src: <*> dest: <*>"


def readme_metrics() -> dict[str, set[str]]:
    """role -> the metric names the README's "Metrics" table lists for it (| `name` | type | labels | role |)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### Metrics\n", 1)[1].split("\n#", 1)[0]
    listed: dict[str, set[str]] = {role: set() for role in ROLES}
    for row in re.finditer(r"^\| `(adaptlog_\w+)` \| \w+ \| [^|]* \| (\w+) \|$", section, re.MULTILINE):
        listed[row.group(2)].add(row.group(1))
    return listed


def test_readme_lists_exactly_the_metrics_each_process_exports() -> None:
    listed = readme_metrics()
    for role, families in exported().items():
        assert listed[role] == set(families), (
            f"{role}: README lists but not exported {sorted(listed[role] - set(families))}; "
            f"exported but not in the README {sorted(set(families) - listed[role])}"
        )


def window_record(offset: int, system: str) -> ConsumerRecord:
    value = encode(stream_window(system, [RECEIVING, RECEIVING], key=f"w{offset}"))
    return ConsumerRecord("windows", 0, offset, 0, 0, None, value, None, 0, len(value), ())


def test_serving_version_is_an_info_series_per_target_and_verdicts_carry_no_version(tmp_path: Path) -> None:
    registry, base = small_registry(tmp_path / "registry")  # threshold 0: every verdict anomalous, so alerted
    publish_nudged_adapter(registry, base, "hdfs", seed=1)
    settings = Settings(inference=InferenceSettings(registry=str(registry.root)))
    worker = InferenceWorker(settings, ModelHost(registry, device="cpu"))

    def judge(offset: int) -> None:
        async def run() -> None:
            decoded, _ = worker._decode([window_record(offset, "hdfs"), window_record(offset + 1, "bgl")])
            scored, _ = await worker._score(decoded)
            worker._publications(scored)

        asyncio.run(run())

    try:
        worker._refresh()
        judge(0)
        first = scrape(worker.metrics.registry)
        publish_nudged_adapter(registry, base, "hdfs", seed=2)
        worker._refresh()
        judge(2)
        second = scrape(worker.metrics.registry)
    finally:
        worker._executor.shutdown()
    assert 'adaptlog_infer_serving_adapter_info{target="hdfs",version="v0001"} 1.0' in first
    assert 'adaptlog_infer_serving_adapter_info{target="hdfs",version="v0002"} 1.0' in second
    assert "v0001" not in second  # the swapped-out version's series ends; bgl serves no adapter: no series
    assert 'target="bgl"' not in second
    # both versions' verdicts count in one series per system and label
    assert 'adaptlog_infer_verdicts_total{label="anomalous",system="hdfs"} 2.0' in second
    verdict_lines = [line for line in second.splitlines() if line.startswith("adaptlog_infer_verdicts_total{")]
    assert verdict_lines and all("adapter" not in line and "version" not in line for line in verdict_lines)
    alerts = [line for line in second.splitlines() if line.startswith("adaptlog_infer_alerts_total{")]
    assert any('system="hdfs"' in line for line in alerts), alerts
    assert all(re.search(r'severity="(info|warning|critical)"', line) for line in alerts), alerts
    assert names_in(second)["adaptlog_build_info"] == "gauge"


# Records that each fail in a different way, as shippers and producers really get them wrong.
BAD_RECORDS: list[tuple[bytes | None, tuple[tuple[str, bytes], ...], str]] = [
    (None, (), "empty"),
    (b"\xff\xfe broken", (("system", b"raw"),), "not_utf8"),
    (b'{"message": "x", "system": "raw"', (), "json"),
    (b'{"message": 5, "system": "raw"}', (), "json"),
    (b'{"msg": "hello", "system": "raw"}', (), "no_message"),
    (b'{"message": "x", "system": "nosuch"}', (), "unknown_system"),
    (b'{"message": "x"}', (), "no_system"),
    (b'{"message": "x", "system": "raw", "ts": "yesterday"}', (), "time"),
    (b'{"message": "x", "system": "raw", "ts": 1733443200}', (), "time"),  # seconds read as ms: 1970
    (b'{"message": "x", "system": "raw", "label": "maybe"}', (), "label"),
    (b"x" * 2_000_000, (("system", b"raw"),), "too_large"),
    (b"not an hdfs line", (("system", b"hdfs"),), "format"),
]


@pytest.mark.parametrize(("value", "headers", "category"), BAD_RECORDS)
def test_dead_letter_reasons_fall_into_their_category(value, headers, category) -> None:
    decoder = Decoder(Settings())
    (letter,) = decoder.decode_lines(RawRecord("logs", 0, 7, value, headers, 1_765_000_000_000))
    assert reason_category(letter.reason) == category, letter.reason


def test_window_stage_reasons_and_unknown_text_have_categories() -> None:
    assert reason_category("late: event time 5 is past its window's close (beyond the grace period)") == "late"
    assert reason_category("future: event time 9 is 5 ms ahead of its arrival at 4 (more than ...)") == "future"
    assert reason_category("no session key in the line") == "session_key"
    assert reason_category("the line names 40 session keys, more than max_session_keys (16)") == "session_key"
    assert reason_category("JSONEncodeError: Integer exceeds 64-bit range") == "json"
    assert reason_category("ZeroDivisionError: division by zero") == "error"
    assert reason_category("something nobody wrote a rule for") == OTHER
    assert len(REASON_CATEGORIES) == len(set(REASON_CATEGORIES)) < 20  # a bounded label


def test_a_scrape_during_a_rebalance_skips_a_partition_no_longer_assigned() -> None:
    """The collector runs on the HTTP thread: a partition the loop still lists but the group has just taken away must
    not fail the scrape (aiokafka asserts a partition is assigned before it tells its highwater)."""
    settings = Settings(bootstrap_servers="127.0.0.1:9")

    async def scraped() -> str:
        producer = make_producer(settings)
        (runner, *_) = build_runners(settings, producer, CheckpointStore(settings, producer), 1)
        runner._consumer = make_consumer(settings, group_id="g")  # never started: it has no assignment
        runner._positions[TopicPartition("logs", 0)] = 10
        await producer.stop()
        registry = CollectorRegistry()
        registry.register(StageCountsCollector([runner], settings.group_prefix))
        try:
            return generate_latest(registry).decode()
        finally:
            await runner._consumer.stop()

    body = asyncio.run(scraped())
    assert "# TYPE adaptlog_stream_consumer_lag gauge" in body
    assert "adaptlog_stream_consumer_lag{" not in body
