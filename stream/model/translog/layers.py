"""TransLog's modules: the encoder with per-target bottleneck adapters and layer-norm copies, nanoGPT style."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from stream.model.translog.config import TransLogConfig


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

    def parts(self, target: str) -> TargetParts:
        return cast(TargetParts, self.targets[target])  # TransLog.add_target stores only TargetParts

    def forward(self, x: torch.Tensor, pad: torch.Tensor, target: str | None) -> torch.Tensor:
        # x [B, L, d]; pad [B, L] True where padding
        parts = self.parts(target) if target is not None else None
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
        parts = [None if name is None else layer.parts(name) for name in names]
        d, m = layer.cfg.d_model, layer.cfg.adapter_dim
        # all zeros: tanh(0) = 0 and a zero up-projection, so the base's "adapter" changes nothing
        device = layer.ln1.weight.device
        identity = tuple(torch.zeros(shape, device=device) for shape in ((m, d), (m,), (d, m), (d,)))

        def weights(a: Adapter) -> tuple[torch.Tensor, ...]:
            return a.down.weight, a.down.bias, a.up.weight, a.up.bias

        def adapters(pick: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            chosen = [identity if p is None else weights(getattr(p, pick)) for p in parts]
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

    @property
    def encoder_layers(self) -> Sequence[EncoderLayer]:
        """``layers`` as what it holds (nn.ModuleList's items are typed as nn.Module)."""
        return cast("Sequence[EncoderLayer]", self.layers)

    def head_of(self, target: str | None) -> nn.Linear:
        """The target's head (None: the base's)."""
        return self.head if target is None else cast(nn.Linear, self.target_heads[target])  # add_target: Linear

    def add_target(self, name: str) -> None:
        if name in self.target_heads:
            raise ValueError(f"target {name!r} already exists")
        # initialised on the CPU (the same weights whatever the device, for one seed), then moved where the base is
        device = self.head.weight.device
        for layer in self.encoder_layers:
            layer.targets[name] = TargetParts(self.cfg, layer.ln1, layer.ln2).to(device)
        head = nn.Linear(self.cfg.d_model, 1)
        head.load_state_dict(self.head.state_dict())
        self.target_heads[name] = head.to(device)

    def remove_target(self, name: str) -> None:
        for layer in self.encoder_layers:
            del layer.targets[name]
        del self.target_heads[name]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, target: str | None = None) -> torch.Tensor:
        """x [B, L, d], mask [B, L] (True = real line) -> logits [B]."""
        return self.logits(self.pooled(x, mask, target), target)

    def pooled(self, x: torch.Tensor, mask: torch.Tensor, target: str | None = None) -> torch.Tensor:
        """x [B, L, d], mask [B, L] -> the masked mean of the last layer's output [B, d], what the head reads."""
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
        for layer in self.encoder_layers:
            h = layer(h, pad, target)
        m = mask.unsqueeze(-1).to(h.dtype)  # [B, L, 1]
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # [B, d] masked mean

    def logits(self, pooled: torch.Tensor, target: str | None = None) -> torch.Tensor:
        """pooled [B, d] -> logits [B] through the target's head (None: the base's)."""
        return self.head_of(target)(pooled).squeeze(-1)  # [B]

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
        for layer in self.encoder_layers:
            h = layer.forward_mixed(h, pad, StackedParts.of(layer, names), row)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # [B, d]
        heads = [self.head_of(t) for t in names]
        weight = torch.stack([head.weight[0] for head in heads])[row]  # [B, d]
        bias = torch.stack([head.bias[0] for head in heads])[row]  # [B]
        return (pooled * weight).sum(-1) + bias

    def is_adapter_parameter(self, name: str, target: str | None = None) -> bool:
        """Parameters a target owns (``target`` None: any target's)."""
        if target is None:
            return ".targets." in name or name.startswith("target_heads.")
        return f".targets.{target}." in name or name.startswith(f"target_heads.{target}.")
