"""The one interface every model family implements, so trainer and inference worker can host any of them.

A *detector* is a base model (pretrained on a source system) plus zero or more per-target adapters. What an adapter
is depends on the family (TransLog: bottleneck adapters with their own layer norms and head; LogTransfer: the
target's own LSTM under the shared, frozen classifier; LogLLM: a LoRA adapter on the decoder and the target's
projector). The base never changes when an adapter trains, so one base serves every target at once.

    detector = family_class("translog").create({"layers": 1})
    detector.fit(source_windows, source_labels, target=None, mode="base", options=FitOptions(epochs=5))
    detector.add_target("thunderbird")
    detector.fit(few_windows, few_labels, target="thunderbird", mode="adapter", options=FitOptions())
    scores = detector.scores(test_windows, target="thunderbird")   # anomaly probabilities in [0, 1]

Weights leave and enter only through ``base_state``/``adapter_state`` and ``load_*``; ``stream.model.artifacts``
writes them as safetensors with a manifest, and checks compatibility before loading.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from stream.errors import IncompatibleArtifactError, ModelError

if TYPE_CHECKING:
    from stream.model.fit_parts import UnlabeledObjective

# "base": train the base model (pretraining on a source, training from scratch, or full fine-tuning on a target);
# adapters are untouched. "adapter": train only `target`'s adapter; every base weight is frozen.
Mode = Literal["base", "adapter"]

# progress(stage, done, total): called as work advances (stage names the epoch or training stage), for progress bars.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class WindowText:
    """What a model reads of a window: per line its Drain template and its masked text, in window order.

    Sequence files (Hadoop, BGL windows) have no raw lines: ``masked`` is then empty and a family that reads lines
    (LogLLM) reads the templates instead.
    """

    templates: tuple[str, ...]
    masked: tuple[str, ...] = ()

    def lines(self) -> tuple[str, ...]:
        """The masked lines when known, else the templates."""
        return self.masked or self.templates


@dataclass(frozen=True, slots=True)
class FitOptions:
    """How one ``fit`` trains. ``None`` means the family's default (its paper's setting where it gives one)."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seed: int = 0
    # early stopping: after each epoch score `validation`, keep the best epoch's weights, stop after `patience` worse
    validation: tuple[Sequence[WindowText], Sequence[int]] | None = None
    patience: int = 2
    max_seconds: float | None = None  # stop after the epoch that crosses this budget
    # A few hundred labeled windows make a dozen batches an epoch: a handful of epochs is too few optimizer steps for
    # an adapter (or a base far from the target) to move, and patience counted in such epochs stops it at once.
    # Small training sets therefore run at least this many steps before early stopping may stop them (the best
    # epoch on validation is still the one kept); a no-op on large ones. None: the family's ``Detector.min_steps``.
    min_steps: int | None = None

    def __post_init__(self) -> None:
        # None is the family's default; anything else is used as given, so a value that cannot train is refused
        # here rather than replaced by a default (an lr of 0 once meant "the default" to one family, 0 to another)
        bad = [
            f"{name}={value!r}"
            for name, value, ok in (
                ("epochs", self.epochs, self.epochs is None or self.epochs >= 0),
                ("lr", self.lr, self.lr is None or (math.isfinite(self.lr) and self.lr > 0)),
                ("batch_size", self.batch_size, self.batch_size is None or self.batch_size > 0),
                ("patience", self.patience, self.patience > 0),
                ("min_steps", self.min_steps, self.min_steps is None or self.min_steps >= 0),
            )
            if not ok
        ]
        if bad:
            raise ValueError(f"FitOptions: invalid {', '.join(bad)} (epochs, min_steps >= 0; lr, batch_size > 0)")

    def plan(self, default_epochs: int, windows: int, batch_size: int, family_min_steps: int) -> tuple[int, int]:
        """(epochs to run, epochs before early stopping may stop) for ``windows`` in batches of ``batch_size``."""
        min_steps = self.min_steps if self.min_steps is not None else family_min_steps
        floor = epochs_for_steps(0, windows, batch_size, min_steps)
        return max(self.epochs if self.epochs is not None else default_epochs, floor), floor


@contextmanager
def seeded(name: str) -> Iterator[None]:
    """Random initialisation inside depends on ``name`` only (e.g. a new target's adapter), not on whatever the
    process drew before: the same data and seed then give the same adapter in any process. The caller's RNG state
    is left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1)
        yield


def epochs_for_steps(epochs: int, windows: int, batch_size: int, min_steps: int) -> int:
    """``epochs``, raised until ``windows`` in batches of ``batch_size`` make at least ``min_steps`` steps."""
    batches = max(1, math.ceil(windows / batch_size))
    return max(epochs, math.ceil(min_steps / batches))


DEVICE_NAME = re.compile(r"auto|cpu|cuda(:[0-9]+)?")  # what ``resolve_device`` (and InferenceSettings.device) accept


def resolve_device(name: str | torch.device) -> torch.device:
    """The device a name means: "auto" (the first CUDA device when torch sees one, else the CPU), "cpu", "cuda" or
    "cuda:N", one that exists here. Anything else, or a CUDA device this machine lacks, is a ModelError naming what
    was asked for: a worker configured for a GPU should fail at start, not fall back to a CPU a hundred times slower.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not DEVICE_NAME.fullmatch(name):
        raise ModelError(f"device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ModelError(f"device {name!r}: torch sees no CUDA device (torch.cuda.is_available() is False)")
    # "cuda" alone is the current device, named with its index so that comparisons with parameters' devices hold
    device = torch.device(name) if ":" in name else torch.device("cuda", torch.cuda.current_device())
    if device.index >= torch.cuda.device_count():
        raise ModelError(f"device {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


PRECISIONS = ("default", "auto", "float32", "bfloat16")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls natively here (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def scoring_autocast(device: torch.device, precision: str = "default") -> AbstractContextManager[object]:
    """The autocast a family's scoring forward runs under.

    * "default" (training and evaluation): bf16 on a CUDA device with native bf16 (compute capability 8.0, Ampere,
      and later); fp32 elsewhere, so CPU scores stay the numbers they always were.
    * "auto" (serving, ``inference.precision``): bf16 wherever the hardware has it natively, the CPU included
      (AVX512-BF16: TransLog at batch 64 scores 2.1x faster than fp32 on this project's CPU, bench/model_bench.py).
    * "float32" or "bfloat16": as named, everywhere.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16) if wants_bf16(device, precision) else nullcontext()


def wants_bf16(device: torch.device, precision: str) -> bool:
    """Whether scoring under ``precision`` (see ``scoring_autocast``) runs in bf16 on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {PRECISIONS}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)
    return {
        "default": cuda_bf16,
        "auto": cuda_bf16 or (device.type == "cpu" and cpu_has_native_bf16()),
        "float32": False,
        "bfloat16": True,
    }[precision]


@dataclass(frozen=True, slots=True)
class ParameterCounts:
    total: int  # every parameter of base plus the adapters being counted
    trainable: int  # what the last ``fit`` mode trains


@dataclass(slots=True)
class FitReport:
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch (per stage for LogLLM)
    seconds: float = 0.0
    windows_seen: int = 0  # windows through forward+backward, all epochs together (windows/s = this / seconds)
    parameters: ParameterCounts | None = None
    stopped_early: bool = False
    best_epoch: int | None = None  # with validation: the epoch whose weights were kept (0-based)
    validation_f1: list[float] = field(default_factory=list)  # per epoch, best threshold on validation

    def to_dict(self) -> dict[str, Any]:
        return {
            "losses": [round(v, 6) for v in self.losses],
            "seconds": round(self.seconds, 3),
            "windows_seen": self.windows_seen,
            "windows_per_s": round(self.windows_seen / self.seconds, 2) if self.seconds > 0 else None,
            "parameters": None
            if self.parameters is None
            else {
                "total": self.parameters.total,
                "trainable": self.parameters.trainable,
            },
            "stopped_early": self.stopped_early,
            "best_epoch": self.best_epoch,
            "validation_f1": [round(v, 6) for v in self.validation_f1],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitReport:
        """The report ``to_dict`` wrote (its derived windows_per_s is recomputed, not read)."""
        parameters = data.get("parameters")
        return cls(
            losses=list(data.get("losses", [])),
            seconds=float(data.get("seconds", 0.0)),
            windows_seen=int(data.get("windows_seen", 0)),
            parameters=None if parameters is None else ParameterCounts(parameters["total"], parameters["trainable"]),
            stopped_early=bool(data.get("stopped_early", False)),
            best_epoch=data.get("best_epoch"),
            validation_f1=list(data.get("validation_f1", [])),
        )


class Detector(ABC):
    """A family's model: one base plus named target adapters. Subclasses live one per file (translog.py, ...)."""

    family: ClassVar[str]  # "translog" | "logtransfer" | "logllm"
    min_steps: ClassVar[int] = 0  # FitOptions.min_steps when it is None: what a step costs decides it
    feature_version: ClassVar[str]  # the window encoding; a model is only fed windows encoded the same way
    # the autocast of scoring (``scoring_autocast``); a serving host sets it from inference.precision. LogLLM
    # keeps its config's score_dtype under "default"; LogTransfer always scores in fp32.
    precision: str = "default"

    @classmethod
    @abstractmethod
    def create(cls, config: dict[str, Any], *, seed: int = 0) -> Detector:
        """A new, untrained base from hyperparameters (unknown keys or bad values raise ConfigError naming them;
        ``families.create_detector`` turns a builtin error from a value of the wrong type into one too).

        ``seed`` fixes the initial weights (under ``torch.random.fork_rng``, leaving the caller's RNG alone)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The hyperparameters, JSON-able; ``create(config())`` builds the same architecture."""

    @abstractmethod
    def pretrained_identity(self) -> dict[str, Any]:
        """The frozen pretrained parts this model depends on (encoder, word vectors, decoder): name and sha256.

        An artifact records it, and loading refuses weights made with other pretrained parts.
        """

    @property
    @abstractmethod
    def targets(self) -> list[str]: ...

    @abstractmethod
    def add_target(self, target: str) -> None:
        """A new adapter for ``target``, initialised so that it starts out scoring exactly like the base."""

    @abstractmethod
    def remove_target(self, target: str) -> None: ...

    @abstractmethod
    def fit(
        self,
        windows: Sequence[WindowText],
        labels: Sequence[int],
        *,
        target: str | None,
        mode: Mode,
        options: FitOptions,
        progress: Progress | None = None,
        unlabeled: Sequence[WindowText] = (),
        objective: UnlabeledObjective | None = None,
    ) -> FitReport:
        """Train (mode "base": target must be None; "adapter": target must exist). labels: 1 anomalous, 0 normal.
        ``unlabeled`` windows, with an ``objective`` on them, add that loss (``stream.model.alignment``). Every
        family trains through the one loop: ``stream.model.training.LoopDetector`` is this method for all."""

    @abstractmethod
    def scores(self, windows: Sequence[WindowText], *, target: str | None = None, batch_size: int = 64) -> list[float]:
        """Anomaly probability per window in [0, 1]; target None is the base model."""

    def line_saliency(
        self, windows: Sequence[WindowText], *, target: str | None = None, batch_size: int = 16
    ) -> list[list[float]] | None:
        """Per window, a cheap per-line estimate of how much each line it reads (the last ones of ``reads``, in
        order) raises its score, for a family where scoring a window once per template to explain it is costly;
        None where there is none (explanations then occlude every template)."""
        return None

    def reads(self, window: WindowText) -> tuple[str, ...]:
        """What the family reads of a window: two windows that read the same score the same with the same weights
        (the inference worker's score cache relies on it). By default everything; a family that reads less says so."""
        return (*window.templates, "\x00", *window.masked)

    def scores_mixed(
        self, windows: Sequence[WindowText], targets: Sequence[str | None], *, batch_size: int = 64
    ) -> list[float]:
        """``scores`` of windows bound for different targets (row i scored by ``targets[i]``), in their order.

        This default runs one target's windows after another's; a family that can apply several adapters in one
        forward pass (TransLog) overrides it."""
        if len(windows) != len(targets):
            raise ValueError(f"{len(windows)} windows but {len(targets)} targets")
        groups: dict[str | None, list[int]] = {}
        for i, target in enumerate(targets):
            groups.setdefault(target, []).append(i)
        out = [0.0] * len(windows)
        for target, members in groups.items():
            for i, score in zip(
                members, self.scores([windows[i] for i in members], target=target, batch_size=batch_size), strict=True
            ):
                out[i] = score
        return out

    @property
    def device(self) -> torch.device:
        """Where the model's weights are and its scoring runs. A family that can move overrides this and
        ``to_device``."""
        return torch.device("cpu")

    @abstractmethod
    def to_device(self, device: str | torch.device) -> torch.device:
        """Put the base and every adapter on ``device`` (see ``resolve_device``); adapters added later are created
        there. Returns where the model now is."""

    @abstractmethod
    def parameter_counts(self, mode: Mode, target: str | None = None) -> ParameterCounts:
        """Parameters of the base (plus ``target``'s adapter) and how many ``mode`` trains."""

    @abstractmethod
    def base_state(self) -> dict[str, torch.Tensor]:
        """Every trained base weight (frozen pretrained parts excluded: ``pretrained_identity`` names those)."""

    @abstractmethod
    def load_base_state(self, tensors: dict[str, torch.Tensor]) -> None: ...

    @abstractmethod
    def adapter_state(self, target: str) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def load_adapter_state(self, target: str, tensors: dict[str, torch.Tensor]) -> None:
        """Creates ``target`` if missing; replaces its weights otherwise."""

    def expected_adapter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes an adapter for this base must have (artifact validation compares against these)."""
        probe = "__shape_probe__"
        self.add_target(probe)
        try:
            return {name: tuple(t.shape) for name, t in self.adapter_state(probe).items()}
        finally:
            self.remove_target(probe)

    def expected_base_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(t.shape) for name, t in self.base_state().items()}


def check_fit_arguments(
    detector: Detector, windows: Sequence[Any], labels: Sequence[int], target: str | None, mode: Mode
) -> None:
    """The argument checks every family's ``fit`` starts with (ValueError with what is wrong)."""
    if len(windows) != len(labels):
        raise ValueError(f"{len(windows)} windows but {len(labels)} labels")
    if not windows:
        raise ValueError("no windows to train on")
    if any(label not in (0, 1) for label in labels):
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    if mode == "base" and target is not None:
        raise ValueError("mode 'base' trains the base model: target must be None")
    if mode == "adapter":
        if target is None:
            raise ValueError("mode 'adapter' needs a target")
        if target not in detector.targets:
            raise KeyError(f"unknown target {target!r}; add_target first (known: {detector.targets})")
    if mode not in ("base", "adapter"):
        raise ValueError(f"mode must be 'base' or 'adapter', got {mode!r}")


class Stopwatch:
    """Wall time of a fit, for FitReport.seconds and the max_seconds budget."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)


def shape_problems(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], *, listed: int | None = None
) -> list[str]:
    """Every missing, unexpected and misshapen tensor by name, in that order (each group cut to ``listed`` entries
    and a count of the rest, when given): the one wording of a tensor mismatch, for state dicts and artifacts."""
    missing = [f"missing tensor {n} {list(s)}" for n, s in sorted(expected.items()) if n not in found]
    unexpected = [f"unexpected tensor {n} {list(s)}" for n, s in sorted(found.items()) if n not in expected]
    misshapen = [
        f"tensor {n} has shape {list(s)}, expected {list(expected[n])}"
        for n, s in sorted(found.items())
        if n in expected and tuple(s) != tuple(expected[n])
    ]
    out: list[str] = []
    for group in (missing, unexpected, misshapen):
        out += group if listed is None else group[:listed]
        if listed is not None and len(group) > listed:
            out.append(f"... and {len(group) - listed} more like the above")
    return out


def check_shapes(
    what: str,
    expected: dict[str, tuple[int, ...]],
    tensors: dict[str, torch.Tensor],
    *,
    integral: Collection[str] = (),
) -> None:
    """Every missing, unexpected, misshapen or wrongly typed tensor, in one IncompatibleArtifactError: a state dict
    is loaded whole or not at all. Every expected tensor is floating point but those named in ``integral``."""
    problems = shape_problems(expected, {n: tuple(t.shape) for n, t in tensors.items()})
    problems += [
        f"tensor {n} is {t.dtype}, expected {'an integer' if n in integral else 'a floating point'} tensor"
        for n, t in sorted(tensors.items())
        if n in expected and t.is_floating_point() == (n in integral)
    ]
    if problems:
        raise IncompatibleArtifactError(what, problems)
