"""The metric names each adaptlog process really exports: its collectors, built as the process builds them, served by
the real operations endpoint (stream.ops_http.OpsServer) and scraped over HTTP. No broker and no model are needed:
a family with no samples yet still shows its ``# TYPE`` line, and that is what names it.

Names are given as PromQL reads them: a counter ``x`` as ``x_total``, a histogram as its base name (with its
``_bucket``, ``_sum`` and ``_count`` series), a gauge as is. prometheus_client's ``_created`` series are left out.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request

from prometheus_client import CollectorRegistry

from stream.inference.metrics import InferenceMetrics
from stream.notify.worker import NotifyMetrics
from stream.ops_http import BuildInfoCollector, OpsServer
from stream.pipeline.checkpoint import CheckpointStore
from stream.pipeline.kafka_clients import make_producer
from stream.pipeline.metrics import StageCountsCollector
from stream.pipeline.worker import build_runners
from stream.settings import Settings
from trainer.feedback.service import TrainerMetrics

ROLES = ("stream", "inference", "notify", "trainer")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
_TYPE = re.compile(r"^# TYPE (\w+) (\w+)$")


def scrape(registry: CollectorRegistry) -> str:
    """/metrics of ``registry`` through a real OpsServer on a free loopback port."""

    async def served() -> str:
        server = OpsServer(0, registry, host="127.0.0.1")
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        finally:
            server.close()

    return asyncio.run(served())


def names_in(exposition: str) -> dict[str, str]:
    """PromQL name -> type of every family in a text exposition (see the module docstring)."""
    names: dict[str, str] = {}
    for line in exposition.splitlines():
        match = _TYPE.match(line)
        if match is None:
            continue
        name, kind = match.groups()
        if name.endswith("_created"):  # prometheus_client's creation time of a counter or histogram: not ours
            continue
        if kind == "counter":
            name = name.removesuffix("_total") + "_total"
        names[name] = kind
    return names


def stream_registry(settings: Settings) -> CollectorRegistry:
    """The registry `adaptlog run` serves (stream.pipeline.worker.run_worker), over idle stage runners."""

    async def build() -> CollectorRegistry:
        producer = make_producer(settings)  # never started: the runners only hold it
        runners = build_runners(settings, producer, CheckpointStore(settings, producer), 1)
        registry = CollectorRegistry()
        registry.register(StageCountsCollector(runners, settings.group_prefix))
        registry.register(BuildInfoCollector("stream"))
        await producer.stop()  # never started: this only closes what its constructor opened
        return registry

    return asyncio.run(build())


def exported() -> dict[str, dict[str, str]]:
    """role -> {PromQL name: type} for each process's /metrics."""
    settings = Settings(bootstrap_servers="127.0.0.1:9")
    inference = InferenceMetrics()
    inference.watch_serving(lambda: {"hdfs": "1"})  # as the worker registers its host's serving versions
    registries = {
        "stream": stream_registry(settings),
        "inference": inference.registry,
        "notify": NotifyMetrics().registry,
        "trainer": TrainerMetrics().registry,
    }
    return {role: names_in(scrape(registry)) for role, registry in registries.items()}


def all_names() -> set[str]:
    """Every exported name, and each histogram's series names as well (what a PromQL expression may name)."""
    names: set[str] = set()
    for families in exported().values():
        for name, kind in families.items():
            names.add(name)
            if kind == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SERIES)
    return names


def promql_metric_names(expression: str) -> set[str]:
    """The adaptlog metric names an expression reads (every adaptlog_* identifier not inside a label matcher's
    value; label values are quoted, so quoted text is dropped first)."""
    unquoted = re.sub(r'"[^"]*"', '""', expression)
    return set(re.findall(r"\badaptlog_\w+", unquoted))
