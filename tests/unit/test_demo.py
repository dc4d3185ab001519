"""`adaptlog demo` (what `make demo` runs) works from an installed package, on its embedded broker: it trains a source
model and a target adapter, replays both systems' logs, prints explained alerts and scores the verdicts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_trains_replays_alerts_and_scores_on_the_embedded_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTLOG_")}
    result = subprocess.run(
        [sys.executable, "-m", "stream", "--log-level", "WARNING", "demo"],
        env=env,
        cwd=tmp_path,  # the demo's registry goes to ./.adaptlog/registry
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "starting the embedded broker (Tansu)" in out
    assert "pretraining the source model" in out and "tuning a bgl adapter" in out
    assert (tmp_path / ".adaptlog" / "registry" / "adapters" / "bgl" / "v0001").is_dir()
    assert "110 windows,  4519 lines" in out  # HDFS_5k: one session per block
    assert "170 windows,  3400 lines" in out  # the BGL half no model saw: tumbling 20
    scores = dict(
        re.findall(r"^  (\w+) +\d+ windows \(\d+ anomalous\): precision [\d.]+ recall [\d.]+ F1 ([\d.]+)", out, re.M)
    )
    assert set(scores) == {"hdfs", "bgl"}, out[-3000:]
    assert float(scores["hdfs"]) >= 0.8  # the source system, scored by the base
    assert float(scores["bgl"]) >= 0.5  # the target, by an adapter tuned on at most 30 labeled anomalies
    assert re.search(r"^ALERT open +(hdfs|bgl)", out, re.M)
    assert re.search(r"^ +\+\d\.\d\d  lines [\d,]+ +\S", out, re.M)  # an explanation line under an alert
    assert "4 dead letters:" in out
    for reason in ("invalid UTF-8", "invalid JSON", "unknown system 'mainframe'", "neither epoch ms nor ISO 8601"):
        assert reason in out
