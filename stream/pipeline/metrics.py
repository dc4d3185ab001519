"""Prometheus view of a stream worker, read from the stage runners at scrape time, so the hot path keeps its plain
Counters and dicts.

Every label is bounded: stage (three), topic and partition (the deployment's), system (the configured systems: decode
refuses others), reason (``stream.reasons.REASON_CATEGORIES``, never the free text).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream.pipeline.runner import StageRunner


class StageCountsCollector(Collector):
    def __init__(self, runners: Sequence[StageRunner], group_prefix: str) -> None:
        self.runners = runners
        self.group_prefix = group_prefix

    def collect(self) -> Iterator[Metric]:
        records_in = CounterMetricFamily("adaptlog_stream_records_in", "records consumed", labels=["stage"])
        records_out = CounterMetricFamily("adaptlog_stream_records_out", "records produced", labels=["stage", "topic"])
        checkpoints = CounterMetricFamily("adaptlog_stream_checkpoints", "checkpoints written", labels=["stage"])
        checkpoint_bytes = CounterMetricFamily(
            "adaptlog_stream_checkpoint_bytes", "checkpointed state written (compressed bytes)", labels=["stage"]
        )
        checkpoint_last_bytes = GaugeMetricFamily(
            "adaptlog_stream_checkpoint_last_bytes",
            "state written by the stage's last checkpoint (sessions changed since the one before, templates, windows)",
            labels=["stage"],
        )
        checkpoint_seconds = CounterMetricFamily(
            "adaptlog_stream_checkpoint_seconds", "time spent checkpointing (flush, state, commit)", labels=["stage"]
        )
        dead_letters = CounterMetricFamily(
            "adaptlog_stream_dead_letters",
            "dead letters written, by the stage that refused the record and the reason's category",
            labels=["stage", "reason"],
        )
        lag = GaugeMetricFamily(
            "adaptlog_stream_consumer_lag",
            "records between a partition's end and the stage's position (this worker's assigned partitions)",
            labels=["group", "topic", "partition"],
        )
        open_windows = GaugeMetricFamily(
            "adaptlog_stream_open_windows", "windows (sessions) open now", labels=["stage", "system"]
        )
        templates = GaugeMetricFamily(
            "adaptlog_stream_templates", "templates the system's miner holds", labels=["system"]
        )
        event_lag = GaugeMetricFamily(
            "adaptlog_stream_event_time_lag_seconds",
            "now minus the newest event time parsed for the system (grows while its lines are late or stop)",
            labels=["system"],
        )
        held = GaugeMetricFamily(
            "adaptlog_stream_merge_held_lines",
            "mined lines of a keyed system with count or event-time windows that its merge holds until every parse"
            " partition has passed them (grows while a parse partition is behind or down)",
            labels=["system"],
        )
        now_ms = time.time() * 1000
        latest: dict[str, int] = {}
        held_by_system: dict[str, int] = {}
        for runner in self.runners:
            counts = dict(runner.counts)  # a copy: the loop thread updates the Counter while a scrape reads it
            records_in.add_metric([runner.stage], counts.get("records_in", 0))
            checkpoints.add_metric([runner.stage], counts.get("checkpoints", 0))
            checkpoint_bytes.add_metric([runner.stage], runner.checkpoint_bytes)
            checkpoint_last_bytes.add_metric([runner.stage], runner.last_checkpoint_bytes)
            checkpoint_seconds.add_metric([runner.stage], runner.checkpoint_seconds)
            for name, count in counts.items():
                if name.startswith("out:"):
                    records_out.add_metric([runner.stage, name.removeprefix("out:")], count)
            for (stage, reason), count in dict(runner.dead_letters).items():
                dead_letters.add_metric([stage, reason], count)
            group = f"{self.group_prefix}-{runner.stage}"
            for topic, partition, behind in runner.lags():
                lag.add_metric([group, topic, str(partition)], behind)
            windows_by_system: dict[str, int] = {}
            templates_by_system: dict[str, int] = {}
            for stats in runner.system_stats():
                windows_by_system[stats.system] = windows_by_system.get(stats.system, 0) + stats.open_windows
                if stats.templates:
                    templates_by_system[stats.system] = templates_by_system.get(stats.system, 0) + stats.templates
                if stats.latest_event_ms is not None:
                    latest[stats.system] = max(latest.get(stats.system, stats.latest_event_ms), stats.latest_event_ms)
                if stats.held_lines is not None:
                    held_by_system[stats.system] = held_by_system.get(stats.system, 0) + stats.held_lines
            for system, count in windows_by_system.items():
                open_windows.add_metric([runner.stage, system], count)
            for system, count in templates_by_system.items():
                templates.add_metric([system], count)
        for system, event_ms in latest.items():
            event_lag.add_metric([system], max(0.0, (now_ms - event_ms) / 1000))
        for system, count in held_by_system.items():
            held.add_metric([system], count)
        yield from (records_in, records_out, checkpoints, checkpoint_bytes, checkpoint_last_bytes, checkpoint_seconds)
        yield from (dead_letters, lag, open_windows, templates, event_lag, held)
