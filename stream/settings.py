"""The one settings object: read once by the CLI from ``ADAPTLOG_*`` variables and an optional YAML systems file.

Nothing below the CLI reads the environment; everything gets :class:`Settings` (or a part of it) passed in.
A wrong setting raises :class:`ConfigError` naming it, at start.

Environment (prefix ``ADAPTLOG_``; nested fields with ``__``, e.g. ``ADAPTLOG_TOPICS__LOGS=mylogs``)::

    BOOTSTRAP_SERVERS   host:port[,host:port]
    SECURITY_PROTOCOL   PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    SASL_MECHANISM      PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512, with SASL_USERNAME and SASL_PASSWORD;
                        OAUTHBEARER, with SASL_OAUTH_TOKEN_FILE (read again whenever it changes)
    CONSUMER_OPTIONS, PRODUCER_OPTIONS
                        JSON objects of further aiokafka client parameters, e.g. ``{"session_timeout_ms": 30000}``
    SSL_CAFILE, SSL_CERTFILE, SSL_KEYFILE
    METRICS_PORT        /metrics and /healthz of `adaptlog run`, `infer` and `adaptlog-train serve` (0 = off)
    SYSTEMS_FILE        YAML file with a ``systems:`` mapping (see :class:`SystemSettings`) and optionally
                        ``default_systems:`` (input topic -> system for records that name none) and
                        ``input_formats:`` (input topic -> :class:`InputFormat`)
    INPUT_FORMATS       JSON, e.g. ``{"fluent-logs": {"preset": "fluent-bit"}}``
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.errors import ConfigError
from stream.formats import LineFormat, ready_format
from stream.parsing.config import (
    BGL_MASKS,
    DEFAULT_MASKS,
    HADOOP_MASKS,
    HDFS_MASKS,
    THUNDERBIRD_MASKS,
    DrainParams,
    MaskRule,
)
from stream.windowing import WindowPolicy, policy_from_dict, policy_to_dict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

HDFS_BLOCK_ID = r"blk_-?\d+"
DAY_MS = 24 * 3600 * 1000
DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"  # "auto": the first CUDA device when torch sees one, else the CPU
# Mask sets a system can name instead of listing rules: drain3's example set, and the Loghub benchmark's per layout.
READY_MASKS: dict[str, tuple[MaskRule, ...]] = {
    "default": DEFAULT_MASKS,
    "hdfs": HDFS_MASKS,
    "bgl": BGL_MASKS,
    "thunderbird": THUNDERBIRD_MASKS,
    "hadoop": HADOOP_MASKS,
}


class Topics(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    logs: str = "logs"
    windows: str = "windows"
    alerts: str = "alerts"
    feedback: str = "feedback"
    model_updates: str = "model-updates"
    verdicts: str = "verdicts"  # every verdict, when inference.publish_verdicts is set
    deadletter: str = "deadletter"
    # Internal topics between the stream stages (see stream.pipeline): lines keyed by system, lines keyed by
    # session key, and the compacted topic holding each stage partition's state and input offsets.
    lines: str = "adaptlog-lines"
    sessions: str = "adaptlog-sessions"
    state: str = "adaptlog-state"

    @classmethod
    def prefixed(cls, prefix: str) -> Topics:
        """Every default topic name under ``prefix-``: a run that must not meet others' data (demo, tests)."""
        return cls(**{name: f"{prefix}-{default}" for name, default in cls().model_dump().items()})


INPUT_PRESETS = ("json", "fluent-bit", "vector", "otel", "zap", "pino")
InputPreset = Literal["json", "fluent-bit", "vector", "otel", "zap", "pino"]
# How a number in a time field is read; "iso8601": only ISO 8601 / RFC 3339 strings are times, numbers are refused.
# Under every unit a string that is not a number is read as ISO 8601 (no unit could be meant).
TimeUnit = Literal["s", "ms", "us", "ns", "iso8601"]
Y2K = datetime(2000, 1, 1, tzinfo=UTC)


class InputFormat(BaseModel):
    """Where a JSON input record keeps its message, time, system and label (``stream.inputs`` reads it).

    ``preset`` gives every field for a shipper's record (see ``stream.inputs.PRESETS`` and docs/inputs.md); the
    other fields override the preset's. A path is dotted (``kubernetes.labels.app``; ``\\.`` for a dot inside a
    key); a list of paths is tried in order and the first present wins. For ``otel``, ``system`` and ``label`` name
    attributes (the resource's, the log record's) instead of paths; body and time are OTLP's own.

    A time read from the record is a dead letter, never a silent 1970, when it falls before ``earliest`` (seconds
    read as milliseconds do: 1.7e9 ms is January 1970) or more than ``max_ahead_ms`` after the record's broker
    timestamp (a broken clock); ``max_ahead_ms`` null turns the second check off, and an old ``earliest`` admits
    historic logs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: InputPreset = "json"
    message: tuple[str, ...] | None = None
    time: tuple[str, ...] | None = None
    time_unit: TimeUnit | None = None
    system: tuple[str, ...] | None = None
    label: tuple[str, ...] | None = None
    earliest: datetime = Y2K
    max_ahead_ms: int | None = Field(default=24 * 3600 * 1000, ge=0)

    @field_validator("message", "time", "system", "label", mode="before")
    @classmethod
    def _one_path_or_several(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("message", "time", "system", "label")
    @classmethod
    def _paths_not_empty(cls, paths: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if paths is not None and (not paths or not all(paths)):
            raise ValueError("needs one or more non-empty paths")
        return paths

    @field_validator("earliest")
    @classmethod
    def _earliest_has_a_zone(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _otel_fields_are_otlps(self) -> InputFormat:
        if self.preset == "otel" and (self.message, self.time, self.time_unit) != (None, None, None):
            raise ValueError("the otel preset reads OTLP's body and timeUnixNano; message, time, time_unit are not set")
        return self


class SystemSettings(BaseModel):
    """One source system: how its lines look, how they are masked and mined, how they are windowed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = "raw"  # a ready format name (raw, hdfs, bgl, thunderbird) ...
    format_regex: str | None = None  # ... or a regex with named groups content [and timestamp]
    time_format: str | None = None  # strptime format, epoch_s or epoch_ms; with format_regex
    masks: str | list[dict[str, str]] = "default"  # a ready mask set name, or [{name, pattern}, ...]
    drain: dict[str, Any] = Field(default_factory=dict)
    # "system": one Drain miner sees all of the system's lines (they share one ``lines`` partition). "keyed": the
    # lines are keyed by their Drain subtree (``stream.parsing.sharding``), so the system's mining spreads over every
    # ``lines`` partition and parse worker; template ids are then global (a hash of key and cluster). Session windows
    # gather their lines by session key; count and event-time windows get the system's lines back in source order
    # from the merge in the session stage (``stream.pipeline.merge``), one ``sessions`` partition per system.
    mining: Literal["system", "keyed"] = "system"
    window: dict[str, Any] = Field(default_factory=lambda: {"kind": "count_tumbling", "size": 20})
    # for session windows: a regex whose matches are the session keys (the whole match, or its one capturing group)
    session_key_pattern: str | None = None
    # A line naming more distinct keys is dead-lettered: it is copied once per key (template, masked text and all),
    # so one 64 KiB line naming thousands of ids became hundreds of MB of session records. HDFS lines name 1 or 2.
    max_session_keys: int = Field(default=16, gt=0)
    # how JSON records of this system look, when their topic has no input format and the system is known before the
    # record is read (the ``system`` header or the topic's default system); None: the ``json`` preset
    input: InputFormat | None = None

    @field_validator("session_key_pattern")
    @classmethod
    def _one_key_per_match(cls, pattern: str | None) -> str | None:
        # findall returns tuples for several groups (the stage then failed on every line) and "" for a pattern that
        # matches nothing at all, which would put every line of the system into one session.
        if pattern is None:
            return None
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regex: {exc}") from None
        if regex.groups > 1:
            raise ValueError(
                f"has {regex.groups} capturing groups; a key is the whole match or one group (use (?:...) for others)"
            )
        if regex.fullmatch("") is not None:
            raise ValueError("matches the empty string; every line would have an empty session key")
        return pattern

    def line_format(self, name: str) -> LineFormat:
        if self.format_regex is not None:
            return LineFormat(f"{name}-custom", self.format_regex, self.time_format)
        return ready_format(self.format, f"systems.{name}.format")

    def mask_rules(self, name: str) -> tuple[MaskRule, ...]:
        if isinstance(self.masks, str):
            if self.masks not in READY_MASKS:
                raise ConfigError(
                    f"systems.{name}.masks", f"unknown mask set {self.masks!r}; ready: {sorted(READY_MASKS)}"
                )
            return READY_MASKS[self.masks]
        try:
            return tuple(MaskRule(**rule) for rule in self.masks)
        except TypeError as exc:
            raise ConfigError(f"systems.{name}.masks", f"each rule needs exactly name and pattern ({exc})") from exc

    @property
    def window_policy(self) -> WindowPolicy:
        """The typed window policy of ``window`` (ConfigError naming the field when it is not one): what every
        stage and the trainer's loaders build windowers from, instead of reading the dict themselves."""
        return policy_from_dict(self.window)

    @property
    def window_kind(self) -> str:
        """count_tumbling | count_sliding | event_tumbling | session."""
        return policy_to_dict(self.window_policy)["kind"]

    @property
    def merged(self) -> bool:
        """Mined by Drain key on several partitions and merged back into source order before windowing: count and
        event-time windows need the system's lines in one order (``stream.pipeline.merge``); sessions do not."""
        return self.mining == "keyed" and self.window_kind != "session"

    def drain_params(self, name: str) -> DrainParams:
        try:
            return DrainParams(**self.drain)
        except TypeError as exc:
            raise ConfigError(f"systems.{name}.drain", str(exc)) from exc


TUMBLING_20 = {"kind": "count_tumbling", "size": 20}


def _builtin_systems() -> dict[str, SystemSettings]:
    """Ready systems for the Loghub layouts (with the Loghub benchmark's masks and Drain settings): HDFS sessions by
    block id, BGL and Thunderbird in windows of 20 lines, as TransLog and LogLLM window them."""
    return {
        "hdfs": SystemSettings(
            format="hdfs",
            masks="hdfs",
            drain={"depth": 4, "sim_th": 0.5},
            # A block's lines can be ~15 h apart (deletions long after writes), so the event-time gap is a day and a
            # quiet stream's sessions are closed by the wall-clock idle timeout.
            window={"kind": "session", "gap_ms": DAY_MS, "idle_timeout_ms": 10_000},
            session_key_pattern=HDFS_BLOCK_ID,
        ),
        "bgl": SystemSettings(
            format="bgl", drain={"depth": 4, "sim_th": 0.5}, window={"kind": "count_tumbling", "size": 20}
        ),
        "thunderbird": SystemSettings(
            format="thunderbird", drain={"depth": 4, "sim_th": 0.5}, window={"kind": "count_tumbling", "size": 20}
        ),
        "raw": SystemSettings(format="raw", window=TUMBLING_20),
    }


class SeveritySettings(BaseModel):
    """An alert's severity from its incident (``stream.records.SeverityPolicy``): critical when the
    max score or the anomalous-window count reaches the critical threshold, else warning by the warning pair, else
    info. Scores are the models' anomaly scores (0..1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warning_score: float = Field(default=0.9, ge=0, le=1)
    warning_count: int = Field(default=4, gt=0)
    critical_score: float = Field(default=0.99, ge=0, le=1)
    critical_count: int = Field(default=32, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> SeveritySettings:
        if self.warning_score > self.critical_score or self.warning_count > self.critical_count:
            raise ValueError("warning thresholds must not exceed the critical ones")
        return self


class NotifySettings(BaseModel):
    """``adaptlog notify``: the alerts topic to Alertmanager's v2 API and/or a JSON webhook, at least once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Alertmanager's base URL (http://alertmanager:9093); alerts are POSTed to <url>/api/v2/alerts
    alertmanager_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # a generic JSON webhook (Slack incoming webhooks accept it: the body carries a ``text``)
    webhook_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    alertname: str = Field(default="AdaptlogAnomaly", min_length=1)  # the alertname label in Alertmanager
    timeout_s: float = Field(default=10.0, gt=0)  # one HTTP request (connect + response)
    retry_initial_s: float = Field(default=0.5, gt=0)  # first backoff after a transient failure; doubles each try
    retry_max_s: float = Field(default=30.0, gt=0)  # backoff cap
    # tries of one delivery before the worker stops with an error (offsets uncommitted: a restart delivers again);
    # 0 = keep trying until the receiver answers or the worker is stopped
    max_attempts: int = Field(default=0, ge=0)
    max_batch: int = Field(default=100, gt=0)  # alert records per fetch (one Alertmanager POST)
    # a firing alert's endsAt is its publication + this; a live incident has a record within the last two
    # alert_ttl_s, so this must exceed twice that. None: 2 * inference.alert_ttl_s + 60 s
    firing_hold_s: float | None = Field(default=None, gt=0)
    metrics_port: int = Field(default=0, ge=0, le=65535)  # Prometheus /metrics of `adaptlog notify`; 0 = off


class ConsoleSettings(BaseModel):
    """``adaptlog console``: the operator console (stream.console). Who may do what:

    * ``tokens_file``: a JSON list of ``{"user", "role", "token"}`` (role ``operator`` labels and rolls back,
      ``viewer`` reads); a browser signs in once with its token (an HttpOnly cookie), a script sends
      ``Authorization: Bearer``.
    * ``trusted_proxies``: addresses (CIDR) of an authenticating proxy (oauth2-proxy, an OIDC ingress) whose
      ``proxy_user_header`` names the user; a member of one of ``operator_groups`` (``proxy_groups_header``, comma
      separated) is an operator, anyone else a viewer. Headers from any other address are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    tokens_file: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    proxy_user_header: str = "X-Forwarded-User"
    proxy_groups_header: str = "X-Forwarded-Groups"
    operator_groups: tuple[str, ...] = ("adaptlog-operators",)
    # signs the forms' CSRF tokens; None: a random one per process (set it when several replicas serve one host)
    csrf_secret: SecretStr | None = None
    cookie_secure: bool = True  # the sign-in cookie only over HTTPS (false for plain-HTTP tests and port-forwards)
    registry: Path | None = None  # the model registry (versions, F1, rollback); None: inference.registry
    undo_s: float = Field(default=30.0, ge=0)  # a label waits this long, undoable, before it goes to feedback
    max_incidents: int = Field(default=10_000, gt=0)
    max_windows: int = Field(default=20_000, gt=0)
    max_templates: int = Field(default=5_000, gt=0)  # per system


class InferenceSettings(BaseModel):
    """``adaptlog infer``: where the models are, how windows are batched, how alerts are grouped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry: Path | None = None  # the model registry directory (shared with the trainer)
    base: str = ""  # the base model's name in the registry ("" = the only one there)
    max_batch: int = Field(default=64, gt=0)  # windows per forward pass
    max_wait_ms: int = Field(default=50, gt=0)  # a partial batch runs after waiting this long
    max_pending_batches: int = Field(default=4, gt=0)  # fetched batches waiting for the model; then fetching pauses
    refresh_interval_s: float = Field(default=60.0, gt=0)  # registry poll, besides every model-updates message
    publish_verdicts: bool = False  # every verdict to topics.verdicts (anomalous ones always go to alerts)
    explain_top: int = Field(default=3, gt=0)  # templates named in an explanation
    # occlude only the templates a family's saliency ranks highest (LogLLM); false: every template, one scoring each
    explain_saliency: bool = True
    # verdicts kept by what the model read of a window (stream.inference.score_cache): a window read before by the
    # same adapter version is not scored again; 0 turns it off
    score_cache_size: int = Field(default=100_000, ge=0)
    alert_ttl_s: float = Field(default=600.0, gt=0)  # an incident not seen for this long is resolved
    # how far back a worker taking over windows partitions looks for incidents left open by an outage (to resolve them)
    alert_recovery_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    metrics_port: int = Field(default=0, ge=0, le=65535)  # Prometheus /metrics; 0 = not served
    threads: int = Field(default=0, ge=0)  # torch threads; 0 = torch's default
    # where the models score: "auto" = the first CUDA device when torch sees one, else the CPU; "cpu", "cuda",
    # "cuda:N". On CUDA, TransLog and LogLLM score in bf16 autocast (Ampere and later), LogTransfer in fp32. The form
    # is checked here; a CUDA device the machine lacks fails when the worker starts.
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    # the scoring autocast (TransLog; stream.model.detector.scoring_autocast): "auto" = bf16 where the hardware runs it
    # natively (Ampere+ GPUs, CPUs with AVX512-BF16 or AMX), else fp32; "float32"; "bfloat16"
    precision: str = Field(default="auto", pattern=r"^(auto|float32|bfloat16)$")
    severity: SeveritySettings = Field(default_factory=SeveritySettings)  # the severity alert records carry


class TrainerSettings(BaseModel):
    """``adaptlog-train serve``: the feedback-driven retraining service (one replica)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry: Path | None = None  # the model registry directory (inference reads the same one)
    base: str = ""  # the base that adapters are trained on ("" = the only one there)
    label_db: Path | None = None  # the SQLite label store; default: <registry>/labels.sqlite
    feedback_topics: tuple[str, ...] = ()  # labeled topics besides topics.feedback
    min_new_labels: int = Field(default=50, gt=0)  # retrain a target when this many labels are new ...
    max_interval_s: float = Field(default=3600.0, gt=0)  # ... or when any are new and this long has passed
    min_per_class: int = Field(default=5, gt=0)  # anomalous and normal labels needed before a first retrain
    margin: float = Field(default=0.0, ge=0)  # publish when the challenger's held-out F1 >= champion's + margin
    retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)  # unlabeled windows and pending labels kept this long
    check_interval_s: float = Field(default=10.0, gt=0)  # how often targets are checked for a retrain
    max_batch: int = Field(default=2000, gt=0)  # records per poll of windows and feedback, stored in one go
    metrics_port: int = Field(default=0, ge=0, le=65535)
    threads: int = Field(default=0, ge=0)  # torch threads for training; 0 = torch's default
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)  # where adapters train: as inference.device
    # A system with no adapter gets a zero-label one (the base's scores, its own false-alarm budget: trainer.train.
    # zero_label) once this many of its unlabeled windows are stored; 0 = never. 1,000 resolves the default budget.
    min_unlabeled: int = Field(default=1000, ge=0)
    false_alarms_per_1000: float = Field(default=1.0, ge=0, le=1000)  # that budget: windows flagged per 1,000
    # how the zero-label threshold is read off the unlabeled windows (stream.model.thresholds): that budget, or
    # score-mixture (where a minority upper mode of scores shows, where it begins; else that budget)
    zero_label_rule: Literal["false-alarm-budget", "score-mixture"] = "false-alarm-budget"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAPTLOG_", env_nested_delimiter="__", frozen=True, extra="forbid")

    bootstrap_servers: str = ""
    client_id: str = "adaptlog"
    group_prefix: str = "adaptlog"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # OAUTHBEARER: a file holding the token, kept fresh by something else (a projected token, a sidecar)
    sasl_oauth_token_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Tansu (the embedded demo broker) rejects idempotent producers; every real Kafka accepts them.
    idempotent_producer: bool = True
    # Further aiokafka constructor parameters for every consumer / producer (stream.kafka_options checks the keys
    # at start: unknown and adaptlog-owned ones are refused, all named at once). They override adaptlog's defaults
    # (fetch sizes, linger_ms, ...), never what a client is built for (a stage's max_poll_records).
    consumer_options: dict[str, Any] = Field(default_factory=dict)
    producer_options: dict[str, Any] = Field(default_factory=dict)

    topics: Topics = Field(default_factory=Topics)
    input_topics: tuple[str, ...] = ()  # topics with log records; empty means (topics.logs,)
    default_systems: dict[str, str] = Field(default_factory=dict)  # input topic -> system when a record names none
    # input topic -> how its JSON records look (shipper presets, field paths); a topic not named here reads its
    # system's input format, else the ``json`` preset
    input_formats: dict[str, InputFormat] = Field(default_factory=dict)
    systems_file: Path | None = None
    systems: dict[str, SystemSettings] = Field(default_factory=_builtin_systems)

    max_line_bytes: int = Field(default=64 * 1024, gt=0)
    # A record that holds many lines (an OTLP batch) may be this large; each of its lines is held to max_line_bytes.
    max_record_bytes: int = Field(default=1024 * 1024, gt=0)
    internal_partitions: int = Field(default=4, gt=0)
    # The record format the stages write on the internal topics (``lines``, ``sessions``; stream.records.batches).
    # Every version since 2 reads both; 1 is for a rolling upgrade from a version that reads only format 1: roll the
    # upgrade out with 1, then set 2 (as Kafka Streams' upgrade.from).
    internal_format: int = Field(default=2, ge=1, le=2)
    checkpoint_interval_ms: int = Field(default=5_000, gt=0)
    tick_interval_ms: int = Field(default=1_000, gt=0)
    batch_max_records: int = Field(default=2_000, gt=0)
    # Topics adaptlog creates get this replication factor (1 suits one broker; production clusters want 3).
    replication_factor: int = Field(default=1, gt=0)
    # The process's operations endpoint (/metrics, /healthz) for `adaptlog run`, `infer` and `adaptlog-train serve`;
    # inference.metrics_port and trainer.metrics_port, when set, take precedence for their process. 0 = not served.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @field_validator("input_formats", mode="before")
    @classmethod
    def _preset_names_are_formats(cls, value: Any) -> Any:
        # {"logs": "fluent-bit"}: a bare preset name is the common case, as in the systems file
        if isinstance(value, dict):
            return {topic: {"preset": spec} if isinstance(spec, str) else spec for topic, spec in value.items()}
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_look_like_host_port(cls, value: str) -> str:
        for server in filter(None, value.split(",")):
            if not re.fullmatch(r"[^\s:,]+:\d{1,5}", server.strip()):
                raise ValueError(f"{server!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _security_is_complete(self) -> Settings:
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise ValueError(
                    "security_protocol SASL_* needs sasl_mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
                )
            if self.sasl_mechanism == "OAUTHBEARER":
                if self.sasl_oauth_token_file is None:
                    raise ValueError("sasl_mechanism OAUTHBEARER needs sasl_oauth_token_file")
                if not self.sasl_oauth_token_file.is_file():
                    raise ValueError(f"sasl_oauth_token_file: no such file {self.sasl_oauth_token_file}")
            elif not self.sasl_username or self.sasl_password is None:
                raise ValueError("SASL needs sasl_username and sasl_password")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    @model_validator(mode="after")
    def _client_options_are_aiokafkas(self) -> Settings:
        if not (self.consumer_options or self.producer_options):
            return self
        from stream.kafka_options import option_problems  # imports aiokafka: only when options are given

        problems = [
            f"{field}: {problem}"
            for field, client in (("consumer_options", "consumer"), ("producer_options", "producer"))
            for problem in option_problems(client, getattr(self, field))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _firing_outlasts_republication(self) -> Settings:
        # A live incident has a record within the last two alert TTLs (stream.inference.alerts): a shorter hold would
        # let Alertmanager end it between two records, and it would flap resolved/firing while it lasts.
        hold_s, ttl_s = self.notify.firing_hold_s, self.inference.alert_ttl_s
        if hold_s is not None and hold_s <= 2 * ttl_s:
            raise ValueError(f"notify.firing_hold_s ({hold_s}) must exceed twice inference.alert_ttl_s ({ttl_s})")
        return self

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.input_topics or (self.topics.logs,)


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings (environment, then the systems file, then overrides). Raises ConfigError."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise _config_error(exc) from None
    if settings.systems_file is not None:
        settings = _with_systems_file(settings, settings.systems_file)
    validate_systems(settings)
    return settings


def _with_systems_file(settings: Settings, path: Path) -> Settings:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError("systems_file", f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("systems_file", f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("systems"), dict):
        raise ConfigError("systems_file", f"{path} needs a top-level 'systems:' mapping")
    unknown = set(document) - {"systems", "default_systems", "input_formats"}
    if unknown:
        raise ConfigError("systems_file", f"unknown top-level keys {sorted(unknown)}")
    systems: dict[str, SystemSettings] = {}
    problems: list[ConfigError] = []  # every system's, named at once
    for name, spec in document["systems"].items():
        if not isinstance(spec, dict | None):
            problems.append(ConfigError(f"systems.{name}", "must be a mapping"))
            continue
        try:
            systems[str(name)] = SystemSettings(**(spec or {}))
        except ValidationError as exc:
            problems += [_error(error, prefix=f"systems.{name}.") for error in exc.errors()]
    if problems:  # and what the systems that did build get wrong, so that one start names everything
        defaults = document.get("default_systems") or {}
        named = (
            {}
            if not isinstance(defaults, dict)
            else {t: s for t, s in defaults.items() if s not in document["systems"]}
        )
        problems += system_problems(systems, named)  # a default naming a system that failed is no extra problem
        raise_all(problems)
    default_systems = document.get("default_systems", settings.default_systems)
    if not isinstance(default_systems, dict):
        raise ConfigError("systems_file", "default_systems must map input topics to systems")
    input_formats = dict(settings.input_formats)
    raw_formats = document.get("input_formats") or {}
    if not isinstance(raw_formats, dict):
        raise ConfigError("systems_file", "input_formats must map input topics to input formats")
    for topic, spec in raw_formats.items():
        spec = {"preset": spec} if isinstance(spec, str) else spec  # a bare preset name is the common case
        if not isinstance(spec, dict):
            raise ConfigError(f"input_formats.{topic}", "must be a preset name or a mapping")
        try:
            input_formats[str(topic)] = InputFormat(**spec)
        except ValidationError as exc:
            raise _config_error(exc, prefix=f"input_formats.{topic}.") from None
    update = {"systems": systems, "default_systems": default_systems, "input_formats": input_formats}
    return settings.model_copy(update=update)


def validate_systems(settings: Settings) -> None:
    """Build every per-system object once, so a wrong regex, Drain parameter or window policy fails at start, and
    every such problem of every system is named in one ConfigError (an operator fixes them in one go)."""
    problems = system_problems(settings.systems, settings.default_systems)
    if settings.internal_format < 2:
        problems += [
            ConfigError(
                f"systems.{name}.mining",
                f"keyed mining with {system.window_kind} windows needs internal_format 2 (its progress marks are"
                " format-2 records): finish the rolling upgrade first",
            )
            for name, system in settings.systems.items()
            if _merged(system)
        ]
    raise_all(problems)


def _merged(system: SystemSettings) -> bool:
    try:
        return system.merged
    except ConfigError:  # a bad window policy: system_problems names it already
        return False


def system_problems(systems: dict[str, SystemSettings], default_systems: dict[str, str]) -> list[ConfigError]:
    """What ``validate_systems`` refuses, as a list."""
    problems: list[ConfigError] = []
    for name, system in systems.items():
        for check in (system.line_format, system.mask_rules, system.drain_params):
            try:
                check(name)
            except ConfigError as exc:
                problems.append(exc)
        try:
            if system.window_kind == "session" and not system.session_key_pattern:
                problems.append(
                    ConfigError(f"systems.{name}.session_key_pattern", "session windows need a key pattern")
                )
        except ConfigError as exc:
            problems.append(ConfigError(f"systems.{name}.{exc.setting}", exc.problem))
    for topic, default in default_systems.items():
        if default not in systems:
            problems.append(ConfigError(f"default_systems.{topic}", f"unknown system {default!r}"))
    return problems


def _config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    return _error(exc.errors()[0], prefix)


def _error(error: Any, prefix: str = "") -> ConfigError:
    setting = prefix + ".".join(str(part) for part in error["loc"]) or "settings"
    return ConfigError(setting, error["msg"])


def raise_all(problems: list[ConfigError]) -> None:
    """Nothing, one problem as it is, or every problem in one ConfigError (fixed in one go, not one per start)."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigError(
            "systems", f"{len(problems)} problems: " + "; ".join(f"{p.setting}: {p.problem}" for p in problems)
        )
