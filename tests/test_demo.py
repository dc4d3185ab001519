"""`adaptlog demo` (what `make demo` runs) works from an installed package, on its embedded broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_on_the_embedded_broker_and_summarizes() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTLOG_")}
    result = subprocess.run(
        [sys.executable, "-m", "stream", "--log-level", "WARNING", "demo", "--timeout", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "starting the embedded broker (Tansu)" in out
    assert "110 windows,  4519 lines" in out  # HDFS_5k: one session per block
    assert "100 windows,  2000 lines" in out  # BGL_2k: tumbling 20
    assert "4 dead letters:" in out
    for reason in ("invalid UTF-8", "invalid JSON", "unknown system 'mainframe'", "neither epoch ms nor ISO 8601"):
        assert reason in out
