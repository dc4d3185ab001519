"""The content ceiling: the best F1 a detector reading only the windows' lines can reach (trainer.evaluate)."""

from __future__ import annotations

import itertools
import random

import pytest

from harness.streaming import DATA
from trainer.datasets import Dataset, LabeledWindow, default_split, load_hadoop, load_hdfs
from trainer.evaluate import content_ceiling


def window(content: str, label: int) -> LabeledWindow:
    templates = tuple(content)
    return LabeledWindow("test", "", templates, tuple(range(len(templates))), templates, label, 0, 0, content)


def dataset(windows: list[LabeledWindow]) -> Dataset:
    return Dataset("test", "test", tuple(windows), "group")


def brute_force_ceiling(windows: list[LabeledWindow]) -> float:
    """Every subset of distinct contents flagged, the best F1: what the sweep must find without enumerating."""
    contents = sorted({w.templates for w in windows})
    positives = sum(w.label for w in windows)
    best = 0.0
    for size in range(1, len(contents) + 1):
        for flagged in itertools.combinations(contents, size):
            tp = sum(w.label for w in windows if w.templates in flagged)
            fp = sum(1 - w.label for w in windows if w.templates in flagged)
            best = max(best, 2 * tp / (tp + fp + positives))
    return best


def test_identical_windows_with_both_labels_cap_f1() -> None:
    # "ab" twice anomalous and once normal, "c" anomalous, "d" normal: flagging "ab" and "c" is best, 2*3/(3+1+3)
    windows = [window("ab", 1), window("ab", 1), window("ab", 0), window("c", 1), window("d", 0)]
    ceiling = content_ceiling(dataset(windows), range(len(windows)))
    assert ceiling == {"f1": pytest.approx(6 / 7, abs=1e-6), "distinct_windows": 3, "anomalous_alike_normal": 2,
                       "anomalous": 3}  # fmt: skip
    # order matters: "ba" is another window
    assert content_ceiling(dataset([window("ab", 1), window("ba", 0)]), range(2))["f1"] == 1.0


@pytest.mark.parametrize("seed", range(40))
def test_the_sweep_finds_the_best_subset(seed: int) -> None:
    rng = random.Random(seed)
    windows = [window(rng.choice("abcdefg"), int(rng.random() < 0.4)) for _ in range(rng.randint(3, 30))]
    if not any(w.label for w in windows):
        windows.append(window("z", 1))
    ceiling = content_ceiling(dataset(windows), range(len(windows)))["f1"]
    assert ceiling == pytest.approx(brute_force_ceiling(windows), abs=1e-6)


def test_hadoop_labels_cap_f1_below_the_goal_and_hdfs_blocks_do_not() -> None:
    """Hadoop's labels are per application: most containers of a faulty one read exactly like a healthy one's."""
    hadoop = load_hadoop(DATA / "hadoop")
    everything = content_ceiling(hadoop, range(len(hadoop.windows)))
    assert everything["anomalous"] == 811 and everything["anomalous_alike_normal"] > everything["anomalous"] / 2
    trivial = 2 * 811 / (len(hadoop.windows) + 811)
    assert trivial < everything["f1"] < 0.93  # barely above flagging every container
    test = content_ceiling(hadoop, default_split(hadoop, seed=0).test)
    assert test["f1"] < 0.97  # the Hadoop goal cannot be met on this split by any model

    hdfs = load_hdfs(DATA / "hdfs" / "HDFS_5k.log", DATA / "hdfs" / "HDFS_5k_block_labels.csv")
    ceiling = content_ceiling(hdfs, range(len(hdfs.windows)))
    assert (ceiling["f1"], ceiling["anomalous_alike_normal"], ceiling["anomalous"]) == (1.0, 0, 10)
    assert ceiling["distinct_windows"] == len({(w.templates, w.masked) for w in hdfs.windows})
