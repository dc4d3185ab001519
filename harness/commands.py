"""The `adaptlog` command as a subprocess of this interpreter (``-m stream``): run to completion (``adaptlog``), or in
the background and stopped as Kubernetes stops a pod (``start_adaptlog``, ``stop_process``); ``clean_env`` is an
environment without this process's ``ADAPTLOG_`` settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``ADAPTLOG_`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTLOG_")}
    return env | extra


def adaptlog(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``adaptlog *args`` as a subprocess (this interpreter, ``-m stream``), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "stream", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def ctrl_c_as_from_a_shell() -> None:
    """A ``preexec_fn``: the child takes SIGINT as a command started from an interactive shell does, whatever this
    test process does with it. Children inherit an ignored or blocked SIGINT across exec; in one CI run a trainer
    started by a pytest-xdist worker (after that worker's broker tests) trained to the end through a Ctrl-C, and the
    interrupt test proves only what the command does with a SIGINT it is given."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_adaptlog(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``adaptlog <command>`` in the background (this interpreter, ``-m stream``), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream", command], env=env, stdout=out, stderr=out)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL where it has not exited within 60 s; nothing for a process that has exited already."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
