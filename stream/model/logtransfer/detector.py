"""LogTransfer (Chen et al., "Logs transfer: cross-system anomaly detection", ISSRE 2020), nanoGPT style.

A window's templates become word-vector averages (``word_vectors``); an LSTM reads them and a fully connected
classifier turns its last hidden state into one logit. The source system and every target have their own LSTM; the
classifier is shared. Transfer trains a target's LSTM under the frozen classifier, so the classifier's notion of
"anomalous" carries over while the target's LSTM learns its own system's sequences.

    detector = LogTransferDetector.create({"vectors": "glove-6b-50d"})
    detector.fit(hdfs_windows, hdfs_labels, target=None, mode="base", options=FitOptions())
    detector.add_target("hadoop")                   # a copy of the source LSTM: scores exactly like the base
    detector.fit(few_windows, few_labels, target="hadoop", mode="adapter", options=FitOptions())

``to_device`` moves the LSTMs and the classifier; the word vectors stay in host memory (a template's vector is a
lookup, computed once and cached), and each batch's [B, L, word_dim] input is copied to the device. On CUDA the
model scores in fp32, not under bf16 autocast: cuDNN's bf16 LSTM is not there on every torch and GPU
(pytorch#116925: "_thnn_fused_lstm_cell_cuda not implemented for 'BFloat16'"), a recurrence compounds bf16's
rounding step after step, and a network of a few hundred thousand weights gains nothing measurable from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import torch
from torch import nn

from stream.errors import ConfigError, IncompatibleArtifactError
from stream.model.detector import (
    FitOptions,
    Mode,
    ParameterCounts,
    WindowText,
    check_shapes,
    resolve_device,
)
from stream.model.logtransfer.config import LogTransferConfig
from stream.model.logtransfer.fit import LogTransferFit
from stream.model.logtransfer.layers import LogTransfer
from stream.model.training import LoopDetector
from stream.model.word_vectors import (
    GLOVE_NAME,
    FittedGlove,
    GloveFitOptions,
    PretrainedGlove,
    WordVectorEmbedder,
)


class LogTransferDetector(LoopDetector):
    family = "logtransfer"
    min_steps = 300  # a step is milliseconds: few-label fits can afford a few hundred
    # template -> mean GloVe vector of its words (placeholders dropped, camelCase split), last max_len templates
    feature_version = "logtransfer-word-mean/camel-split/keep-last/1"

    def __init__(self, cfg: LogTransferConfig, *, glove: PretrainedGlove | None = None) -> None:
        self.cfg = cfg
        with torch.random.fork_rng():  # initial weights from the config's seed, leaving the caller's RNG alone
            torch.manual_seed(cfg.init_seed)
            self.model = LogTransfer(cfg).eval()
        self.glove = (glove or PretrainedGlove()) if cfg.vectors == GLOVE_NAME else None
        self.fitted: FittedGlove | None = None
        self.embedder = WordVectorEmbedder(self.glove if self.glove is not None else FittedGlove([], _empty(cfg)))

    # ---- construction and identity

    @property
    def device(self) -> torch.device:
        return self.model.classifier.fc1.weight.device

    def to_device(self, device: str | torch.device) -> torch.device:
        """The source LSTM, the classifier and every target's LSTM to ``device``; targets added later are copies of
        the source, so they are created there."""
        resolved = resolve_device(device)
        self.model.to(resolved)
        return resolved

    @classmethod
    def create(cls, config: dict[str, Any], *, seed: int = 0) -> LogTransferDetector:
        known = {f.name for f in fields(LogTransferConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError("logtransfer", f"unknown LogTransfer config keys {unknown}; known: {sorted(known)}")
        # the config's init_seed fixes the initial weights (it is saved with them); ``seed`` is its default
        return cls(LogTransferConfig(**{"init_seed": seed, **config}))

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)

    def pretrained_identity(self) -> dict[str, Any]:
        # Fitted vectors are trained weights in the base state: nothing pretrained then.
        return {"word_vectors": self.glove.identity()} if self.glove is not None else {}

    def fit_word_vectors(self, templates: Sequence[str]) -> int:
        """vectors="fit": train GloVe on these template texts (the paper fits source and target templates together).

        Returns the vocabulary size. Changes every template vector, so call it before training the base.
        """
        if self.cfg.vectors != "fit":
            raise ValueError(f"vectors is {self.cfg.vectors!r}: only vectors='fit' fits word vectors")
        options = GloveFitOptions(dim=self.cfg.word_dim, seed=self.cfg.init_seed)
        fitted = FittedGlove.fit(templates, options, self.cfg.fit_vocabulary)
        self._use_fitted(fitted)
        return len(fitted.vocabulary)

    def _use_fitted(self, fitted: FittedGlove) -> None:
        self.fitted = fitted
        self.embedder = WordVectorEmbedder(fitted)  # a fresh cache: every template vector has changed

    # ---- targets

    @property
    def targets(self) -> list[str]:
        return list(self.model.keys)

    def add_target(self, target: str) -> None:
        self.model.add_target(target)

    def remove_target(self, target: str) -> None:
        if target not in self.model.keys:
            raise KeyError(f"unknown target {target!r}; known: {self.targets}")
        self.model.remove_target(target)

    # ---- features

    def encode(self, windows: Sequence[WindowText]) -> tuple[torch.Tensor, torch.Tensor]:
        """windows -> (x [B, L, word_dim] right-padded with zeros, lengths [B]) on the model's device; L = the
        longest kept window. Built in host memory (the word vectors live there), then moved in two copies."""
        kept = [list(w.templates)[-self.cfg.max_len :] for w in windows]
        distinct = list(dict.fromkeys(t for templates in kept for t in templates))
        table = torch.cat([torch.zeros(1, self.cfg.word_dim), self.embedder.embed(distinct)])  # row 0 is padding
        row = {t: i + 1 for i, t in enumerate(distinct)}
        lengths = torch.tensor([len(templates) for templates in kept], dtype=torch.long)
        index = torch.zeros(len(kept), max(1, int(lengths.max()) if len(kept) else 1), dtype=torch.long)
        for b, templates in enumerate(kept):
            index[b, : len(templates)] = torch.tensor([row[t] for t in templates], dtype=torch.long)
        return table[index].to(self.device), lengths.to(self.device)  # [B, L, word_dim], [B]

    # ---- training and scoring

    def fit_hooks(self, target: str | None, options: FitOptions) -> LogTransferFit:
        return LogTransferFit(self.model, self.cfg, self.encode, self._fit_vectors_once, target)

    def _fit_vectors_once(self, windows: Sequence[WindowText], mode: Mode) -> None:
        """vectors="fit": the first base fit fits the word vectors on its templates (later fits keep them)."""
        if mode == "base" and self.cfg.vectors == "fit" and not (self.fitted and self.fitted.vocabulary):
            self.fit_word_vectors([t for w in windows for t in w.templates])

    def reads(self, window: WindowText) -> tuple[str, ...]:
        return window.templates[-self.cfg.max_len :]  # the last max_len templates, as encode keeps them

    @torch.no_grad()
    def scores(self, windows: Sequence[WindowText], *, target: str | None = None, batch_size: int = 64) -> list[float]:
        self.model.lstm(target)  # unknown target: KeyError before any work
        self.model.eval()
        out: list[float] = []
        for start in range(0, len(windows), batch_size):
            x, lengths = self.encode(windows[start : start + batch_size])
            out += torch.sigmoid(self.model(x, lengths, target)).tolist()
        return out

    def parameter_counts(self, mode: Mode, target: str | None = None) -> ParameterCounts:
        """Network parameters (the word vectors are input features, never trained by ``fit``: not counted)."""
        if mode == "adapter" and target is None:
            raise ValueError("mode 'adapter' needs a target")
        base = _count(self.model.source) + _count(self.model.classifier)
        adapter = _count(self.model.lstm(target)) if target is not None else 0
        return ParameterCounts(total=base + adapter, trainable=adapter if mode == "adapter" else base)

    # ---- weights in and out

    def base_state(self) -> dict[str, torch.Tensor]:
        state = {
            # in host memory whatever the device: states are written to artifacts and compared across detectors
            **{f"source.{n}": t.detach().to("cpu", copy=True) for n, t in self.model.source.state_dict().items()},
            **{
                f"classifier.{n}": t.detach().to("cpu", copy=True)
                for n, t in self.model.classifier.state_dict().items()
            },
        }
        if self.cfg.vectors == "fit":
            fitted = self.fitted or FittedGlove([], _empty(self.cfg))
            state |= {f"word_vectors.{n}": t for n, t in fitted.state(self.cfg.fit_vocabulary).items()}
        return state

    def load_base_state(self, tensors: dict[str, torch.Tensor]) -> None:
        expected = self.base_state()
        check_shapes("logtransfer base", _shapes(expected), tensors, integral=_integral(expected))
        fitted = None
        if self.cfg.vectors == "fit":  # decoded before any weight is copied: a bad vocabulary loads nothing
            prefix = "word_vectors."
            table = {n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)}
            try:
                fitted = FittedGlove.from_state(table)
            except ValueError as exc:
                raise IncompatibleArtifactError("logtransfer base", [f"word_vectors.vocabulary: {exc}"]) from exc
        with torch.no_grad():
            for name, t in self.model.source.state_dict().items():
                t.copy_(tensors[f"source.{name}"])
            for name, t in self.model.classifier.state_dict().items():
                t.copy_(tensors[f"classifier.{name}"])
        if fitted is not None:
            self._use_fitted(fitted)

    def adapter_state(self, target: str) -> dict[str, torch.Tensor]:
        return {f"lstm.{n}": t.detach().to("cpu", copy=True) for n, t in self.model.lstm(target).state_dict().items()}

    def load_adapter_state(self, target: str, tensors: dict[str, torch.Tensor]) -> None:
        expected = {f"lstm.{n}": t for n, t in self.model.source.state_dict().items()}
        check_shapes(f"logtransfer adapter {target!r}", _shapes(expected), tensors, integral=_integral(expected))
        if target not in self.model.keys:
            self.add_target(target)
        with torch.no_grad():
            for name, t in self.model.lstm(target).state_dict().items():
                t.copy_(tensors[f"lstm.{name}"])


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _empty(cfg: LogTransferConfig) -> torch.Tensor:
    return torch.zeros(0, cfg.word_dim)


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in state.items()}


def _integral(state: dict[str, torch.Tensor]) -> set[str]:
    """The tensors that are not floating point (a fitted vocabulary's encoded words)."""
    return {name for name, t in state.items() if not t.is_floating_point()}
