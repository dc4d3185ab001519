"""LogLLM's peft adapter names and its state tensors: named, copied to host memory, checked, copied back."""

from __future__ import annotations

import torch
from torch import nn

from stream.model.detector import check_shapes

BASE_ADAPTER = "base"  # the peft adapter name of the base LoRA; a target's is "t_<target>"


def adapter_name(target: str) -> str:
    return f"t_{target}"


def serving_adapter_name(target: str) -> str:
    """The rank-2r adapter (base LoRA + ``target``'s) that scores the target's rows of a mixed batch."""
    return f"m_{target}"


def host_copy(parameter: torch.Tensor) -> torch.Tensor:
    return parameter.detach().to("cpu", copy=True).contiguous()


def shapes(parameters: dict[str, nn.Parameter]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in parameters.items()}


def check_state(artifact: str, expected: dict[str, tuple[int, ...]], tensors: dict[str, torch.Tensor]) -> None:
    """Every problem at once: missing and unexpected names, wrong shapes, non-float tensors."""
    check_shapes(artifact, expected, tensors)


@torch.no_grad()
def copy_into(parameters: dict[str, nn.Parameter], tensors: dict[str, torch.Tensor]) -> None:
    for name, parameter in parameters.items():
        parameter.copy_(tensors[name].to(parameter.dtype))
