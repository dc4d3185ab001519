"""Prometheus view of a stream worker: each stage's counts (records in, records out per topic, checkpoints), read
from the stage runners at scrape time, so the hot path keeps its plain Counter."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from stream.pipeline.runner import StageRunner


class StageCountsCollector(Collector):
    def __init__(self, runners: Sequence[StageRunner]) -> None:
        self.runners = runners

    def collect(self) -> Iterator[CounterMetricFamily]:
        records_in = CounterMetricFamily("adaptlog_stream_records_in", "records consumed", labels=["stage"])
        records_out = CounterMetricFamily("adaptlog_stream_records_out", "records produced", labels=["stage", "topic"])
        checkpoints = CounterMetricFamily("adaptlog_stream_checkpoints", "checkpoints written", labels=["stage"])
        for runner in self.runners:
            counts = dict(runner.counts)  # a copy: the loop thread updates the Counter while a scrape reads it
            records_in.add_metric([runner.stage], counts.get("records_in", 0))
            checkpoints.add_metric([runner.stage], counts.get("checkpoints", 0))
            for name, count in counts.items():
                if name.startswith("out:"):
                    records_out.add_metric([runner.stage, name.removeprefix("out:")], count)
        yield records_in
        yield records_out
        yield checkpoints
