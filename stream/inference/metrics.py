"""Prometheus metrics of one inference worker, on its own registry (several workers in one test process must not
collide), served with /healthz by stream.ops_http on the process's metrics port."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.ops_http import BuildInfoCollector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class InferenceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.windows_in = Counter("adaptlog_infer_windows", "windows consumed", registry=r)
        # No adapter version label: each publish would start new series. The version is the info metric below.
        self.verdicts = Counter("adaptlog_infer_verdicts", "verdicts produced", ["system", "label"], registry=r)
        self.alerts = Counter(
            "adaptlog_infer_alerts", "alert records published", ["system", "severity", "status"], registry=r
        )
        self.dead_letters = Counter("adaptlog_infer_dead_letters", "window records that could not be read", registry=r)
        self.refused = Counter("adaptlog_infer_artifacts_refused", "adapter versions refused on load", registry=r)
        self.swaps = Counter("adaptlog_infer_adapter_swaps", "adapter versions swapped in", registry=r)
        self.scored = Counter("adaptlog_infer_windows_scored", "windows the model read", registry=r)
        self.scoring_retries = Counter(
            "adaptlog_infer_scoring_retries",
            "batches scored again in process after a transient failure (out of device memory: policy.SCORING)",
            registry=r,
        )
        self.reused = Counter(
            "adaptlog_infer_windows_reused",
            "windows given the verdict of an identical reading (score cache or the same batch), not read again",
            registry=r,
        )
        self.batch_size = Histogram(
            "adaptlog_infer_batch_size", "windows per model batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("adaptlog_infer_queue_depth", "batches waiting for the model", registry=r)
        self.latency = Histogram(
            "adaptlog_infer_latency_seconds",
            "from the window's close (its record timestamp) to its verdict acknowledged by the broker",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "adaptlog_infer_model_seconds", "model time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        r.register(BuildInfoCollector("inference"))

    def watch_serving(self, serving: Callable[[], Mapping[str, str]]) -> None:
        """Export what ``serving()`` returns (target -> adapter version, read at scrape time) as
        ``adaptlog_infer_serving_adapter_info``."""
        self.registry.register(ServingCollector(serving))


class ServingCollector(Collector):
    """``adaptlog_infer_serving_adapter_info{target, version} 1`` per target with an adapter: one series per target
    at a time (the old version's series ends at the swap), so a dashboard shows when each version started serving."""

    def __init__(self, serving: Callable[[], Mapping[str, str]]) -> None:
        self.serving = serving

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "adaptlog_infer_serving_adapter_info",
            "the adapter version serving each target",
            labels=["target", "version"],
        )
        for target, version in sorted(self.serving().items()):
            info.add_metric([target, version], 1)
        yield info
