"""Nothing reaches a model hub: every family builds and scores with the network blocked and no HF_HUB_OFFLINE.

The child process replaces socket connect with one that refuses anything but loopback, and runs without the
HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE variables the rest of the suite sets, so only our own local_files_only
loading keeps it offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import socket, sys
    attempts = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(host)
            raise OSError(f"network blocked in this test: {address}")
        return real_connect(self, address)

    socket.socket.connect = guarded
    socket.create_connection = lambda address, *a, **k: guarded(socket.socket(), address)

    from stream.model.detector import WindowText
    from stream.model.families import family_class

    window = WindowText(("Receiving block <*> src: <*> dest: <*>", "kernel panic"), ("Receiving block 1", "panic"))
    for family, config in (("translog", {}), ("logtransfer", {}), ("logllm", {"max_lines": 4})):
        score = family_class(family).create(config).scores([window])[0]
        assert 0.0 <= score <= 1.0, (family, score)
        print(family, "ok", flush=True)
    print("attempts", attempts)
    sys.exit(1 if attempts else 0)
    """
)


def test_every_family_loads_and_scores_with_the_network_blocked():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [line.split()[0] for line in done.stdout.splitlines() if line.endswith(" ok")] == [
        "translog",
        "logtransfer",
        "logllm",
    ]
    assert "attempts []" in done.stdout
