"""Where detectors score: device names resolved or refused, the CPU path unchanged by an explicit "cpu", and (marked
``gpu``) the same windows on CUDA scoring like the CPU within bf16's rounding, mixed adapter batches included."""

from __future__ import annotations

import pydantic
import pytest
import torch

from harness.inference import windows_of
from stream.errors import ModelError
from stream.inference.model_host import ModelHost, window_text
from stream.model.detector import Detector, WindowText, cpu_has_native_bf16, resolve_device, scoring_autocast
from stream.model.logtransfer import LogTransferDetector
from stream.model.registry import Registry
from stream.model.translog import TransLogDetector
from stream.settings import InferenceSettings, TrainerSettings

torch.set_num_threads(2)
CUDA = torch.cuda.is_available()
no_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device")

WINDOWS = [
    WindowText(("Receiving block <*> src: <*> dest: <*>", "Received block <*> of size <*> from <*>")),
    WindowText(("PacketResponder <*> for block <*> terminating",) * 5 + ("Deleting block <*> file <*>",)),
    WindowText(("kernel panic", "machine check interrupt", "kernel panic")),
    WindowText(()),  # an empty window scores too (attends to position 0, reads one zero vector)
    WindowText(tuple(f"template {i} of a long window <*>" for i in range(30))),  # longer than max_len
]
TARGETS = [None, "bgl", "thunderbird", "bgl", None]


def nudged(detector: Detector, seed: int = 0) -> Detector:
    """Two targets whose adapters are moved off the identity, so that each row's adapter changes its score."""
    generator = torch.Generator().manual_seed(seed)
    for target in ("bgl", "thunderbird"):
        detector.add_target(target)
        state = detector.adapter_state(target)
        detector.load_adapter_state(
            target, {n: t + 0.05 * torch.randn(t.shape, generator=generator) for n, t in state.items()}
        )
    return detector


def small(family: str) -> Detector:
    if family == "translog":
        return nudged(TransLogDetector.create({"layers": 2, "max_len": 8}, seed=0))
    return nudged(LogTransferDetector.create({"hidden": 32, "layers": 2, "classifier_hidden": 16}, seed=0))


# ---------------------------------------------------------------------------------------------------- names


def test_auto_is_cuda_when_torch_sees_one_else_the_cpu():
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "CPU", "cuda:", "cuda:x", "cuda0", "mps", "", " cpu"])
def test_an_unknown_device_name_is_refused_naming_the_accepted_ones(name):
    with pytest.raises(ModelError, match=r"use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(name)
    with pytest.raises(pydantic.ValidationError, match="device"):
        InferenceSettings(device=name)
    with pytest.raises(pydantic.ValidationError, match="device"):
        TrainerSettings(device=name)


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA device")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_cuda_device_is_refused_not_run_on_the_cpu(name):
    with pytest.raises(ModelError, match="torch sees no CUDA device"):
        resolve_device(name)
    assert InferenceSettings(device=name).device == name  # the form is fine: the machine decides at start


@pytest.mark.gpu
@no_cuda
def test_a_cuda_index_beyond_the_devices_is_refused():
    with pytest.raises(ModelError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_the_setting_defaults_to_auto():
    assert InferenceSettings().device == "auto"


# ---------------------------------------------------------------------------------------------------- CPU


@pytest.mark.parametrize("family", ["translog", "logtransfer"])
def test_an_explicit_cpu_scores_exactly_as_the_default(family):
    default, moved = small(family), small(family)
    assert moved.to_device("cpu") == torch.device("cpu") == moved.device
    assert moved.scores_mixed(WINDOWS, TARGETS) == default.scores_mixed(WINDOWS, TARGETS)
    for target in (None, "bgl"):
        assert moved.scores(WINDOWS, target=target) == default.scores(WINDOWS, target=target)
    # states stay in host memory and unchanged by the (no-op) move
    assert all(torch.equal(t, default.base_state()[n]) for n, t in moved.base_state().items())


# ---------------------------------------------------------------------------------------------------- host


def copied_registry(hdfs_registry, tmp_path) -> Registry:
    """The session's registry, copied: adapters published here must not reach the other tests' registry."""
    return hdfs_registry.copy(tmp_path / "registry").registry


def publish_nudged_adapter(registry: Registry, base, system: str, seed: int) -> None:
    detector, manifest = registry.load_serving_base(base.name)
    detector.add_target(system)
    generator = torch.Generator().manual_seed(seed)
    state = {n: t + 0.01 * torch.randn(t.shape, generator=generator) for n, t in detector.adapter_state(system).items()}
    detector.load_adapter_state(system, state)
    registry.save_adapter(detector, system, base=manifest, threshold=base.threshold, training={}, metrics={})


def mixed_windows(hdfs_registry, count: int):
    """HDFS test blocks sent as "hdfs" (the adapter) and as "other" (no adapter: the base, zero-shot), alternating."""
    dataset, test = hdfs_registry.dataset, hdfs_registry.split.test[:count]
    hdfs = windows_of(dataset, test[0::2], system="hdfs")
    other = windows_of(dataset, test[1::2], system="other")
    return [w for pair in zip(hdfs, other, strict=False) for w in pair]


@pytest.mark.slow
def test_a_host_on_an_explicit_cpu_serves_exactly_as_the_default_host(hdfs_registry, tmp_path):
    registry = copied_registry(hdfs_registry, tmp_path)
    default, on_cpu = ModelHost(registry), ModelHost(registry, device="cpu")
    assert default.device == on_cpu.device == torch.device("cpu")  # "auto" without a GPU
    publish_nudged_adapter(registry, hdfs_registry.base, "hdfs", seed=1)
    changes = default.refresh()
    # the session registry may hold earlier hdfs adapter versions: the new one is whichever number it got
    assert changes == on_cpu.refresh() and len(changes) == 1 and changes[0].startswith("hdfs: zero-shot -> v")
    windows = mixed_windows(hdfs_registry, 60)
    assert on_cpu.score(windows) == default.score(windows)  # every field: scores, labels, explanations


def test_a_host_refuses_an_unknown_device_before_loading(tmp_path):
    with pytest.raises(ModelError, match="device 'gpu'"):
        ModelHost(Registry(tmp_path), "base", device="gpu")
    with pytest.raises(ModelError, match="precision 'half'"):
        ModelHost(Registry(tmp_path), "base", precision="half")


def test_scoring_autocast_follows_the_precision_asked_for():
    cpu = torch.device("cpu")

    def dtype(precision: str):
        with scoring_autocast(cpu, precision):
            return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype

    assert dtype("default") == dtype("float32") == torch.float32  # training and evaluation: fp32 on the CPU
    assert dtype("bfloat16") == torch.bfloat16
    assert dtype("auto") == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    with pytest.raises(ValueError, match="precision 'fp8'"):
        scoring_autocast(cpu, "fp8")


@pytest.mark.slow
def test_serving_in_bf16_keeps_the_verdicts_and_float32_keeps_the_training_scores(hdfs_registry):
    registry = hdfs_registry.registry
    windows = mixed_windows(hdfs_registry, 300)
    texts = [window_text(w) for w in windows]
    trained = registry.load_serving_base(hdfs_registry.base.name)[0].scores(texts)  # as evaluation scored them
    fp32 = ModelHost(registry, precision="float32").score(windows)
    assert [v.score for v in fp32] == pytest.approx(trained, abs=1e-6)
    bf16 = ModelHost(registry, precision="bfloat16").score(windows)
    moved = [abs(a.score - b.score) for a, b in zip(bf16, fp32, strict=True)]
    assert max(moved) > 0  # it really scored in bf16
    assert max(moved) <= SCORE_TOLERANCE
    agree = sum(a.label == b.label for a, b in zip(bf16, fp32, strict=True)) / len(windows)
    assert agree >= 0.98, agree


# ---------------------------------------------------------------------------------------------------- CUDA

# bf16 keeps 8 bits of mantissa: a score moves by a few thousandths, rarely more
SCORE_TOLERANCE = 0.05


@pytest.mark.gpu
@no_cuda
@pytest.mark.parametrize("family", ["translog", "logtransfer"])
def test_cuda_scores_the_cpu_scores_within_bf16_rounding(family):
    on_cpu, on_cuda = small(family), small(family)
    device = on_cuda.to_device("cuda")
    assert device.type == "cuda" and on_cuda.device == device
    assert all(p.device == device for p in on_cuda.model.parameters())
    if family == "translog":
        assert next(on_cuda.embedder.model.parameters()).device == device
    assert all(torch.equal(t, on_cpu.base_state()[n]) for n, t in on_cuda.base_state().items())  # back in host memory
    expected, got = on_cpu.scores_mixed(WINDOWS, TARGETS), on_cuda.scores_mixed(WINDOWS, TARGETS)
    assert got == pytest.approx(expected, abs=SCORE_TOLERANCE)
    for target in (None, "bgl", "thunderbird"):
        alone = on_cuda.scores(WINDOWS, target=target)
        assert alone == pytest.approx(on_cpu.scores(WINDOWS, target=target), abs=SCORE_TOLERANCE)
    on_cuda.add_target("added_later")  # created on the model's device, starting as the base
    assert all(p.device == device for p in on_cuda.model.parameters())
    assert on_cuda.scores(WINDOWS, target="added_later") == pytest.approx(on_cpu.scores(WINDOWS), abs=SCORE_TOLERANCE)


@pytest.mark.gpu
@pytest.mark.slow
@no_cuda
def test_a_host_on_cuda_gives_the_cpu_verdicts_with_hot_swapped_adapters(hdfs_registry, tmp_path):
    """The trained HDFS TransLog on both devices, an adapter published and swapped in while both serve: mixed
    batches (adapter and zero-shot rows) score alike and nearly every window gets the same label."""
    registry = copied_registry(hdfs_registry, tmp_path)
    on_cpu, on_cuda = ModelHost(registry, device="cpu"), ModelHost(registry, device="cuda")
    assert on_cuda.device.type == "cuda" and on_cuda.detector.device == on_cuda.device
    windows = mixed_windows(hdfs_registry, 300)
    for version in (1, 2):
        publish_nudged_adapter(registry, hdfs_registry.base, "hdfs", seed=version)
        assert on_cpu.refresh() == on_cuda.refresh() and on_cuda.route("hdfs").adapter.version == f"v000{version}"
        assert all(p.device == on_cuda.device for p in on_cuda.detector.model.parameters())
        expected, got = on_cpu.score(windows), on_cuda.score(windows)
        assert [v.adapter_version for v in got] == [v.adapter_version for v in expected]
        assert [v.score for v in got] == pytest.approx([v.score for v in expected], abs=SCORE_TOLERANCE)
        agree = sum(a.label == b.label for a, b in zip(got, expected, strict=True))
        assert agree >= 0.97 * len(windows), f"{len(windows) - agree} of {len(windows)} labels differ"
