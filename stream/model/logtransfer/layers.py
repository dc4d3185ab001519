"""LogTransfer's modules: the source LSTM, one LSTM per target and the shared classifier, nanoGPT style."""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn

from stream.model.logtransfer.config import LogTransferConfig


class Classifier(nn.Module):
    """The shared head: hidden -> classifier_hidden -> 1, ReLU between."""

    def __init__(self, cfg: LogTransferConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden, cfg.classifier_hidden)
        self.fc2 = nn.Linear(cfg.classifier_hidden, 1)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, hidden] -> [B]
        return self.fc2(self.drop(torch.relu(self.fc1(self.drop(h))))).squeeze(-1)


def new_lstm(cfg: LogTransferConfig) -> nn.LSTM:
    dropout = cfg.dropout if cfg.layers > 1 else 0.0  # torch warns about dropout on a single layer
    return nn.LSTM(cfg.word_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True, dropout=dropout)


class LogTransfer(nn.Module):
    """Source LSTM + shared classifier; ``targets`` holds each target's own LSTM."""

    def __init__(self, cfg: LogTransferConfig):
        super().__init__()
        self.cfg = cfg
        self.source = new_lstm(cfg)
        self.classifier = Classifier(cfg)
        # Module names cannot hold "." or shadow ModuleDict's methods, and target names are system names: the keys
        # are our own ("t0", "t1", ...), mapped from the target name.
        self.targets = nn.ModuleDict()
        self.keys: dict[str, str] = {}
        self.next_key = 0

    def lstm(self, target: str | None) -> nn.LSTM:
        if target is None:
            return self.source
        if target not in self.keys:
            raise KeyError(f"unknown target {target!r}; known: {sorted(self.keys)}")
        return cast(nn.LSTM, self.targets[self.keys[target]])  # add_target stores only LSTMs

    def add_target(self, target: str) -> None:
        if target in self.keys:
            raise ValueError(f"target {target!r} already exists")
        key = f"t{self.next_key}"
        self.next_key += 1
        self.targets[key] = copy.deepcopy(self.source)  # starts as the source: scores exactly like the base
        self.keys[target] = key

    def remove_target(self, target: str) -> None:
        del self.targets[self.keys.pop(target)]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, target: str | None = None) -> torch.Tensor:
        """x [B, L, word_dim] right-padded, lengths [B] (real templates per window) -> logits [B]."""
        return self.classifier(self.hidden(x, lengths, target))

    def hidden(self, x: torch.Tensor, lengths: torch.Tensor, target: str | None = None) -> torch.Tensor:
        """The top layer's state after each window's last real template [B, hidden]: what the classifier reads."""
        out, _ = self.lstm(target)(x)  # [B, L, hidden]: top layer's hidden state after each step
        # Unidirectional and right-padded, so the state at the last real step never saw the padding.
        last = (lengths - 1).clamp(min=0)  # an empty window reads its one zero vector
        return out[torch.arange(len(x), device=x.device), last]  # [B, hidden]
