"""The `adaptlog` command line on a broker: replay (gzip, labels into headers), then tail."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from harness.broker.running import RunningBroker
from harness.commands import adaptlog, clean_env
from harness.streaming import DATA, settings_for, worker_env, write_systems_file


@pytest.mark.broker
def test_replay_gzip_then_tail_shows_records_with_label_headers(
    kafka_broker: RunningBroker, topic_prefix: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, kafka_broker.supports_idempotence)
    env = worker_env(settings, write_systems_file(tmp_path / "systems.yaml", dict(settings.systems)), clean_env())
    lines = (DATA / "bgl" / "BGL_2k.log").read_text().splitlines()[:50]
    sample = tmp_path / "bgl.log.gz"
    sample.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))

    replayed = adaptlog("replay", str(sample), "--system", "bgl", "--rate", "2000", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 50 lines" in replayed.stderr

    tailed = adaptlog("tail", settings.topics.logs, "--max", "50", "--timeout", "10", env=env)
    assert tailed.returncode == 0, tailed.stderr
    records = [orjson.loads(line) for line in tailed.stdout.splitlines()]
    assert len(records) == 50
    for record, original in zip(records, lines, strict=True):
        tag, _, rest = original.partition(" ")
        assert record["value"] == rest  # the label column is gone from the content...
        assert record["headers"]["system"] == "bgl"
        assert record["headers"]["label"] == ("normal" if tag == "-" else "anomalous")  # ...and is in a header
        assert record["key"] == "bgl"
