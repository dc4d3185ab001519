"""Accuracy: the metric definitions, and our parser's GA against plain drain3 on Loghub-2.0 ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.streaming import DATA
from stream.parsing.accuracy import (
    DATASETS,
    evaluate,
    grouping_accuracy,
    main,
    normalize_template,
    parsing_accuracy,
)

PARSING = DATA / "parsing"


def test_grouping_accuracy_definition() -> None:
    truth = ["A", "A", "B", "B", "C"]
    assert grouping_accuracy(truth, [1, 1, 2, 2, 3]) == 1.0
    assert grouping_accuracy(truth, [1, 1, 2, 3, 4]) == pytest.approx(3 / 5)  # B split: both B lines wrong
    assert grouping_accuracy(truth, [1, 1, 1, 1, 2]) == pytest.approx(1 / 5)  # A and B merged: four lines wrong
    assert grouping_accuracy([], []) == 0.0


def test_parsing_accuracy_normalises_masks() -> None:
    assert (
        normalize_template("Receiving block <BLK> src: /<IP>  dest: <*><*>")
        == "Receiving block <*> src: /<*> dest: <*>"
    )
    assert parsing_accuracy(["size <*>", "x <*>"], ["size <NUM>", "x y"]) == 0.5


@pytest.mark.parametrize("dataset", DATASETS)
def test_grouping_accuracy_not_below_drain3(dataset: str) -> None:
    row = evaluate(PARSING, dataset)
    ours, reference = row["ours"], row["drain3"]
    assert ours["GA"] >= reference["GA"] - 0.01  # type: ignore[index]
    assert ours["GA"] > 0.9  # type: ignore[index]  # Loghub's Drain figures are 0.95-1.0 on these samples


def test_main_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "acc.json"
    assert main(["--data-dir", str(PARSING), "--json", str(out)]) == 0
    assert "Thunderbird" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"{")
