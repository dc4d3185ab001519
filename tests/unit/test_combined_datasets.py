"""Several labeled systems as one data set (the training data of a multi-source base), on real slices: every
window keeps its system, each source's test part stays out of training, and the normal cap applies per source."""

from __future__ import annotations

import pytest

from harness.streaming import DATA
from trainer.datasets import default_split, load_hdfs, load_labeled_lines
from trainer.datasets.combined import combine


@pytest.fixture(scope="module")
def sources():
    hdfs = load_hdfs(DATA / "hdfs" / "HDFS_5k.log", DATA / "hdfs" / "HDFS_5k_block_labels.csv")
    bgl = load_labeled_lines(DATA / "bgl" / "BGL_2k.log", system="bgl")
    return [(hdfs, default_split(hdfs, seed=0)), (bgl, default_split(bgl, seed=0))]


def test_each_source_keeps_its_windows_and_its_split(sources):
    combined, split = combine(sources, name="hdfs+bgl")
    (hdfs, hdfs_split), (bgl, bgl_split) = sources
    assert len(combined.windows) == len(hdfs.windows) + len(bgl.windows)
    assert combined.windows[: len(hdfs.windows)] == hdfs.windows
    assert combined.windows[len(hdfs.windows) :] == bgl.windows
    offset = len(hdfs.windows)
    assert split.test == hdfs_split.test + tuple(offset + i for i in bgl_split.test)
    assert split.validation == hdfs_split.validation + tuple(offset + i for i in bgl_split.validation)
    assert split.train == hdfs_split.train + tuple(offset + i for i in bgl_split.train)
    assert not set(split.train) & (set(split.validation) | set(split.test))  # no test window trains the base
    assert {w.system for w in combined.windows} == {"hdfs", "bgl"}
    assert combined.sources == hdfs.sources + bgl.sources
    assert default_split(combined) == split  # the combined split is the data set's own


def test_the_normal_cap_is_per_source_and_keeps_every_anomaly(sources):
    combined, split = combine(sources, name="hdfs+bgl", max_normals=20)
    offset = len(sources[0][0].windows)
    for part in (split.train[: sum(1 for i in split.train if i < offset)], [i for i in split.train if i >= offset]):
        labels = [combined.windows[i].label for i in part]
        assert labels.count(0) == 20
    anomalies = [i for i in split.train if combined.windows[i].label]
    expected = sum(ds.windows[i].label for ds, sp in sources for i in sp.train)
    assert len(anomalies) == expected > 0


def test_no_sources_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        combine([], name="nothing")
