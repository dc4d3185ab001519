"""Prometheus metrics of one inference worker, on its own registry (several workers in one test process must not
collide), served with /healthz by stream.ops_http on the process's metrics port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class InferenceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.windows_in = Counter("adaptlog_infer_windows", "windows consumed", registry=r)
        self.verdicts = Counter(
            "adaptlog_infer_verdicts", "verdicts produced", ["system", "adapter", "label"], registry=r
        )
        self.alerts = Counter("adaptlog_infer_alerts", "alert records published", ["status"], registry=r)
        self.dead_letters = Counter("adaptlog_infer_dead_letters", "window records that could not be read", registry=r)
        self.refused = Counter("adaptlog_infer_artifacts_refused", "adapter versions refused on load", registry=r)
        self.swaps = Counter("adaptlog_infer_adapter_swaps", "adapter versions swapped in", registry=r)
        self.scored = Counter("adaptlog_infer_windows_scored", "windows the model read", registry=r)
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
