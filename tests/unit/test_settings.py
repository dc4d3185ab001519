"""Settings: defaults, environment, the YAML systems file, and errors that name the wrong setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stream.errors import ConfigError
from stream.settings import SystemSettings, load_settings


def test_defaults_name_the_topics_and_ready_systems() -> None:
    settings = load_settings()
    assert (settings.topics.logs, settings.topics.windows, settings.topics.alerts) == ("logs", "windows", "alerts")
    assert (settings.topics.feedback, settings.topics.model_updates, settings.topics.deadletter) == (
        "feedback",
        "model-updates",
        "deadletter",
    )
    assert {"hdfs", "bgl", "thunderbird"} <= set(settings.systems)
    assert settings.max_line_bytes == 64 * 1024 and settings.inputs == ("logs",)


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTLOG_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka-1:9092")
    monkeypatch.setenv("ADAPTLOG_TOPICS__LOGS", "syslog")
    monkeypatch.setenv("ADAPTLOG_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("ADAPTLOG_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("ADAPTLOG_SASL_USERNAME", "svc")
    monkeypatch.setenv("ADAPTLOG_SASL_PASSWORD", "s3cret")
    settings = load_settings()
    assert settings.bootstrap_servers == "kafka-0:9092,kafka-1:9092" and settings.inputs == ("syslog",)
    assert settings.sasl_password is not None and "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"bootstrap_servers": "no-port"}, "bootstrap_servers"),
        ({"security_protocol": "SASL_SSL"}, "sasl"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "sasl_username"),
        ({"ssl_cafile": "/no/such/ca.pem"}, "ssl_cafile"),
        ({"max_line_bytes": 0}, "max_line_bytes"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"default_systems": {"logs": "nosuch"}}, "default_systems.logs"),
    ],
)
def test_wrong_settings_fail_naming_the_setting(overrides: dict, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert named in str(info.value)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "systems.yaml"
    path.write_text(text)
    return path


def test_systems_file_defines_systems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
systems:
  switch:
    format_regex: '(?P<timestamp>\\d+) (?P<content>.*)'
    time_format: epoch_ms
    masks: [{name: num, pattern: '\\d+'}]
    drain: {depth: 5, sim_th: 0.6}
    window: {kind: count_sliding, size: 20, step: 4}
default_systems: {logs: switch}
""",
    )
    settings = load_settings(systems_file=path)
    assert set(settings.systems) == {"switch"} and settings.default_systems == {"logs": "switch"}
    content, event_ms = settings.systems["switch"].line_format("switch").split("1700000000000 port up")
    assert (content, event_ms) == ("port up", 1700000000000)


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [
        ("systems: {s: {format: nosuch}}", "systems.s.format"),
        ("systems: {s: {format_regex: '(?P<content>.*'}}", "pattern"),
        ("systems: {s: {format_regex: '(?P<msg>.*)'}}", "pattern"),
        ("systems: {s: {window: {kind: hopping}}}", "window.kind"),
        ("systems: {s: {window: {kind: count_sliding, size: 4, step: 5}}}", "window.step"),
        ("systems: {s: {window: {kind: session, gap_ms: 10}}}", "systems.s.session_key_pattern"),
        ("systems: {s: {session_key_pattern: '(blk)_(-?\\d+)'}}", "systems.s.session_key_pattern"),
        ("systems: {s: {session_key_pattern: 'blk_\\d*|x?'}}", "systems.s.session_key_pattern"),
        ("systems: {s: {session_key_pattern: 'req=(\\w*)|'}}", "systems.s.session_key_pattern"),
        ("systems: {s: {session_key_pattern: 'blk_('}}", "systems.s.session_key_pattern"),
        ("systems: {s: {drain: {sim_th: 7}}}", "sim_th"),
        ("systems: {s: {drain: {depth: 4, bogus: 1}}}", "systems.s.drain"),
        ("systems: {s: {masks: [{name: n, pattern: '('}]}}", "n"),
        ("systems: {s: {colour: blue}}", "systems.s.colour"),
        ("nosystems: 1", "systems_file"),
        ("systems: [", "systems_file"),
    ],
)
def test_wrong_systems_file_fails_naming_the_setting(tmp_path: Path, yaml_text: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(systems_file=write(tmp_path, yaml_text))
    assert named in str(info.value), str(info.value)


def test_the_readme_systems_file_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    settings = load_settings(systems_file=write(tmp_path, example))
    assert set(settings.systems) == {"hdfs", "switch"} and settings.default_systems == {"logs": "switch"}
    assert settings.systems["switch"].line_format("switch").split("2026-01-02 03:04:05 sw1 port up")[0] == "port up"


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"(blk)_(-?\d+)", "2 capturing groups"),
        (r"blk_\d*|x?", "matches the empty string"),
        (r"(?P<id>\d*)", "matches the empty string"),
    ],
)
def test_a_session_key_pattern_names_one_key_per_match(pattern: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        SystemSettings(window={"kind": "session", "gap_ms": 10}, session_key_pattern=pattern)
    assert SystemSettings(session_key_pattern=r"blk_(-?\d+)(?:_\d+)?").session_key_pattern  # one group is fine


def test_every_system_problem_is_named_at_once(tmp_path: Path) -> None:
    # systems wrong in several ways (two of them before the others can be checked), and a default system nobody
    # defined: the file is read to its end and then refused once, every problem named
    text = (
        "systems: {a: {window: {kind: hopping}}, b: {window: {kind: session, gap_ms: 10}},"
        " c: {format: nosuch}, ok: {format: bgl}, d: {colour: blue}, e: {max_session_keys: 0}}\n"
        "default_systems: {logs-x: nobody}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(systems_file=write(tmp_path, text))
    message = str(info.value)
    assert "6 problems" in message, message
    for named in (
        "systems.a.window.kind",
        "systems.b.session_key_pattern",
        "systems.c.format",
        "systems.d.colour",
        "systems.e.max_session_keys",
        "default_systems.logs-x",
    ):
        assert named in message, message
