"""LogTransfer's hooks into the shared loop (``stream.model.training``): BCE on the classifier's logit, one stage.

Mode "base" trains the source LSTM and the classifier; mode "adapter" only the target's LSTM, under the frozen
classifier (the paper's transfer). The word vectors are input features: never trained here (vectors="fit" fits them
once, before the seed is set, in ``prepare``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from stream.model.detector import Mode, WindowText
from stream.model.logtransfer.config import LogTransferConfig
from stream.model.logtransfer.layers import LogTransfer
from stream.model.training import FitHooks, Forward, LossTerm, Stage, positive_weight


@dataclass(frozen=True)
class Encoded:
    x: torch.Tensor  # [N, L, word_dim] right-padded template vectors, on the model's device
    lengths: torch.Tensor  # [N] real templates per window
    labels: torch.Tensor | None  # [N] float; None for unlabeled windows
    loss: nn.BCEWithLogitsLoss | None  # pos_weight = negatives / positives of these labels

    def rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [B, W, word_dim], lengths [B]) of these rows, W the longest of them: no padding no row needs."""
        width = max(1, int(self.lengths[rows].max()))
        return self.x[rows, :width], self.lengths[rows]


class LogTransferFit(FitHooks[Encoded]):
    def __init__(
        self,
        model: LogTransfer,
        cfg: LogTransferConfig,
        encode: Callable[[Sequence[WindowText]], tuple[torch.Tensor, torch.Tensor]],
        prepare: Callable[[Sequence[WindowText], Mode], None],
        target: str | None,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.encode_windows = encode
        self.prepare_vectors = prepare
        self.target = target

    @property
    def device(self) -> torch.device:
        return self.model.classifier.fc1.weight.device

    def prepare(self, windows: Sequence[WindowText], mode: Mode) -> None:
        self.prepare_vectors(windows, mode)

    def encode(self, windows: Sequence[WindowText], labels: Sequence[int] | None) -> Encoded:
        x, lengths = self.encode_windows(windows)  # [N, L, word_dim], [N]
        if labels is None:
            return Encoded(x, lengths, None, None)
        y = torch.tensor(list(labels), dtype=torch.float32, device=self.device)  # [N]
        weight = torch.tensor(positive_weight(labels), device=self.device)
        return Encoded(x, lengths, y, nn.BCEWithLogitsLoss(pos_weight=weight))

    def stages(self, mode: Mode) -> list[Stage]:
        """Mode "base": source LSTM + classifier. Mode "adapter": only the target's LSTM."""
        if mode == "adapter" and self.target is not None:
            prefix: tuple[str, ...] = (f"targets.{self.model.keys[self.target]}.",)
        else:
            prefix = ("source.", "classifier.")
        trained = {name: p for name, p in self.model.named_parameters() if name.startswith(prefix)}
        return [Stage(trained, epochs=self.cfg.epochs, lr=self.cfg.lr, batch_size=self.cfg.batch_size)]

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def loss(self, encoded: Encoded, part: torch.Tensor, batch: torch.Tensor) -> LossTerm:
        if encoded.labels is None or encoded.loss is None:
            raise ValueError("unlabeled windows have no supervised loss")
        x, lengths = encoded.rows(part)
        loss = encoded.loss(self.model(x, lengths, self.target), encoded.labels[part])  # mean over the batch
        return LossTerm(loss, loss.item() * len(part), len(part))

    def forward(self, encoded: Encoded, rows: torch.Tensor) -> Forward:
        x, lengths = encoded.rows(rows)
        hidden = self.model.hidden(x, lengths, self.target)  # [B, hidden]
        return Forward(self.model.classifier(hidden), hidden)

    def train(self, stage: Stage) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()
