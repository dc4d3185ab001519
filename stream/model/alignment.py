"""Objectives on unlabeled target windows for ``Detector.fit(..., unlabeled=, objective=)`` (issue 18 item 3).

Both align the two systems' representations while a base is trained: the labeled batch holds the source system's
windows, the unlabeled draw the target's, and the supervised loss keeps the representations separating anomalies
from normal windows. The head that reads them then scores the target's windows as it learned to score the
source's: the zero-label path (``adaptlog-train pretrain --align-to``).

* ``MomentMatching`` (Deep CORAL with the means): pulls the two sets' representation means and covariances
  together. The default: on TransLog it took HDFS -> BGL from PR-AUC 0.059 to 0.727 with no BGL label, and
  BGL -> HDFS from 0.040 to 0.777 (docs/transfer.md).
* ``DomainAdversarial`` (DANN, Ganin and Lempitsky 2015, as LogTAD and ZeroLog use it): a small discriminator
  learns to tell the two apart, and its gradient reaches the encoder reversed and scaled by ``weight``. Measured,
  it did not align (TransLog HDFS -> BGL PR-AUC 0.128); kept so that the comparison can be rerun. Its
  discriminator is the objective's own and trains beside each stage's parameters, in the same optimizer
  (``parameters``); nothing of it is saved with the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stream.model.training import Forward, Stage

ADVERSARIAL_WEIGHT = 0.1  # how strongly the reversed domain gradient pulls on the encoder (DANN's lambda)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``-weight`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad, None


class DomainAdversarial:
    """Source (labeled batch) vs target (unlabeled draw) representations, the encoder trained to confuse them."""

    def __init__(self, weight: float = ADVERSARIAL_WEIGHT, hidden: int = 64, seed: int = 0) -> None:
        if weight <= 0 or hidden < 1:
            raise ValueError("DomainAdversarial: weight and hidden must be positive")
        self.weight = weight
        self.hidden = hidden
        self.seed = seed
        self.discriminator: nn.Sequential | None = None

    def parameters(self, representation: torch.Tensor) -> list[nn.Parameter]:
        """The discriminator's parameters, built on the first call for representations like ``representation``
        ([rows, d], on the model's device), with its own seed so that the model's initialisation is untouched."""
        if self.discriminator is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                width = representation.shape[-1]
                self.discriminator = nn.Sequential(nn.Linear(width, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1))
            self.discriminator.to(representation.device)
        return list(self.discriminator.parameters())

    def __call__(self, labeled: Callable[[], Forward], unlabeled: Forward, stage: Stage) -> torch.Tensor:
        if self.discriminator is None:
            raise RuntimeError("DomainAdversarial: parameters() builds the discriminator before the first call")
        source = labeled().representation
        target = unlabeled.representation
        both = _ReverseGradient.apply(torch.cat([source, target]).float(), self.weight)
        logits = self.discriminator(both).squeeze(-1)
        domains = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(logits.device)
        return F.binary_cross_entropy_with_logits(logits, domains)


class MomentMatching:
    """Deep CORAL with the means (Sun and Saenko, 2016): the squared distance between the labeled batch's and the
    unlabeled draw's representation means, plus that between their covariances (over 4 d^2). No discriminator, so
    no min-max game: the encoder is pulled straight towards representations whose first two moments agree."""

    def __init__(self, weight: float = 1.0) -> None:
        if weight <= 0:
            raise ValueError("MomentMatching: weight must be positive")
        self.weight = weight

    def parameters(self, representation: torch.Tensor) -> list[nn.Parameter]:
        return []

    def __call__(self, labeled: Callable[[], Forward], unlabeled: Forward, stage: Stage) -> torch.Tensor:
        source = labeled().representation.float()
        target = unlabeled.representation.float()
        mean_gap = (source.mean(0) - target.mean(0)).pow(2).sum()
        width = source.shape[-1]
        covariance_gap = (_covariance(source) - _covariance(target)).pow(2).sum() / (4 * width * width)
        return self.weight * (mean_gap + covariance_gap)


def _covariance(rows: torch.Tensor) -> torch.Tensor:
    centred = rows - rows.mean(0, keepdim=True)
    return centred.T @ centred / max(len(rows) - 1, 1)


# what `adaptlog-train pretrain --alignment` names; each built with its default weight or the one given
OBJECTIVES: dict[str, type[DomainAdversarial] | type[MomentMatching]] = {
    "moments": MomentMatching,
    "adversarial": DomainAdversarial,
}
