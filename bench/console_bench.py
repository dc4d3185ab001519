"""The operator console's pages with 10,000 incidents: time per page over real HTTP (uvicorn, in this process).

The view is filled the way the feeds fill it: alert records built by the inference worker's own ``alert_record``
(one verdict each, three templates with weights), decoded by ``decode_alert_record``, plus one window of 20 lines per
incident and 400 templates per system. Each page is fetched ``--repeat`` times with a bearer token; the JSON holds
median and p95 milliseconds. Baselines in the same run, since absolute times on these machines are noisy:
``/healthz`` (the framework's floor) and the same pages over a view of 100 incidents.

    python bench/console_bench.py -> bench/results/console.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402

from stream.console.app import build_app, make_pages  # noqa: E402
from stream.console.outbox import Outbox  # noqa: E402
from stream.console.view import ConsoleView  # noqa: E402
from stream.inference.alerts import Alert  # noqa: E402
from stream.records import (  # noqa: E402
    Cause,
    SeverityPolicy,
    Verdict,
    Window,
    WindowLine,
    alert_record,
    decode_alert_record,
    window_id_for,
)
from stream.settings import Settings  # noqa: E402

SYSTEMS = ("hdfs", "bgl", "thunderbird", "payments", "edge")
TOKEN = "bench-token-0123456789abcdef"
T0 = 1_765_000_000_000


def fill(view: ConsoleView, incidents: int) -> str:
    """``incidents`` incidents over five systems; returns one alert id to open."""
    policy = SeverityPolicy()
    for system in SYSTEMS:
        lines = tuple(
            WindowLine("logs", 0, i, T0 + i, i, f"{system} template {i} <*>", f"{system} template {i} 42")
            for i in range(400)
        )
        view.apply_window(Window(f"seed-{system}", system, "count_tumbling", "", T0, T0 + 400, "count", lines))
    first = ""
    for n in range(incidents):
        system = SYSTEMS[n % len(SYSTEMS)]
        templates = tuple(f"{system} template {(n + k) % 400} <*>" for k in range(3))
        lines = tuple(
            WindowLine(
                "logs", 0, n * 20 + j, T0 + n * 1000 + j, j, templates[j % 3], templates[j % 3].replace("<*>", "7")
            )
            for j in range(20)
        )
        window = Window(
            window_id_for(system, "count_tumbling", "", lines), system, "count_tumbling", "", 0, 1, "count", lines
        )
        view.apply_window(window)
        score = 0.5 + (n % 50) / 100
        causes = tuple(Cause(t, 0.3 - 0.1 * k, (k,)) for k, t in enumerate(templates))
        verdict = Verdict(
            window.window_id, system, "translog", "hdfs/v0001", None, True, score, 0.5, "anomalous",
            T0 + n * 1000, T0 + n * 1000 + 19, 20, causes,
            threshold_rule="f1", supervision="zero-shot",
        )  # fmt: skip
        alert = Alert.opened(system, templates, window.window_id, score, T0 + n * 1000)
        view.apply_alert(decode_alert_record(alert_record(alert, verdict, policy, T0 + n * 1000), policy))
        first = first or alert.alert_id
    return first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> float:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return (time.perf_counter() - started) * 1000


async def measure(incidents: int, repeat: int, tokens: Path) -> dict[str, Any]:
    settings = Settings(console={"tokens_file": tokens, "port": free_port(), "max_incidents": max(incidents, 1)})
    view = ConsoleView(settings.console.max_incidents, max_windows=incidents + 10)
    started = time.perf_counter()
    alert_id = fill(view, incidents)
    fill_s = time.perf_counter() - started
    app = build_app(make_pages(settings, view, None, Outbox(30)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.console.port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{settings.console.port}"
    pages = {
        "healthz": "/healthz",
        "incidents": "/incidents",
        "incidents_filtered": "/incidents?system=bgl&severity=warning&status=open&since=2025-12-06T00:00",
        "incidents_page_100": "/incidents?page=100",
        "incident": f"/incidents/{alert_id}",
        "system": "/systems/bgl",
        "templates": "/systems/bgl/templates",
    }
    out: dict[str, Any] = {"incidents": len(view.incidents), "fill_s": round(fill_s, 3)}
    try:
        for name, path in pages.items():
            times = [await asyncio.to_thread(fetch, base + path) for _ in range(repeat)]
            times.sort()
            out[name] = {
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            }
    finally:
        server.should_exit = True
        await task
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "console.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.json"
        tokens.write_text(json.dumps([{"user": "bench", "role": "operator", "token": TOKEN}]))
        baseline = asyncio.run(measure(100, args.repeat, tokens))
        full = asyncio.run(measure(args.incidents, args.repeat, tokens))
    result = {
        "what": "console page times over HTTP (uvicorn in process, urllib client), median and p95 of --repeat",
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "baseline_100_incidents": baseline,
        f"with_{args.incidents}_incidents": full,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
