"""The results script keeps each trained base on disk and a later invocation reuses it (real TransLog, BGL_2k)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import trainer.results as results
from trainer.datasets import Dataset
from trainer.train import inputs

pytestmark = pytest.mark.slow


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bgl_2k: Dataset) -> Path:
    monkeypatch.setattr(results, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(results, "BASES", tmp_path / "bases")
    monkeypatch.setattr(results, "load_dataset", lambda name, budget: bgl_2k)
    monkeypatch.setitem(results.BUDGETS, "translog", results.Budget(epochs=2, min_steps=0))
    return tmp_path


def test_a_base_trained_once_is_reused_by_the_next_invocation(runs: Path, bgl_2k: Dataset, capsys) -> None:
    first = results.Runner("translog", fresh=False, seed=0).base("bgl")
    saved = list((runs / "bases" / "translog").iterdir())
    assert [p.name.split("-")[0] for p in saved] == ["bgl"]

    again = results.Runner("translog", fresh=False, seed=0).base("bgl")
    assert "base bgl: reused" in capsys.readouterr().err
    windows, _ = inputs(bgl_2k, range(len(bgl_2k.windows)))
    assert again.detector.scores(windows) == pytest.approx(first.detector.scores(windows), abs=1e-6)
    assert again.threshold == first.threshold and again.validation == first.validation
    restored, trained = again.report.to_dict(), first.report.to_dict()
    assert restored.pop("seconds") == pytest.approx(trained.pop("seconds"), abs=1e-3)  # stored to the millisecond
    assert restored.pop("windows_per_s") == pytest.approx(trained.pop("windows_per_s"), rel=1e-3)
    assert restored == trained and restored["losses"]

    other_seed = results.Runner("translog", fresh=False, seed=1)
    assert other_seed.base_key("bgl") != results.Runner("translog", fresh=False, seed=0).base_key("bgl")


def test_fresh_trains_the_base_again_in_place_of_the_old_one(runs: Path, capsys) -> None:
    results.Runner("translog", fresh=False, seed=0).base("bgl")
    results.Runner("translog", fresh=True, seed=0).base("bgl")
    assert "reused" not in capsys.readouterr().err
    assert len(list((runs / "bases" / "translog").iterdir())) == 1


def test_another_seed_computes_its_own_runs_and_the_report_shows_the_spread(runs: Path) -> None:
    first = results.Runner("translog", fresh=False, seed=0).in_domain("bgl")
    assert "## Seed variation" not in results.render(runs / "runs", "test machine")  # one seed: nothing to compare

    other = results.Runner("translog", fresh=False, seed=1).in_domain("bgl")
    assert sorted(p.name for p in (runs / "runs" / "translog").iterdir()) == [
        "in_domain-bgl-seed1.json",
        "in_domain-bgl.json",
    ]
    assert other["fit"]["losses"] != first["fit"]["losses"]  # trained with seed 1, not read from seed 0's file

    text = results.render(runs / "runs", "test machine")
    in_domain = text.split("## Transfer")[0]
    assert f"| translog | bgl | {first['train_windows']:,} | **{first['f1']:.3f}** |" in in_domain  # seed 0 only
    variation = text.split("## Seed variation")[1].split("## Notes")[0]
    row = next(line for line in variation.splitlines() if line.startswith("| translog | bgl |"))
    mean = (first["f1"] + other["f1"]) / 2
    assert f"| 0, 1 | {first['f1']:.3f}, {other['f1']:.3f} | **{mean:.3f}** |" in row
    assert f"| {first['fp']}/{first['fn']}, {other['fp']}/{other['fn']} |" in row


def test_a_run_cached_before_the_ceiling_was_recorded_gets_it_from_the_data(runs: Path) -> None:
    run = results.Runner("translog", fresh=False, seed=0).in_domain("bgl")
    path = runs / "runs" / "translog" / "in_domain-bgl.json"
    ceiling = run["ceiling"]
    assert ceiling["anomalous"] == run["test_anomalous"] and 0 < ceiling["f1"] <= 1
    old = json.loads(path.read_text())
    del old["ceiling"]
    path.write_text(json.dumps(old))

    again = results.Runner("translog", fresh=False, seed=0).in_domain("bgl")
    assert again == run and json.loads(path.read_text())["ceiling"] == ceiling  # backfilled, not retrained
    row = next(line for line in results.render(runs / "runs", "m").splitlines() if line.startswith("| translog | bgl"))
    assert f"| {ceiling['f1']:.3f} |" in row


def test_a_transfer_run_is_scored_with_its_few_labels_threshold_and_an_older_run_is_recomputed(
    runs: Path, bgl_2k: Dataset, capsys
) -> None:
    runner = results.Runner("translog", fresh=False, seed=0)
    run = runner.transfer("bgl", "thunderbird", 50, "adapter")  # both names read BGL_2k here
    assert run["threshold"] == run["threshold_validation"]  # the threshold the few labels chose, not the split's
    assert run["threshold_chosen_on"].startswith(results.FEW_LABELS_THRESHOLD)
    assert run["labels"]["validation_anomalous"] > 0
    split = runner.data("thunderbird")[1]
    test_labels = inputs(bgl_2k, split.test)[1]
    flagged = [s >= run["threshold"] for s in run["test_scores"]]
    assert run["tp"] == sum(f and y for f, y in zip(flagged, test_labels, strict=True))
    assert run["fp"] == sum(f and not y for f, y in zip(flagged, test_labels, strict=True))
    assert "†" not in transfer_row(results.render(runs / "runs", "m"))

    path = runs / "runs" / "translog" / "transfer-bgl-thunderbird-50-adapter.json"
    old = json.loads(path.read_text()) | {"threshold_chosen_on": "validation part of BGL_2k.log (2 windows)"}
    path.write_text(json.dumps(old))
    text = results.render(runs / "runs", "m")
    assert f"**{old['f1']:.3f}†**" in transfer_row(text) and "† 1 runs kept from before" in text

    capsys.readouterr()
    again = results.Runner("translog", fresh=False, seed=0).transfer("bgl", "thunderbird", 50, "adapter")
    assert "from an older protocol, recomputing" in capsys.readouterr().err
    assert again["threshold_chosen_on"].startswith(results.FEW_LABELS_THRESHOLD)
    text = results.render(runs / "runs", "m")
    assert "†" not in transfer_row(text) and "runs kept from before" not in text


def transfer_row(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| translog | bgl -> thunderbird | 50"))
