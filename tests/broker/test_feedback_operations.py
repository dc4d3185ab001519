"""``adaptlog-train status`` and ``rollback`` as an operator runs them: a rollback moves the serving pointer, is
recorded in the history and announced on ``model-updates``; status shows versions, labels and the next retrain."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic

from harness.broker.running import RunningBroker
from harness.inference import SYSTEM, publish_adapter
from harness.streaming import read_topic, settings_for, worker_env, write_systems_file
from stream.model.registry import Registry
from stream.pipeline.kafka_clients import ensure_topics
from stream.records import Window, WindowLabel, WindowLine, window_id_for
from trainer.feedback.store import LabelStore

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def window(i: int) -> Window:
    lines = (WindowLine("logs", 0, i, 1000 * i, 1, f"template {i % 3}", f"line {i}", None),)
    return Window(window_id_for(SYSTEM, "session", f"k{i}", lines), SYSTEM, "session", f"k{i}", 0, 0, "gap", lines)


def train_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_status_and_rollback(kafka_broker: RunningBroker, topic_prefix: str, hdfs_registry, tmp_path: Path) -> None:
    shutil.copytree(hdfs_registry.registry.root / "bases", tmp_path / "registry" / "bases")
    registry = Registry(tmp_path / "registry")
    base = registry.serving("base", "hdfs")
    publish_adapter(registry, base, seed=1)
    publish_adapter(registry, base, seed=2)
    now = int(time.time() * 1000)
    with LabelStore(registry.root / "labels.sqlite") as store:
        for i in range(12):
            store.add_window(window(i), now)
            store.add_label(WindowLabel(window(i).window_id, int(i % 2 == 0)), now)
        store.add_label(WindowLabel("never-seen", 1), now)
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence)
    asyncio.run(ensure_topics(settings, [NewTopic(settings.topics.model_updates, 1, 1)]))
    env = worker_env(settings, write_systems_file(tmp_path / "systems.yaml", dict(settings.systems)), dict(os.environ))
    env["ADAPTLOG_TRAINER__REGISTRY"] = str(registry.root)

    shown = train_cli("status", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["base"] == "hdfs" and report["pending_labels"] == 1
    entry = report["targets"][SYSTEM]
    assert entry["serving"] == "v0002"
    assert entry["labels"] == {"total": 12, "anomalous": 6, "normal": 6, "unused": 12}
    assert entry["next_retrain"].startswith("after 38 more labels")  # the default policy: 50 new labels

    rolled = train_cli("rollback", SYSTEM, "v0001", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert registry.pointer("adapter", SYSTEM).version == "v0001"
    assert registry.pointer("adapter", SYSTEM).previous == "v0002"
    updates = asyncio.run(read_topic(settings, settings.topics.model_updates, quiet_s=2))
    assert [(u["target"], u["version"], u["reason"]) for u in updates] == [(SYSTEM, "v0001", "rollback")]
    with LabelStore(registry.root / "labels.sqlite") as store:
        assert store.history(SYSTEM)[-1]["rollback"] == "v0001"
    text = train_cli("status", env=env)
    assert f"{SYSTEM}" in text.stdout and "serving v0001" in text.stdout and "12 labels" in text.stdout

    refused = train_cli("rollback", SYSTEM, "v0009", env=env)
    assert refused.returncode == 2 and "v0009" in refused.stderr
    assert registry.pointer("adapter", SYSTEM).version == "v0001"
