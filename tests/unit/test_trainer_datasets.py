"""Datasets on the real Loghub files: windows equal what the stream serves, labels equal the ground truth, splits
keep groups apart and time order, and bad files fail with a ConfigError naming the file."""

from __future__ import annotations

import csv
import gzip
import re
import time
from pathlib import Path

import orjson
import pytest

from harness.streaming import DATA, block_lines
from stream.decode import Decoder
from stream.errors import ConfigError
from stream.pipeline.ingest_stage import IngestPartition
from stream.pipeline.parse_stage import ParsePartition
from stream.pipeline.session_stage import SessionPartition
from stream.pipeline.stage import InputRecord
from stream.records import TICK as TICK_ENVELOPE
from stream.records import encode
from stream.replay import read_block_labels, replay_records
from stream.settings import load_settings
from trainer.datasets import (
    Dataset,
    chronological_split,
    default_split,
    group_split,
    limit,
    load_bgl_windows,
    load_hadoop,
    load_hdfs,
    load_labeled_lines,
    load_sequences,
    summary,
)

HDFS_5K = DATA / "hdfs" / "HDFS_5k.log"
HDFS_5K_LABELS = DATA / "hdfs" / "HDFS_5k_block_labels.csv"
BGL_2K = DATA / "bgl" / "BGL_2k.log"
HADOOP = DATA / "hadoop"
BGL_WINDOWS = DATA / "bgl" / "bgl_windows20.csv.gz"
BGL_TEMPLATES = DATA / "bgl" / "bgl_window_templates.csv"


@pytest.fixture(scope="module")
def hdfs_5k() -> Dataset:
    """HDFS_5k as block sessions, labeled from its block label file."""
    return load_hdfs(HDFS_5K, HDFS_5K_LABELS)


@pytest.fixture(scope="module")
def hadoop() -> Dataset:
    return load_hadoop(HADOOP)


def served_windows(system: str, path: Path) -> list[dict]:
    """The windows the stream's ingest, parse and (for sessions) session stages emit for a replay of ``path``."""
    settings = load_settings()
    ingest, parse = IngestPartition(settings, Decoder(settings)), ParsePartition(settings)
    sessions = SessionPartition(settings) if system == "hdfs" else None
    block_labels = read_block_labels(HDFS_5K_LABELS) if system == "hdfs" else None
    line_format = settings.systems[system].line_format(system)
    out = []
    for offset, record in enumerate(replay_records(path, system, line_format, block_labels)):
        raw = InputRecord("logs", 0, offset, None, record.value, 1_000 + offset, record.headers)
        for line in ingest.process_batch([raw]):
            out += parse.process_batch(
                [InputRecord(settings.topics.lines, 0, offset, line.key, line.value, 1_000 + offset)]
            )
    if sessions is not None:
        routed = [o for o in out if o.topic == settings.topics.sessions]
        out = []
        for offset, o in enumerate(routed):
            out += sessions.process_batch([InputRecord(o.topic, 0, offset, o.key, o.value, 2_000)])
        # A tick long after the last line closes every session by the idle timeout, as a quiet stream would.
        tick = encode(TICK_ENVELOPE)
        out += sessions.process_batch([InputRecord(settings.topics.sessions, 0, len(routed), None, tick, 10**9)])
    return [orjson.loads(o.value) for o in out if o.topic == settings.topics.windows]


def test_hdfs_5k_gives_one_window_per_block_holding_its_lines_in_order(hdfs_5k: Dataset) -> None:
    truth = block_lines(HDFS_5K)
    labels = dict(csv.reader(HDFS_5K_LABELS.open()))
    assert len(hdfs_5k.windows) == 110 == len(truth)
    assert sum(w.label for w in hdfs_5k.windows) == 10
    for window in hdfs_5k.windows:
        assert window.lines == tuple(truth[window.key])
        assert window.group == window.key
        assert window.label == (labels[window.key] == "Anomaly")
        assert len(window.templates) == len(window.template_ids) == len(window.masked) == len(window.lines)


def test_hdfs_windows_are_the_windows_the_stream_serves(hdfs_5k: Dataset) -> None:
    served = {w["key"]: w for w in served_windows("hdfs", HDFS_5K)}
    assert set(served) == {w.key for w in hdfs_5k.windows}
    for window in hdfs_5k.windows:
        lines = served[window.key]["lines"]
        assert tuple(line["offset"] for line in lines) == window.lines
        assert tuple(line["template_id"] for line in lines) == window.template_ids
        assert tuple(line["template"] for line in lines) == window.templates
        assert tuple(line["masked"] for line in lines) == window.masked
        assert {line["label"] for line in lines} == {"anomalous" if window.label else "normal"}


@pytest.mark.slow
def test_hdfs_2pct_loads_all_blocks_in_seconds() -> None:
    started = time.monotonic()
    dataset = load_hdfs(DATA / "hdfs" / "HDFS_2pct_blocks.log.gz", DATA / "hdfs" / "HDFS_2pct_anomaly_label.csv")
    assert time.monotonic() - started < 30
    assert len(dataset.windows) == 11_501 == len({w.group for w in dataset.windows})
    assert sum(w.label for w in dataset.windows) == 350
    assert dataset.dropped_lines == 0


def test_bgl_2k_gives_100_windows_of_20_labeled_by_the_label_column(bgl_2k: Dataset) -> None:
    tags = [line.split(" ", 1)[0] for line in BGL_2K.read_text(encoding="utf-8").splitlines()]
    assert len(bgl_2k.windows) == 100
    for index, window in enumerate(bgl_2k.windows):
        assert window.lines == tuple(range(20 * index, 20 * index + 20))
        window_tags = tags[20 * index : 20 * index + 20]
        assert window.label == any(tag != "-" for tag in window_tags)
        assert window.detail == ",".join(sorted({tag for tag in window_tags if tag != "-"}))
    assert sum(w.label for w in bgl_2k.windows) == 28


def test_bgl_windows_are_the_windows_the_stream_serves(bgl_2k: Dataset) -> None:
    served = served_windows("bgl", BGL_2K)
    assert [tuple(line["offset"] for line in w["lines"]) for w in served] == [w.lines for w in bgl_2k.windows]
    assert [tuple(line["template_id"] for line in w["lines"]) for w in served] == [
        w.template_ids for w in bgl_2k.windows
    ]
    assert [tuple(line["template"] for line in w["lines"]) for w in served] == [w.templates for w in bgl_2k.windows]
    assert [w["start_ms"] for w in served] == [w.start_ms for w in bgl_2k.windows]


def test_sliding_windows_and_the_time_split_never_share_a_line_across_parts() -> None:
    dataset = load_labeled_lines(BGL_2K, system="bgl", size=20, step=4)
    assert len(dataset.windows) == (2_000 - 20) // 4 + 1
    assert all(w.lines == tuple(range(4 * i, 4 * i + 20)) for i, w in enumerate(dataset.windows))
    parts = default_split(dataset)
    seen: set[int] = set()
    for indices in parts.parts().values():
        lines = {line for i in indices for line in dataset.windows[i].lines}
        assert not lines & seen
        seen |= lines


def test_thunderbird_19k_loads_in_windows_of_20() -> None:
    dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system="thunderbird")
    assert len(dataset.windows) == 968  # 19,350 lines: 967 full windows and the flushed tail of 10
    assert len(dataset.windows[-1].lines) == 10
    assert sum(len(w.lines) for w in dataset.windows) == 19_350
    assert 0 < sum(w.label for w in dataset.windows) < len(dataset.windows)


def test_chronological_split_puts_every_train_window_before_every_test_window(bgl_2k: Dataset) -> None:
    parts = chronological_split(bgl_2k)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (72, 8, 20)
    train_then_validation = parts.train + parts.validation
    assert max(train_then_validation) < min(parts.test)
    assert max(bgl_2k.windows[i].end_ms for i in train_then_validation) <= min(
        bgl_2k.windows[i].start_ms for i in parts.test
    )
    assert max(bgl_2k.windows[i].lines[-1] for i in parts.train) < min(
        bgl_2k.windows[i].lines[0] for i in parts.validation
    )


def test_hadoop_sequences_split_by_application_with_labels_from_app_labels(hadoop: Dataset) -> None:
    app_labels = dict(csv.reader((HADOOP / "app_labels.csv").open()))
    assert len(hadoop.windows) == 978
    for window in hadoop.windows:
        app = window.key.split("/")[0]
        assert window.group == app
        assert window.label == (app_labels[app] != "Normal")
        assert window.detail == ("" if app_labels[app] == "Normal" else app_labels[app])
        assert len(window.templates) == len(window.template_ids) and not window.masked
    parts = default_split(hadoop, seed=3)
    apps = {part: {hadoop.windows[i].group for i in indices} for part, indices in parts.parts().items()}
    assert not apps["train"] & apps["test"]
    assert not apps["train"] & apps["validation"] and not apps["validation"] & apps["test"]
    assert sorted(parts.train + parts.validation + parts.test) == list(range(978))
    # Stratified: both labels in both train and test.
    for part in ("train", "test"):
        assert {hadoop.windows[i].label for i in parts.parts()[part]} == {0, 1}


def test_sequence_labels_can_come_from_file_names() -> None:
    files = [HADOOP / "hadoop_test_normal", HADOOP / "hadoop_test_abnormal_disk_full"]
    dataset = load_sequences(files, HADOOP / "Hadoop_templates.csv", system="hadoop")
    assert (len(dataset.windows), sum(w.label for w in dataset.windows)) == (150 + 152, 152)
    app_labels = dict(csv.reader((HADOOP / "app_labels.csv").open()))
    assert all(w.label == (app_labels[w.group] != "Normal") for w in dataset.windows)


def test_seeded_group_splits_are_reproducible(hdfs_5k: Dataset) -> None:
    assert group_split(hdfs_5k, seed=7) == group_split(hdfs_5k, seed=7)
    assert group_split(hdfs_5k, seed=7).test != group_split(hdfs_5k, seed=8).test
    parts = group_split(hdfs_5k, seed=7)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (79, 9, 22)
    assert sum(hdfs_5k.windows[i].label for i in parts.test) == 2  # stratified: 20% of the 10 anomalous blocks


def test_bgl_windows20_keeps_its_split_column() -> None:
    dataset = load_bgl_windows(BGL_WINDOWS, BGL_TEMPLATES, max_rows=3_000)
    templates = dict(csv.reader(BGL_TEMPLATES.open()))
    with gzip.open(BGL_WINDOWS, "rt") as handle:
        rows = [row for _, row in zip(range(3_000), csv.DictReader(handle), strict=False)]
    assert len(dataset.windows) == 3_000
    parts = {"train": "train", "val": "validation", "test": "test"}
    for index, (window, row) in enumerate(zip(dataset.windows, rows, strict=True)):
        assert index in dataset.given_split.parts()[parts[row["split"]]]  # type: ignore[union-attr]
        assert window.label == int(row["label"])
        assert window.templates == tuple(templates[i] for i in row["event_ids"].split())
    assert default_split(dataset) is dataset.given_split


@pytest.mark.slow
def test_bgl_windows20_loads_whole() -> None:
    started = time.monotonic()
    dataset = load_bgl_windows(BGL_WINDOWS, BGL_TEMPLATES)
    assert time.monotonic() - started < 30
    assert len(dataset.windows) == 231_563 and sum(w.label for w in dataset.windows) == 18_737
    split = dataset.given_split
    assert split is not None
    assert (len(split.train), len(split.validation), len(split.test)) == (185_250, 23_156, 23_157)
    assert max(split.train) < min(split.validation) and max(split.validation) < min(split.test)  # time order


def test_limit_caps_each_label_and_grows_by_adding(hadoop: Dataset) -> None:
    train = default_split(hadoop).train
    kept = limit(hadoop, train, max_anomalies=5, max_normals=20, seed=1)
    assert sum(hadoop.windows[i].label for i in kept) == 5 and len(kept) == 25
    assert list(kept) == sorted(kept) and set(kept) <= set(train)
    more = limit(hadoop, train, max_anomalies=10, max_normals=20, seed=1)
    assert set(kept) <= set(more)
    same_anomalies = limit(hadoop, train, max_anomalies=5, max_normals=None, seed=1)
    assert {i for i in same_anomalies if hadoop.windows[i].label} == {i for i in kept if hadoop.windows[i].label}
    assert limit(hadoop, train, max_anomalies=None, max_normals=None) == tuple(train)
    only_normals = limit(hadoop, train, max_anomalies=0, max_normals=3, seed=1)
    assert len(only_normals) == 3 and not any(hadoop.windows[i].label for i in only_normals)
    with pytest.raises(ConfigError, match="max_normals"):
        limit(hadoop, train, max_anomalies=1, max_normals=-1)


def test_summary_counts_each_part_and_label(hadoop: Dataset) -> None:
    parts = default_split(hadoop, seed=0)
    counted = summary(hadoop, parts)
    assert (counted["windows"], counted["anomalous"], counted["normal"], counted["groups"]) == (978, 811, 167, 55)
    assert sum(counted["split"][part]["windows"] for part in ("train", "validation", "test")) == 978
    assert counted["split"]["seed"] == 0 and "random by group" in counted["split"]["method"]
    orjson.dumps(counted)  # goes into a JSON manifest as it is


@pytest.mark.parametrize(
    "load",
    [
        lambda missing: load_hdfs(missing, HDFS_5K_LABELS),
        lambda missing: load_hdfs(HDFS_5K, missing),
        lambda missing: load_labeled_lines(missing, system="bgl"),
        lambda missing: load_sequences([missing], HADOOP / "Hadoop_templates.csv", system="hadoop"),
        lambda missing: load_bgl_windows(BGL_WINDOWS, missing),
    ],
)
def test_a_missing_file_is_a_config_error_naming_it(load, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.log"
    with pytest.raises(ConfigError, match=f"{re.escape(str(missing))}: no such file"):
        load(missing)


def test_malformed_lines_are_config_errors_naming_file_and_line(tmp_path: Path) -> None:
    good = BGL_2K.read_text(encoding="utf-8").splitlines()[:5]
    bgl = tmp_path / "bgl.log"
    bgl.write_text("\n".join([*good[:3], "- not a bgl line", *good[3:]]) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(bgl))}: line 4: .*does not match format 'bgl'"):
        load_labeled_lines(bgl, system="bgl")

    sequences = tmp_path / "test_normal"
    sequences.write_text("app_1/c_1,1 2 3\napp_1/c_2,1 two 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(sequences))}: line 2: template ids must be integers"):
        load_sequences([sequences], HADOOP / "Hadoop_templates.csv", system="hadoop")
    sequences.write_text("app_1/c_1,1 2 99999\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(sequences))}: line 1: template id 99999 is not in"):
        load_sequences([sequences], HADOOP / "Hadoop_templates.csv", system="hadoop")

    labels = tmp_path / "labels.csv"
    labels.write_text("BlockId,Label\nblk_1,Normal\nblk_2,Weird\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(labels))}: line 3: label 'Weird'"):
        load_hdfs(HDFS_5K, labels)
    labels.write_text("BlockId,Label\nblk_1,Normal\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(labels))}: block blk_-?\d+ \(line 1 of .*\) has no label"):
        load_hdfs(HDFS_5K, labels)

    windows = tmp_path / "windows.csv"
    windows.write_text("window_id,split,label,event_ids\n0,train,0,1 2\n1,holdout,1,1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(windows))}: line 3: split 'holdout'"):
        load_bgl_windows(windows, BGL_TEMPLATES)
