"""LogLLM's hooks into the shared loop (``stream.model.training``): minority oversampling, then the paper's three
stages (mode "base") or one adapter stage.

Stages (Guan et al., 2024, section 3.4; their train.py):

1. ``stage1``: only the decoder's LoRA trains, on at most ``stage1_windows`` windows per epoch: the LLM learns the
   answer template ("The sequence is ...") while the line vectors are still untrained;
2. ``stage2``: the decoder is frozen; the line encoder's Linear and the projector learn to put log lines where the
   decoder can read them (the paper's stages 2-1 and 2-2, projector then projector + BERT);
3. ``stage3``: line encoder, projector and LoRA together.

Mode "adapter" runs one stage, ``adapter``: the target's own LoRA and projector; the base is frozen.

Each stage: AdamW, the paper's schedule (lr times ``lr_decay`` ten times over the stage), batches of ``batch_size``
windows whose gradients accumulate over forwards of ``micro_batch_size``, loss = mean cross-entropy over the answer
tokens of a batch; the forwards run in bf16 autocast when the config's ``train_dtype`` asks (1.7x on an AVX512-BF16
CPU; "auto" asks only where bf16 is native, as an emulating CPU runs it 24x slower than float32).
``FitOptions.epochs``/``lr``/``batch_size`` replace the config's values for the last stage (stage 3, or the adapter
stage), which is also the stage whose epochs early stopping on validation watches; the time
budget (``max_seconds``) ends the whole fit after the epoch that crosses it. ``FitReport.losses`` has one mean loss
per stage that ran.

The detector is reached through ``Trainee``, the part of ``LogLLMDetector`` training uses, so that this module does
not import the detector's (which imports this one).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from stream.model.decoder import disable_cpu_repacking
from stream.model.detector import Mode, WindowText
from stream.model.logllm.config import LogLLMConfig
from stream.model.logllm.prompt import PromptTokens
from stream.model.training import FitHooks, Forward, LossTerm, Stage


class Trainee(Protocol):
    """What training uses of ``LogLLMDetector``."""

    cfg: LogLLMConfig
    prompt: PromptTokens
    projector: nn.Linear
    target_projectors: nn.ModuleDict

    @property
    def lm(self) -> nn.Module: ...  # read only here, so the detector's narrower types fit
    @property
    def line(self) -> nn.Module: ...

    def window_lines(self, windows: Sequence[WindowText]) -> list[tuple[str, ...]]: ...
    def activate(self, target: str | None) -> None: ...
    def set_training(self, training: bool) -> None: ...
    def projector_for(self, target: str | None) -> nn.Linear: ...
    def base_state_parameters(self) -> dict[str, nn.Parameter]: ...
    def adapter_parameters(self, target: str) -> dict[str, nn.Parameter]: ...
    def autocast(self, dtype: str) -> torch.autocast: ...
    def answer_loss(
        self, windows: Sequence[tuple[str, ...]], labels: Sequence[int], projector: nn.Linear
    ) -> tuple[torch.Tensor, int]: ...
    def inputs(
        self, windows: Sequence[tuple[str, ...]], projector: nn.Linear, answers: Sequence[tuple[int, ...]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def oversample(labels: Sequence[int], beta: float, rng: random.Random) -> list[int]:
    """Indices of the training set plus random repeats of the minority class, until it is at least ``beta`` of all
    (the paper's ``min_less_portion``); unchanged when the minority already is, or when a class is missing."""
    positives = [i for i, label in enumerate(labels) if label]
    negatives = [i for i, label in enumerate(labels) if not label]
    minority, majority = sorted((positives, negatives), key=len)
    indices = list(range(len(labels)))
    if not minority or len(minority) >= beta * len(labels):
        return indices
    wanted = math.ceil(beta * len(majority) / (1.0 - beta))  # minority / (minority + majority) >= beta
    return indices + [rng.choice(minority) for _ in range(wanted - len(minority))]


@dataclass(frozen=True)
class Encoded:
    lines: list[tuple[str, ...]]  # what the model reads of each window
    labels: list[int] | None  # None for unlabeled windows


class LogLLMFit(FitHooks[Encoded]):
    def __init__(self, model: Trainee, target: str | None, seed: int) -> None:
        self.model = model
        self.target = target
        # oversampling and the epochs' order: Python's RNG, as the paper's code (and this family's figures) use
        self.rng = random.Random(seed)

    def prepare(self, windows: Sequence[WindowText], mode: Mode) -> None:
        disable_cpu_repacking(self.model.lm)  # raises if a 4-bit layer was repacked: its LoRA would get no gradients

    def encode(self, windows: Sequence[WindowText], labels: Sequence[int] | None) -> Encoded:
        return Encoded(self.model.window_lines(windows), None if labels is None else list(labels))

    def pool(self, labels: Sequence[int]) -> list[int]:
        return oversample(labels, self.model.cfg.beta, self.rng)

    def shuffle(self, pool: list[int], generator: torch.Generator) -> torch.Tensor:
        return torch.tensor(self.rng.sample(pool, len(pool)), dtype=torch.long)

    def stages(self, mode: Mode) -> list[Stage]:
        cfg = self.model.cfg
        common: dict[str, Any] = {
            "batch_size": cfg.batch_size,
            "micro_batch_size": cfg.micro_batch_size,
            "lr_decay": cfg.lr_decay,
            "losses_per_epoch": False,
        }
        if self.target is not None:  # mode "adapter"
            parameters = self.model.adapter_parameters(self.target)
            return [Stage(parameters, cfg.adapter_epochs, cfg.adapter_lr, name="adapter", **common)]
        first = Stage(
            self._base("lora"),
            cfg.stage1_epochs,
            cfg.stage1_lr,
            max_windows=cfg.stage1_windows,
            validates=False,
            name="stage1",
            **common,
        )
        second = Stage(
            self._base("line", "projector"), cfg.stage2_epochs, cfg.stage2_lr, validates=False, name="stage2", **common
        )
        third = Stage(
            self._base("line", "projector", "lora"), cfg.stage3_epochs, cfg.stage3_lr, name="stage3", **common
        )
        return [first, second, third]

    def _base(self, *parts: str) -> dict[str, nn.Parameter]:
        """The base's parameters of these parts ("lora", "line", "projector"), by their state names."""
        return {n: p for n, p in self.model.base_state_parameters().items() if n.split(".", 1)[0] in parts}

    def parameters(self) -> list[nn.Parameter]:
        model = self.model
        modules = (model.lm, model.line, model.projector, model.target_projectors)
        return [parameter for module in modules for parameter in module.parameters()]

    def loss(self, encoded: Encoded, part: torch.Tensor, batch: torch.Tensor) -> LossTerm:
        if encoded.labels is None:
            raise ValueError("unlabeled windows have no supervised loss")
        labels, answers = encoded.labels, self.model.prompt.answers
        rows = part.tolist()
        tokens = sum(len(answers[labels[i]]) for i in batch.tolist())  # the batch's answer tokens
        with self.model.autocast(self.model.cfg.train_dtype):  # the backward runs outside, as autocast asks
            loss, counted = self.model.answer_loss(
                [encoded.lines[i] for i in rows], [labels[i] for i in rows], self.model.projector_for(self.target)
            )
        # the batch's mean over answer tokens, accumulated across its micro-batches
        return LossTerm(loss / tokens, loss.item(), counted)

    def forward(self, encoded: Encoded, rows: torch.Tensor) -> Forward:
        """The scoring forward (the prompt up to the answer's deciding token), with the last hidden state."""
        model, prompt = self.model, self.model.prompt
        chosen = [encoded.lines[i] for i in rows.tolist()]
        with model.autocast(model.cfg.train_dtype):
            embeds, mask, positions = model.inputs(
                chosen, model.projector_for(self.target), [prompt.prefix] * len(chosen)
            )
            out = model.lm(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                logits_to_keep=1,
                use_cache=False,
                output_hidden_states=True,
            )
        last = out.logits[:, -1].float()  # [B, V]
        logits = last[:, prompt.anomalous] - last[:, prompt.normal]  # [B]: sigmoid of it is the score
        return Forward(logits, out.hidden_states[-1][:, -1].float())  # [B], [B, D]

    def train(self, stage: Stage) -> None:
        self.model.activate(self.target)  # freezes every LoRA weight: the loop unfreezes the stage's after this
        self.model.set_training(True)

    def eval(self) -> None:
        self.model.set_training(False)
