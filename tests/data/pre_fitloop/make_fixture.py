"""Writes the registry in this folder with the code of commit 47594e5 (before the shared fit loop and the family
packages), so that tests/unit/test_model_artifacts.py can check that what that code saved still loads and scores the
same. A LogTransfer with fitted word vectors (no pretrained part: nothing outside the weights file), kept tiny.

    git worktree add /tmp/old 47594e5 && cd /tmp/old && PYTHONPATH=$PWD python <this file> <this folder>
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from harness.streaming import DATA
from stream.model.artifacts import save_adapter, save_base
from stream.model.detector import FitOptions, WindowText
from stream.model.families import family_class
from stream.model.registry import Registry
from trainer.datasets import default_split, limit, load_labeled_lines

torch.set_num_threads(1)
out = Path(sys.argv[1])
dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system="thunderbird", size=5)
split = default_split(dataset, seed=0)
chosen = dataset.select(limit(dataset, split.train, max_anomalies=12, max_normals=36, seed=0))
windows = [WindowText(w.templates) for w in chosen]
labels = [w.label for w in chosen]
config = {
    "vectors": "fit",
    "word_dim": 8,
    "hidden": 8,
    "layers": 1,
    "classifier_hidden": 8,
    "max_len": 5,
    "fit_vocabulary": 256,
}
detector = family_class("logtransfer").create(config, seed=0)
detector.fit(windows, labels, target=None, mode="base", options=FitOptions(epochs=3, seed=0, min_steps=0))
detector.add_target("tb")
detector.fit(windows, labels, target="tb", mode="adapter", options=FitOptions(epochs=3, seed=1, min_steps=0))
with tempfile.TemporaryDirectory() as scratch:
    base = save_base(detector, Path(scratch) / "base", source="thunderbird", threshold=0.5, training={}, metrics={})
    save_adapter(detector, "tb", Path(scratch) / "adapter", base=base, threshold=0.5, training={}, metrics={})
    shutil.rmtree(out / "registry", ignore_errors=True)
    registry = Registry(out / "registry")
    registry.publish_base(Path(scratch) / "base", name="thunderbird")
    registry.publish_adapter(Path(scratch) / "adapter")
probe = windows[:8]
expected = {
    "windows": [list(w.templates) for w in probe],
    "base": detector.scores(probe),
    "tb": detector.scores(probe, target="tb"),
}
(out / "expected_scores.json").write_text(json.dumps(expected, indent=1) + "\n")
