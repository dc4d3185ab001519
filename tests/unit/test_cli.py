"""The `adaptlog` command line: replay's refusals, settings errors at start, and exit codes (2 usage or a wrong
setting, 1 failure, 130 interrupted). Replay then tail on a broker: tests/broker/test_cli_broker.py."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from harness.commands import adaptlog, clean_env, ctrl_c_as_from_a_shell
from harness.streaming import DATA
from stream.logs import JsonFormatter


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({}, "bootstrap_servers"),
        ({"ADAPTLOG_BOOTSTRAP_SERVERS": "localhost:9092", "ADAPTLOG_SECURITY_PROTOCOL": "SASL_SSL"}, "sasl"),
        ({"ADAPTLOG_SYSTEMS_FILE": "/no/such/systems.yaml"}, "systems_file"),
        ({"ADAPTLOG_INTERNAL_PARTITIONS": "zero"}, "internal_partitions"),
    ],
)
def test_run_with_a_wrong_setting_exits_2_naming_it(extra: dict[str, str], named: str) -> None:
    result = adaptlog("run", env=clean_env(**extra), timeout=60)
    assert result.returncode == 2
    assert "configuration error" in result.stderr and named in result.stderr


def test_replay_refuses_an_unknown_system_and_a_missing_file(tmp_path: Path) -> None:
    env = clean_env(ADAPTLOG_BOOTSTRAP_SERVERS="127.0.0.1:9")
    unknown = adaptlog("replay", str(DATA / "bgl" / "BGL_2k.log"), "--system", "nosuch", env=env)
    assert unknown.returncode == 2 and "unknown system 'nosuch'" in unknown.stderr
    missing = adaptlog("replay", str(tmp_path / "none.log"), "--system", "bgl", env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_infer_without_a_registry_fails_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = adaptlog("infer", "--registry", str(missing), env=clean_env(ADAPTLOG_BOOTSTRAP_SERVERS="127.0.0.1:9"))
    assert result.returncode == 1
    assert f"registry {missing}: no such directory" in result.stderr
    result = adaptlog("infer", env=clean_env(ADAPTLOG_BOOTSTRAP_SERVERS="127.0.0.1:9"))
    assert result.returncode == 2 and "inference.registry" in result.stderr


def test_json_log_lines_are_objects_with_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("adaptlog.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR" and entry["logger"] == "adaptlog.x" and entry["message"] == "failed here"
    assert "ValueError: boom" in entry["exception"] and entry["ts"].endswith("+00:00")


@pytest.mark.parametrize("level", ["loud", "", "5"])
def test_a_bad_log_level_is_a_usage_error_not_a_traceback(level: str) -> None:
    result = adaptlog("--log-level", level, "run", env=clean_env(ADAPTLOG_BOOTSTRAP_SERVERS="127.0.0.1:9"), timeout=60)
    assert result.returncode == 2
    assert "argument --log-level: invalid choice" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: adaptlog")


def test_log_level_takes_any_case(tmp_path: Path) -> None:
    """Past the parser (the replay's missing file is what stops it), in lower and mixed case alike."""
    for level in ("debug", "Warning", "ERROR"):
        env = clean_env(ADAPTLOG_BOOTSTRAP_SERVERS="127.0.0.1:9")
        result = adaptlog("--log-level", level, "replay", str(tmp_path / "none.log"), "--system", "bgl", env=env)
        assert result.returncode == 2 and "no such file" in result.stderr, result.stderr
        assert "--log-level" not in result.stderr


def test_an_interrupt_exits_130_with_a_short_message() -> None:
    """SIGINT while `tail` waits on a broker that never answers (a listening socket: connects, then silence)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(60)
        env = clean_env(ADAPTLOG_BOOTSTRAP_SERVERS=f"127.0.0.1:{silent.getsockname()[1]}")
        process = subprocess.Popen(
            [sys.executable, "-m", "stream", "tail", "logs", "--timeout", "60"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_as_from_a_shell,
        )
        try:
            connection, _ = silent.accept()  # the process is inside the command now; held open, never answered
            with connection:
                process.send_signal(signal.SIGINT)
                _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr.startswith("adaptlog: interrupted\n") and "Traceback" not in stderr
