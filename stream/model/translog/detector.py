"""TransLog (Guo et al., "TransLog: a unified transformer-based framework for log anomaly detection", 2021).

Template texts -> sentence embeddings (all-MiniLM-L6-v2, cached per distinct template) -> positional encoding ->
transformer encoder (1, 2 or 4 layers, 8 heads) -> masked mean pool -> linear -> logit, pretrained with BCE on a
source system. A target system gets bottleneck adapters (down d->m, tanh, up m->d, residual) after attention and
after feed-forward in every layer, plus its own copies of the layer norms and the head (Houlsby et al. tune layer
norms with the adapters; copying them keeps the base intact, so one base serves many targets at once). The up
projection starts at zero and the copies equal the base, so a new target scores exactly like the base.

On a CUDA device (``to_device``) scoring runs under bf16 autocast where the device has native bf16; on the CPU it
stays fp32. The sentence encoder moves with the model; its cached vectors stay in host memory (``embeddings``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

from stream.model.detector import (
    FitOptions,
    Mode,
    ParameterCounts,
    WindowText,
    check_shapes,
    resolve_device,
    scoring_autocast,
    seeded,
)
from stream.model.embeddings import TemplateEmbedder, shared_embedder
from stream.model.features import FEATURE_VERSION, EncodedWindows, encode_batch, encode_windows, length_batches
from stream.model.training import LoopDetector
from stream.model.translog.config import TransLogConfig
from stream.model.translog.fit import TransLogFit
from stream.model.translog.layers import TransLog


class TransLogDetector(LoopDetector):
    family = "translog"
    min_steps = 300  # a step is milliseconds: few-label fits can afford a few hundred
    feature_version = FEATURE_VERSION

    def __init__(self, cfg: TransLogConfig, embedder: TemplateEmbedder | None = None, *, seed: int = 0):
        self.cfg = cfg
        self.embedder = embedder or shared_embedder(cfg.encoder or None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = TransLog(cfg).eval()

    @classmethod
    def create(cls, config: dict[str, Any], *, seed: int = 0) -> TransLogDetector:
        return cls(TransLogConfig.from_dict(config), seed=seed)

    @property
    def device(self) -> torch.device:
        return self.model.head.weight.device

    def to_device(self, device: str | torch.device) -> torch.device:
        """The model (base and adapters) and the sentence encoder to ``device``. The encoder is shared by the
        process's TransLog detectors (``shared_embedder``): it moves for all of them, and each still gets its
        vectors on its own device."""
        resolved = resolve_device(device)
        self.model.to(resolved)
        self.embedder.to(resolved)
        return resolved

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)

    def pretrained_identity(self) -> dict[str, Any]:
        return {"sentence_encoder": self.embedder.identity()}

    @property
    def targets(self) -> list[str]:
        return list(self.model.target_heads)

    def add_target(self, target: str) -> None:
        with seeded(f"translog/{target}"):
            self.model.add_target(target)

    def remove_target(self, target: str) -> None:
        if target not in self.targets:
            raise KeyError(f"unknown target {target!r}")
        self.model.remove_target(target)

    def encode(self, windows: Sequence[WindowText]) -> tuple[torch.Tensor, torch.Tensor]:
        """windows -> (x [N, max_len, d], mask [N, max_len]): the one encoding training and serving share."""
        return encode_batch(self.embedder, [w.templates for w in windows], self.cfg.max_len, self.device)

    def encode_compact(self, windows: Sequence[WindowText]) -> EncodedWindows:
        """The same encoding as template indices into one embedding table (training holds all its windows so)."""
        return encode_windows(self.embedder, [w.templates for w in windows], self.cfg.max_len, self.device)

    def parameter_counts(self, mode: Mode, target: str | None = None) -> ParameterCounts:
        total = trainable = 0
        for name, p in self.model.named_parameters():
            owned = self.model.is_adapter_parameter(name)
            if owned and not (target is not None and self.model.is_adapter_parameter(name, target)):
                continue  # other targets' adapters are not part of this model
            total += p.numel()
            if owned == (mode == "adapter"):
                trainable += p.numel()
        return ParameterCounts(total=total, trainable=trainable)

    def fit_hooks(self, target: str | None, options: FitOptions) -> TransLogFit:
        return TransLogFit(self.model, self.cfg, self.encode_compact, target)

    def reads(self, window: WindowText) -> tuple[str, ...]:
        return window.templates[-self.cfg.max_len :]  # the last max_len templates, as encode_windows keeps them

    @torch.no_grad()
    def scores(self, windows: Sequence[WindowText], *, target: str | None = None, batch_size: int = 64) -> list[float]:
        return self.scores_mixed(windows, [target] * len(windows), batch_size=batch_size)

    @torch.no_grad()
    def scores_mixed(
        self, windows: Sequence[WindowText], targets: Sequence[str | None], *, batch_size: int = 64
    ) -> list[float]:
        """One forward pass per batch whatever the mix of targets: each row gathers its own adapter weights.
        Batches are formed by window length (``length_batches``); the scores come back in the windows' order."""
        if len(windows) != len(targets):
            raise ValueError(f"{len(windows)} windows but {len(targets)} targets")
        self.model.eval()
        out = [0.0] * len(windows)
        lengths = [min(len(w.templates), self.cfg.max_len) for w in windows]
        for batch in length_batches(lengths, batch_size):
            x, mask = self.encode([windows[i] for i in batch])
            chosen = [targets[i] for i in batch]
            with scoring_autocast(self.device, self.precision):
                if len(set(chosen)) == 1:  # one target: the plain forward, no gathering
                    logits = self.model(x, mask, chosen[0])
                else:
                    logits = self.model.forward_mixed(x, mask, chosen)
            # bf16 logits under autocast: the sigmoid in fp32, so scores near 0 and 1 keep their resolution
            for i, p in zip(batch, torch.sigmoid(logits.float()).tolist(), strict=True):
                out[i] = p
        return out

    def base_state(self) -> dict[str, torch.Tensor]:
        # in host memory whatever the device: states are written to artifacts and compared across detectors
        return {
            n: t.detach().to("cpu", copy=True)
            for n, t in self.model.state_dict().items()
            if not self.model.is_adapter_parameter(n)
        }

    def load_base_state(self, tensors: dict[str, torch.Tensor]) -> None:
        check_shapes("TransLog base", self.expected_base_shapes(), tensors)
        self.model.load_state_dict(tensors, strict=False)

    def adapter_state(self, target: str) -> dict[str, torch.Tensor]:
        if target not in self.targets:
            raise KeyError(f"unknown target {target!r}")
        # stored under a target-free name, so an adapter can be loaded under another target name
        return {
            rename_target(n, target, "{target}"): t.detach().to("cpu", copy=True)
            for n, t in self.model.state_dict().items()
            if self.model.is_adapter_parameter(n, target)
        }

    def load_adapter_state(self, target: str, tensors: dict[str, torch.Tensor]) -> None:
        check_shapes(f"TransLog adapter {target!r}", self.expected_adapter_shapes(), tensors)
        if target not in self.targets:
            self.add_target(target)
        self.model.load_state_dict({rename_target(n, "{target}", target): t for n, t in tensors.items()}, strict=False)


def rename_target(name: str, old: str, new: str) -> str:
    return name.replace(f".targets.{old}.", f".targets.{new}.").replace(f"target_heads.{old}.", f"target_heads.{new}.")
