"""TransLog's hooks into the shared loop (``stream.model.training``): BCE on the head's logit, one stage.

Mode "base" trains every weight the base owns; mode "adapter" only the target's adapters, layer-norm copies and
head (``TransLog.is_adapter_parameter``). The default lr is the config's ``lr`` for the base and its larger
``adapter_lr`` for an adapter, which starts as the identity and owns few weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from stream.model.detector import Mode, WindowText
from stream.model.features import EncodedWindows
from stream.model.training import FitHooks, Forward, LossTerm, Stage, positive_weight
from stream.model.translog.config import TransLogConfig
from stream.model.translog.layers import TransLog


@dataclass(frozen=True)
class Encoded:
    windows: EncodedWindows  # template indices into one embedding table
    labels: torch.Tensor | None  # [N] float on the model's device; None for unlabeled windows
    loss: nn.BCEWithLogitsLoss | None  # pos_weight = negatives / positives of these labels


class TransLogFit(FitHooks[Encoded]):
    def __init__(
        self,
        model: TransLog,
        cfg: TransLogConfig,
        encode: Callable[[Sequence[WindowText]], EncodedWindows],
        target: str | None,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.encode_windows = encode
        self.target = target

    @property
    def device(self) -> torch.device:
        return self.model.head.weight.device

    def encode(self, windows: Sequence[WindowText], labels: Sequence[int] | None) -> Encoded:
        if labels is None:
            return Encoded(self.encode_windows(windows), None, None)
        weight = torch.tensor(positive_weight(labels), device=self.device)
        y = torch.tensor(list(labels), dtype=torch.float, device=self.device)
        return Encoded(self.encode_windows(windows), y, nn.BCEWithLogitsLoss(pos_weight=weight))

    def stages(self, mode: Mode) -> list[Stage]:
        if mode == "adapter":
            trained = {
                n: p for n, p in self.model.named_parameters() if self.model.is_adapter_parameter(n, self.target)
            }
        else:
            trained = {n: p for n, p in self.model.named_parameters() if not self.model.is_adapter_parameter(n)}
        lr = self.cfg.adapter_lr if mode == "adapter" else self.cfg.lr
        return [Stage(trained, epochs=self.cfg.epochs, lr=lr, batch_size=self.cfg.batch_size)]

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def loss(self, encoded: Encoded, part: torch.Tensor, batch: torch.Tensor) -> LossTerm:
        if encoded.labels is None or encoded.loss is None:
            raise ValueError("unlabeled windows have no supervised loss")
        x, mask = encoded.windows.embeddings(part)  # [B, L, d], [B, L]
        loss = encoded.loss(self.model(x, mask, self.target), encoded.labels[part])  # mean over the batch
        return LossTerm(loss, loss.item() * len(part), len(part))

    def forward(self, encoded: Encoded, rows: torch.Tensor) -> Forward:
        x, mask = encoded.windows.embeddings(rows)
        pooled = self.model.pooled(x, mask, self.target)  # [B, d]
        return Forward(self.model.logits(pooled, self.target), pooled)

    def train(self, stage: Stage) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()
