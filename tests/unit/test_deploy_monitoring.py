"""The chart's monitoring parts, checked with real tools: the PrometheusRule's rules pass ``promtool check rules`` and
promtool unit tests that fire (and hold back) each alert; the Grafana dashboard loads, and every query in it parses
in promtool and reads only metrics the processes really export (harness/exporters.py scrapes them); the KEDA
ScaledObject scales the stream Deployment on an exported metric; the new pod options reach every pod.

promtool is built from the Go module proxy and cached (harness/prometheus_tools.py); without go it is a skip, and
with ADAPTLOG_REQUIRE_PROMTOOL=1 (.ci/run) a failure."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from harness.exporters import all_names, promql_metric_names
from harness.prometheus_tools import REQUIRE_ENV, PromtoolUnavailable, binary, run_promtool
from harness.required import missing
from stream.settings import Settings, load_settings
from tests.unit.test_deploy import CHART, by_kind, pod_specs, render, resolved, values_of

ROOT = Path(__file__).resolve().parents[2]
RULES_TEST = ROOT / "tests" / "data" / "prometheus" / "rules_test.yaml"


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return binary()
    except PromtoolUnavailable as exc:
        reason = str(exc)
    missing("promtool", REQUIRE_ENV, reason)


@pytest.fixture(scope="module")
def everything() -> list[dict[str, Any]]:
    return render(values_of("everything"))


def rule_groups(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = by_kind(documents, "PrometheusRule").values()
    return rule["spec"]["groups"]


def test_rules_pass_promtool_check_and_their_unit_tests(promtool, everything, tmp_path: Path) -> None:
    groups = rule_groups(everything)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    checked = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in checked.stdout
    shutil.copy(RULES_TEST, tmp_path / "rules_test.yaml")
    tested = run_promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # every alert the chart defines is exercised by a unit test
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert alerts == {
        "AdaptlogConsumerLagGrowing",
        "AdaptlogDeadLetterRate",
        "AdaptlogInferenceFallingBehind",
        "AdaptlogNoVerdicts",
        "AdaptlogRetrainFailing",
    }
    unit_tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in unit_tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == alerts


def test_rules_and_dashboard_read_only_exported_metrics(everything) -> None:
    exported = all_names()
    expressions = [rule["expr"] for group in rule_groups(everything) for rule in group["rules"]]
    expressions += dashboard_expressions(everything)
    (scaled,) = by_kind(everything, "ScaledObject").values()
    expressions += [trigger["metadata"]["query"] for trigger in scaled["spec"]["triggers"]]
    for expression in expressions:
        read = promql_metric_names(expression)
        assert read, expression
        assert read <= exported, f"{sorted(read - exported)} are not exported: {expression}"


def dashboard_expressions(documents: list[dict[str, Any]]) -> list[str]:
    configmap = by_kind(documents, "ConfigMap")["prod-adaptlog-dashboard"]
    dashboard = json.loads(configmap["data"]["adaptlog.json"])
    assert dashboard["uid"] == "adaptlog-overview" and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_covers_what_operators_read_and_every_query_parses(promtool, everything, tmp_path: Path) -> None:
    configmap = by_kind(everything, "ConfigMap")["prod-adaptlog-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"  # the Grafana sidecar's default label
    titles = " ".join(p["title"] for p in json.loads(configmap["data"]["adaptlog.json"])["panels"]).lower()
    for topic in ("throughput", "lag", "dead letters", "alerts by system and severity", "latency", "retrains"):
        assert topic in titles
    # Grafana's $__rate_interval is not PromQL: promtool parses each query as a recording rule with it replaced.
    expressions = [e.replace("$__rate_interval", "5m") for e in dashboard_expressions(everything)]
    rules = [{"record": f"adaptlog:dashboard_query:{i}", "expr": e} for i, e in enumerate(expressions)]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run_promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_broken_expression_fails_promtool(promtool, tmp_path: Path) -> None:
    """The check above can fail: promtool refuses what Prometheus would."""
    rules = {
        "groups": [{"name": "x", "rules": [{"record": "r", "expr": "sum by (group (adaptlog_stream_consumer_lag)"}]}]
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(rules))
    assert run_promtool("check", "rules", "bad.yaml", cwd=tmp_path).returncode != 0


def test_monitoring_parts_are_off_by_default() -> None:
    kinds = {doc["kind"] for doc in render(None)}
    assert not kinds & {"PrometheusRule", "ScaledObject", "ConfigMap"}


def test_keda_scales_the_stream_deployment_which_then_leaves_replicas_to_it(everything) -> None:
    (scaled,) = by_kind(everything, "ScaledObject").values()
    stream = by_kind(everything, "Deployment")["prod-adaptlog-stream"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == stream["metadata"]["name"]
    assert "replicas" not in stream["spec"]
    assert scaled["spec"]["maxReplicaCount"] == 12  # 24 asked, capped at kafka.partitions
    assert by_kind(render(None), "Deployment")["prod-adaptlog-stream"]["spec"]["replicas"] == 2


def test_pod_options_reach_every_pod_and_stream_settings_load(
    everything, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = pod_specs(everything)
    for name, pod in specs.items():
        assert pod["priorityClassName"] == "adaptlog-high", name
        assert {"name": "kafka-oauth", "mountPath": "/var/run/secrets/kafka", "readOnly": True} in pod["containers"][0][
            "volumeMounts"
        ], name
        assert any(volume["name"] == "kafka-oauth" for volume in pod["volumes"]), name
    for doc in everything:
        if doc["kind"] in ("Deployment", "Job"):
            assert doc["spec"]["template"]["metadata"]["labels"]["team"] == "observability"
    assert specs["prod-adaptlog-stream"]["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    configmaps = by_kind(everything, "ConfigMap")
    for variable in list(os.environ):
        if variable.startswith("ADAPTLOG_"):
            monkeypatch.delenv(variable)
    for entry in specs["prod-adaptlog-stream"]["containers"][0]["env"]:
        monkeypatch.setenv(entry["name"], resolved(entry, tmp_path, configmaps))
    settings = load_settings()
    assert settings.max_line_bytes == 131072 and settings.checkpoint_interval_ms == 10_000
    assert settings.tick_interval_ms == 2000  # from extraEnv
    assert settings.input_formats["raw-logs"].preset == "fluent-bit"
    assert settings.consumer_options == {"session_timeout_ms": 30000, "heartbeat_interval_ms": 3000}
    assert settings.producer_options == {"compression_type": "gzip"}


def test_oauthbearer_reads_a_token_file_and_needs_no_secret() -> None:
    values = {
        "kafka": {
            "securityProtocol": "SASL_SSL",
            "sasl": {"enabled": True, "mechanism": "OAUTHBEARER", "oauthTokenFile": "/var/run/secrets/kafka/token"},
        }
    }
    for pod in pod_specs(render(values)).values():
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["ADAPTLOG_SASL_MECHANISM"]["value"] == "OAUTHBEARER"
        assert env["ADAPTLOG_SASL_OAUTH_TOKEN_FILE"]["value"] == "/var/run/secrets/kafka/token"
        assert "ADAPTLOG_SASL_USERNAME" not in env and "ADAPTLOG_SASL_PASSWORD" not in env


def test_stream_settings_in_the_schema_are_settings_and_a_misspelt_one_is_refused() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    offered = set(schema["properties"]["stream"]["properties"]["settings"]["properties"])
    assert "max_line_bytes" in offered and offered <= set(Settings.model_fields)
    with pytest.raises(helm.HelmError, match="max_line_byte"):
        helm.Chart.load(str(CHART)).render({"stream": {"settings": {"max_line_byte": 1}}}, name="p", namespace="n")
