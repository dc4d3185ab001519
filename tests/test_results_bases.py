"""The results script keeps each trained base on disk and a later invocation reuses it (real TransLog, BGL_2k)."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainer.results as results
from tests.streaming import DATA
from trainer.datasets import Dataset, load_labeled_lines
from trainer.train import inputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bgl() -> Dataset:
    return load_labeled_lines(DATA / "bgl" / "BGL_2k.log", system="bgl")


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bgl: Dataset) -> Path:
    monkeypatch.setattr(results, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(results, "BASES", tmp_path / "bases")
    monkeypatch.setattr(results, "load_dataset", lambda name, budget: bgl)
    monkeypatch.setitem(results.BUDGETS, "translog", results.Budget(epochs=2, min_steps=0))
    return tmp_path


def test_a_base_trained_once_is_reused_by_the_next_invocation(runs: Path, bgl: Dataset, capsys) -> None:
    first = results.Runner("translog", fresh=False, seed=0).base("bgl")
    saved = list((runs / "bases" / "translog").iterdir())
    assert [p.name.split("-")[0] for p in saved] == ["bgl"]

    again = results.Runner("translog", fresh=False, seed=0).base("bgl")
    assert "base bgl: reused" in capsys.readouterr().err
    windows, _ = inputs(bgl, range(len(bgl.windows)))
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
