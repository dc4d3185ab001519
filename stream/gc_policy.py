"""The garbage-collector setting of adaptlog's long-running workers (``adaptlog run``, ``infer``, ``demo``).

A worker allocates a few container objects per log line (decoded JSON, line dicts, tuples, records) and keeps
many alive in open windows (an HDFS replay holds ~11k open sessions with their lines). With CPython's default
generation-0 threshold of 700 allocations the cyclic collector ran every few hundred lines and re-traversed the
survivors: about 20% of the stream stages' CPU time (``bench/pipeline_bench.py``, HDFS: 27 against 21 us a line
of CPU). Nothing on the hot path builds reference cycles, so reference counting frees it and the collector finds
almost nothing; running it 30x less often costs little memory. Above ~5,000 the gain levels off.
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 10, 10)  # generation 0 (allocations), then collections of the younger generation


def tune_for_throughput() -> None:
    gc.set_threshold(*THRESHOLDS)
