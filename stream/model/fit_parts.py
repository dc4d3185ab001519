"""What the shared fit loop (``stream.model.training``) exchanges with a family's hooks and with a loss on unlabeled
windows: a ``Stage`` of epochs, a ``Forward`` pass's logits and representations, and the ``UnlabeledObjective``
protocol. Apart from the loop so that ``stream.model.detector`` can name them in ``Detector.fit`` without importing
the loop (which imports the detector)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


@dataclass(frozen=True, eq=False)
class Stage:
    """One run of epochs with one optimizer over one set of parameters (TransLog and LogTransfer have one stage,
    LogLLM's base three). Epochs, lr and batch size are the family's defaults; on the stage that ``validates`` the
    loop applies ``FitOptions`` to them."""

    parameters: dict[str, nn.Parameter]  # what trains, by name (early stopping snapshots and restores these)
    epochs: int  # 0 skips the stage
    lr: float
    batch_size: int  # windows per optimizer step
    micro_batch_size: int | None = None  # windows per forward; gradients accumulate over a batch (None: a batch)
    max_windows: int | None = None  # windows per epoch (LogLLM's stage 1); None: the whole pool
    validates: bool = True  # early stopping on FitOptions.validation watches this stage's epochs
    lr_decay: float = 1.0  # lr *= lr_decay DECAYS_PER_STAGE times over the stage (1.0: constant)
    name: str | None = None  # progress: None reports "epoch e/E" per batch of each epoch; a name reports steps
    losses_per_epoch: bool = True  # FitReport.losses: one mean per epoch, or one for the stage


@dataclass(frozen=True, slots=True)
class Forward:
    """What a family's model makes of a batch of rows, for a loss on unlabeled windows."""

    logits: torch.Tensor  # [B] anomaly logit: sigmoid(logit) is the window's score
    representation: torch.Tensor  # [B, d] what the family's head reads (pooled encoder output, LSTM state, ...)


class UnlabeledObjective(Protocol):
    """A loss on unlabeled target windows, added to each labeled micro-batch's loss (see the module docstring)."""

    def parameters(self, representation: torch.Tensor) -> list[nn.Parameter]:
        """The objective's own trainable parameters (a discriminator; [] for none), built for representations like
        ``representation`` ([1, d], one unlabeled row's); each stage's optimizer trains them beside its own."""
        ...

    def __call__(self, labeled: Callable[[], Forward], unlabeled: Forward, stage: Stage) -> torch.Tensor: ...
