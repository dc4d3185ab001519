"""LogLLM (Guan et al., 2024): BERT line vectors -> projector -> decoder LLM with LoRA, which answers in words.

    detector = LogLLMDetector.create({"max_lines": 20})           # SmolLM2 + MiniLM from their wheels by default
    detector.fit(windows, labels, target=None, mode="base", options=FitOptions())   # the paper's three stages
    detector.add_target("thunderbird")     # a LoRA adapter on the decoder + a copy of the base projector
    detector.fit(few, few_labels, target="thunderbird", mode="adapter", options=FitOptions())
    detector.scores(windows, target="thunderbird")              # P(anomalous) per window

The decoder reads one "token" per log line between two pieces of the paper's prompt, then the answer::

    embed("Below is a sequence of system log messages:") [line_1 ... line_L]
    embed(". Is this sequence normal or anomalous? \\n") embed("The sequence is") -> " anomalous" | " normal"

Training teaches the whole answer ("The sequence is anomalous." + EOS); scoring runs one forward up to the first token
where the two answers differ and compares the two next-token logits (no generation). The frozen pretrained decoder
and encoder never leave through ``base_state``: ``pretrained_identity`` names them by sha256. A target adapter is a
second LoRA adapter, active on top of the frozen base LoRA (its B matrices start at zero), with its own projector
copied from the base, so a new target scores exactly like the base until it trains. Training: ``fit.py``.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import nn

from stream.errors import ModelError
from stream.model.decoder import (
    decoder_identity,
    disable_cpu_repacking,
    load_decoder,
    logical_numel,
    quantize_4bit,
)
from stream.model.detector import (
    FitOptions,
    Mode,
    ParameterCounts,
    WindowText,
    cpu_has_native_bf16,
    resolve_device,
    seeded,
    wants_bf16,
)
from stream.model.line_encoder import FrozenEncoder, LineEncoder
from stream.model.logllm.config import LogLLMConfig
from stream.model.logllm.fit import LogLLMFit
from stream.model.logllm.prompt import PromptTokens, window_lines
from stream.model.logllm.state import (
    BASE_ADAPTER,
    adapter_name,
    check_state,
    copy_into,
    host_copy,
    serving_adapter_name,
    shapes,
)
from stream.model.training import LoopDetector

if TYPE_CHECKING:
    from peft.tuners.tuners_utils import BaseTuner
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

TARGET_NAME = re.compile(r"[A-Za-z0-9_\-]+")  # peft keeps adapters in ModuleDicts: no dots, not empty


@dataclass
class Pretrained:
    """The frozen pretrained parts, loaded once. Detectors built from it copy the decoder (they add LoRA layers
    to it, and maybe quantize it); the encoder is shared, with its cache."""

    decoder: nn.Module
    tokenizer: Any
    encoder: FrozenEncoder
    decoder_path: str

    @classmethod
    def load(
        cls,
        decoder: str = "",
        encoder: str = "",
        *,
        encoder_cache_size: int = 100_000,
        cache_dir: str | Path | None = None,
    ) -> Pretrained:
        """``cache_dir``: where a GGUF decoder is exported once, dequantized, to load fast next time."""
        model, tokenizer = load_decoder(decoder, cache_dir=cache_dir)
        return cls(model, tokenizer, FrozenEncoder(encoder, cache_size=encoder_cache_size), decoder)


class LogLLMDetector(LoopDetector):
    family: ClassVar[str] = "logllm"
    feature_version: ClassVar[str] = "logllm/masked-lines-keep-last/cls-tanh-projector/prompt-1"

    def __init__(self, cfg: LogLLMConfig, pretrained: Pretrained | None = None) -> None:
        """Build a new, untrained base. Without ``pretrained`` the parts are loaded here and owned by this detector;
        with it (several detectors in one process, e.g. tests) the decoder is copied and the encoder shared."""
        from peft import LoraConfig, get_peft_model

        if pretrained is None:
            pretrained = Pretrained.load(cfg.decoder, cfg.encoder, encoder_cache_size=cfg.encoder_cache_size)
            decoder = pretrained.decoder
        else:
            if pretrained.decoder_path != cfg.decoder or pretrained.encoder.path != cfg.encoder:
                raise ValueError(
                    f"pretrained parts are ({pretrained.decoder_path!r}, {pretrained.encoder.path!r}) but the "
                    f"config asks for ({cfg.decoder!r}, {cfg.encoder!r})"
                )
            decoder = copy.deepcopy(pretrained.decoder)
        self.cfg = cfg
        self.encoder = pretrained.encoder
        self.tokenizer = pretrained.tokenizer
        self.prompt = PromptTokens.build(self.tokenizer)
        self.skipped_4bit: list[str] = quantize_4bit(decoder) if cfg.quantization == "4bit" else []
        self.lora_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_target_modules),
            bias="none",
        )
        try:
            self.peft = get_peft_model(decoder, self.lora_config, adapter_name=BASE_ADAPTER)
        except ValueError as exc:  # e.g. target modules the decoder does not have
            raise ModelError(f"LoRA on decoder {cfg.decoder!r}: {exc}") from exc
        # the causal LM with LoRA layers injected (called directly)
        self.lm = cast("PreTrainedModel", self.peft.get_base_model())
        disable_cpu_repacking(self.lm)
        hidden = self.input_embeddings().embedding_dim
        self.line = LineEncoder.from_encoder(self.encoder)
        self.projector = nn.Linear(self.encoder.hidden_size, hidden)  # [H_enc] -> [D], one decoder token per line
        self.target_projectors = nn.ModuleDict()
        self._targets: list[str] = []
        self._identity: dict[str, Any] | None = None
        self.set_training(False)

    # ---- Detector: construction and identity ------------------------------------------------------------------

    @classmethod
    def create(cls, config: dict[str, Any], *, seed: int = 0) -> LogLLMDetector:
        cfg = LogLLMConfig.from_dict(config)
        with torch.random.fork_rng():  # the initial weights (projectors, LoRA) follow the seed
            torch.manual_seed(seed)
            return cls(cfg)

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def pretrained_identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = {"decoder": decoder_identity(self.cfg.decoder), "encoder": self.encoder.identity()}
        return self._identity

    @property
    def device(self) -> torch.device:
        return self.projector.weight.device

    def to_device(self, device: str | torch.device) -> torch.device:
        """The decoder with every LoRA adapter, the line head and every projector to ``device``, and the shared
        line encoder too (its [CLS] cache stays in host memory). Adapters and projectors added later are created
        there: peft puts a new adapter on its layer's device, and a projector is a copy of the base's. A 4-bit
        decoder's quantized weights move with their quantization state (bitsandbytes' Params4bit.to)."""
        resolved = resolve_device(device)
        for module in (self.peft, self.line, self.projector, self.target_projectors):
            module.to(resolved)
        self.encoder.to(resolved)
        return resolved

    @property
    def targets(self) -> list[str]:
        return list(self._targets)

    def add_target(self, target: str) -> None:
        if not isinstance(target, str) or not TARGET_NAME.fullmatch(target):
            raise ValueError(f"target name {target!r}: use letters, digits, '_' and '-'")
        if target in self._targets:
            raise ValueError(f"target {target!r} already exists")
        with seeded(f"logllm/{target}"):  # LoRA's A matrices: the same for the same target in any process
            self.peft.add_adapter(adapter_name(target), self.lora_config)  # lora_B starts at zero: no change yet
        self.target_projectors[target] = copy.deepcopy(self.projector)
        self._targets.append(target)
        self.set_training(False)

    def remove_target(self, target: str) -> None:
        self._require_target(target)
        self.peft.delete_adapter(adapter_name(target))
        if serving_adapter_name(target) in self.peft.peft_config:
            self.peft.delete_adapter(serving_adapter_name(target))
        del self.target_projectors[target]
        self._targets.remove(target)

    def _require_target(self, target: str | None) -> None:
        if target is not None and target not in self._targets:
            raise KeyError(f"unknown target {target!r}; known: {self._targets}")

    # ---- the model -----------------------------------------------------------------------------------------------

    def set_training(self, training: bool) -> None:
        """Train mode switches on LoRA dropout (the frozen decoder itself has no dropout). The PeftModel holds the
        decoder; its own flag must be off too, or peft refuses per-row adapter names."""
        for module in (self.peft, self.line, self.projector, self.target_projectors):
            module.train(training)

    def activate(self, target: str | None) -> None:
        """Make the base LoRA (and ``target``'s) active, every LoRA weight frozen; fit unfreezes what it trains."""
        self._require_target(target)
        names = [BASE_ADAPTER] if target is None else [BASE_ADAPTER, adapter_name(target)]
        tuner = cast("BaseTuner", self.peft.base_model)  # peft types it as any nn.Module; with LoRA: its LoraModel
        tuner.set_adapter(names, inference_mode=True)

    def lora_parameters(self, adapter: str) -> dict[str, nn.Parameter]:
        """One adapter's LoRA weights, named without the adapter: ``lora.<module path>.lora_A.weight``."""
        out = {}
        for name, parameter in self.lm.named_parameters():
            if f".lora_A.{adapter}." in name or f".lora_B.{adapter}." in name:
                out["lora." + name.replace(f".{adapter}.", ".")] = parameter
        return out

    def window_lines(self, windows: Sequence[WindowText]) -> list[tuple[str, ...]]:
        return window_lines(windows, self.cfg.max_lines)

    def inputs(
        self,
        windows: Sequence[tuple[str, ...]],
        projector: nn.Linear | Sequence[nn.Linear],
        answers: Sequence[tuple[int, ...]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (inputs_embeds [B, T, D], attention_mask [B, T], position_ids [B, T]), left-padded so that every
        row ends with its answer tokens (the logits to read are the last ones). ``projector``: one for every row, or
        one per row (windows of different targets in one batch)."""
        embed = self.input_embeddings()
        device = embed.weight.device

        def ids(values: Sequence[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        projectors = [projector] * len(windows) if isinstance(projector, nn.Module) else list(projector)
        texts = list(dict.fromkeys(line for lines in windows for line in lines))
        row = {text: i for i, text in enumerate(texts)}
        cls = self.encoder.cls(texts, max_tokens=self.cfg.max_line_tokens).to(device)  # [U, H_enc], cached, no grad
        lines_out = self.line(cls)  # [U, H_enc]
        vectors = {id(p): p(lines_out) for p in {id(p): p for p in projectors}.values()}  # projector -> [U, D]
        head = embed(ids(self.prompt.head))  # [Th, D]
        tail = embed(ids(self.prompt.tail))  # [Tt, D]
        sequences = []
        for lines, answer, own in zip(windows, answers, projectors, strict=True):
            picked = vectors[id(own)][ids([row[t] for t in lines])]  # [L, D]
            sequences.append(torch.cat([head, picked, tail, embed(ids(answer))]))  # [Th + L + Tt + A, D]
        longest = max(len(s) for s in sequences)
        padded = torch.stack([nn.functional.pad(s, (0, 0, longest - len(s), 0)) for s in sequences])  # [B, T, D]
        mask = torch.stack([ids([0] * (longest - len(s)) + [1] * len(s)) for s in sequences])  # [B, T]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # a left-padded row starts at position 0, as if alone
        return padded, mask, positions

    def logits(
        self, windows: Sequence[tuple[str, ...]], projector: nn.Linear, answers: Sequence[tuple[int, ...]], keep: int
    ) -> torch.Tensor:
        """-> logits [B, keep, V] at the last ``keep`` positions."""
        embeds, mask, positions = self.inputs(windows, projector, answers)
        out = self.lm(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=keep, use_cache=False
        )
        return out.logits

    def answer_loss(
        self, windows: Sequence[tuple[str, ...]], labels: Sequence[int], projector: nn.Linear
    ) -> tuple[torch.Tensor, int]:
        """-> (summed cross-entropy over the answer tokens, number of answer tokens)."""
        answers = [self.prompt.answers[label] for label in labels]
        keep = max(len(a) for a in answers)  # positions that predict answer tokens: the last tail token onwards
        logits = self.logits(windows, projector, [a[:-1] for a in answers], keep)  # [B, keep, V]; EOS not input
        targets = torch.full((len(answers), keep), -100, dtype=torch.long)  # [B, keep]
        for i, answer in enumerate(answers):
            targets[i, keep - len(answer) :] = torch.tensor(answer)
        targets = targets.to(logits.device)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum")
        return loss, int((targets != -100).sum())

    def score_dtype(self) -> str:
        """The scoring dtype: the config's ``score_dtype`` under precision "default" (training, evaluation), else
        what the serving precision asks for (``inference.precision``).

        Serving's "auto" is float32 for LogLLM, unlike the other families: a verdict must not depend on which
        windows share its batch, and bf16 matmuls are not batch-invariant (torch picks its bf16 GEMM kernel by the
        number of rows, batch x tokens, and kernels round differently). A decoder amplifies those last-bit
        differences layer after layer: on SmolLM2 one window's score moved by up to 0.012 with its batch-mates in
        bf16, and by under 1e-6 in float32, which costs 1.5x the CPU time (tests/unit/test_model_logllm.py checks it).
        "bfloat16" is still there for whoever wants the speed and accepts the drift."""
        if self.precision == "default":
            return self.cfg.score_dtype
        if self.precision == "auto":
            return "float32"
        device = self.input_embeddings().weight.device
        return "bfloat16" if wants_bf16(device, self.precision) else "float32"

    def autocast(self, dtype: str) -> torch.autocast:
        """Mixed precision on the decoder's device: bf16 matmuls over float32 weights when ``dtype`` is "bfloat16",
        or "auto" on hardware with native bf16 (``wants_bf16``'s "auto")."""
        device = self.input_embeddings().weight.device
        enabled = dtype == "bfloat16" or (dtype == "auto" and wants_bf16(device, "auto"))
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def projector_for(self, target: str | None) -> nn.Linear:
        return self.projector if target is None else cast(nn.Linear, self.target_projectors[target])  # all Linear

    def input_embeddings(self) -> nn.Embedding:
        """The decoder's token embedding table (transformers types it as any nn.Module)."""
        return cast(nn.Embedding, self.lm.get_input_embeddings())

    # ---- Detector: training and scoring --------------------------------------------------------------------------

    def fit_hooks(self, target: str | None, options: FitOptions) -> LogLLMFit:
        device = self.input_embeddings().weight.device
        if self.cfg.train_dtype == "bfloat16" and device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "train_dtype bfloat16 on a CPU without native bf16 (AVX512-BF16 or AMX): emulated, it trains tens of"
                " times slower than float32; train_dtype auto uses bf16 only where it is native"
            )
        return LogLLMFit(self, target, options.seed)

    def reads(self, window: WindowText) -> tuple[str, ...]:
        return window_lines([window], self.cfg.max_lines)[0]

    @torch.no_grad()
    def scores(self, windows: Sequence[WindowText], *, target: str | None = None, batch_size: int = 64) -> list[float]:
        self.activate(target)
        lines = self.window_lines(windows)
        return self._scores(lines, [self.projector_for(target)] * len(lines), None, batch_size)

    @torch.no_grad()
    def scores_mixed(
        self, windows: Sequence[WindowText], targets: Sequence[str | None], *, batch_size: int = 64
    ) -> list[float]:
        """Windows of different targets in shared forward passes: each row's lines go through its own target's
        projector, and each row's LoRA is chosen per row by peft's ``adapter_names``. A row needs the base LoRA and
        its target's together, which per-row names cannot stack, so each target present gets a serving adapter
        holding both side by side (rank 2r, B pre-scaled: exactly the sum of the two updates), rebuilt from the
        current weights on every call (about a millisecond per target, against seconds for the batch)."""
        if len(windows) != len(targets):
            raise ValueError(f"{len(windows)} windows but {len(targets)} targets")
        present = list(dict.fromkeys(targets))
        if len(present) <= 1:
            return self.scores(windows, target=present[0] if present else None, batch_size=batch_size)
        names = {target: self._serving_adapter(target) for target in present}
        lines = self.window_lines(windows)
        projectors = [self.projector_for(target) for target in targets]
        return self._scores(lines, projectors, [names[target] for target in targets], batch_size)

    def _scores(
        self,
        lines: list[tuple[str, ...]],
        projectors: list[nn.Linear],
        adapters: list[str] | None,
        batch_size: int,
    ) -> list[float]:
        """P(anomalous) per row; ``adapters``: peft adapter names per row, or None for the active adapters."""
        self.set_training(False)
        order = sorted(range(len(lines)), key=lambda i: len(lines[i]))  # similar lengths share a batch: less padding
        out = [0.0] * len(lines)
        autocast = self.autocast(self.score_dtype())
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            per_row = {} if adapters is None else {"adapter_names": [adapters[i] for i in chunk]}
            with autocast:
                embeds, mask, positions = self.inputs(
                    [lines[i] for i in chunk], [projectors[i] for i in chunk], [self.prompt.prefix] * len(chunk)
                )
                model = self.lm if adapters is None else self.peft  # only the PeftModel's forward takes the names
                logits = model(
                    inputs_embeds=embeds,
                    attention_mask=mask,
                    position_ids=positions,
                    logits_to_keep=1,
                    use_cache=False,
                    **per_row,
                ).logits
            last = logits[:, -1].float()  # [B, V]
            # P(anomalous) / (P(anomalous) + P(normal)) of the deciding token = sigmoid of the logit difference
            probability = torch.sigmoid(last[:, self.prompt.anomalous] - last[:, self.prompt.normal])  # [B]
            for i, p in zip(chunk, probability.tolist(), strict=True):
                out[i] = p
        return out

    @torch.no_grad()
    def _serving_adapter(self, target: str | None) -> str:
        """The peft adapter that alone scores ``target``'s rows in a mixed batch (see ``scores_mixed``)."""
        from peft.tuners.lora import LoraLayer

        self._require_target(target)
        if target is None:
            return BASE_ADAPTER
        name, own = serving_adapter_name(target), adapter_name(target)
        if name not in self.peft.peft_config:
            config = copy.deepcopy(self.lora_config)
            config.r = config.lora_alpha = 2 * self.lora_config.r  # scaling 1: the B halves carry their own
            config.lora_dropout = 0.0
            self.peft.add_adapter(name, config)
        for module in self.lm.modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                a, b = module.lora_A, module.lora_B
                _lora_weight(a, name).copy_(torch.cat([_lora_weight(a, BASE_ADAPTER), _lora_weight(a, own)], dim=0))
                _lora_weight(b, name).copy_(
                    torch.cat(
                        [
                            _lora_weight(b, BASE_ADAPTER) * module.scaling[BASE_ADAPTER],
                            _lora_weight(b, own) * module.scaling[own],
                        ],
                        dim=1,
                    )
                )
        return name

    def line_saliency(
        self, windows: Sequence[WindowText], *, target: str | None = None, batch_size: int = 16
    ) -> list[list[float]]:
        """Per window, per line the model reads (its last ``max_lines``): gradient x input of the logit margin
        (anomalous minus normal) at that line's vector, how far the line pushes the answer towards "anomalous" to
        first order. One forward and one backward per batch, where occluding every distinct template costs one
        forward each; ``stream.inference.explain`` occludes only the templates this ranks highest."""
        self.activate(target)
        self.set_training(False)
        projector = self.projector_for(target)
        lines = self.window_lines(windows)
        after_lines = len(self.prompt.tail) + len(self.prompt.prefix)  # each row ends: lines, tail, answer prefix
        autocast = self.autocast(self.score_dtype())
        out: list[list[float]] = []
        for start in range(0, len(lines), batch_size):
            chunk = lines[start : start + batch_size]
            with torch.enable_grad(), autocast:
                embeds, mask, positions = self.inputs(chunk, projector, [self.prompt.prefix] * len(chunk))
                embeds = embeds.detach().requires_grad_(True)
                logits = self.lm(
                    inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=1, use_cache=False
                ).logits
                last = logits[:, -1].float()  # [B, V]
                margin = last[:, self.prompt.anomalous] - last[:, self.prompt.normal]  # [B]; rows are independent
                (grad,) = torch.autograd.grad(margin.sum(), embeds)
            contribution = (grad.float() * embeds.detach().float()).sum(-1)  # [B, T]
            end = contribution.shape[1] - after_lines
            for row, read in enumerate(chunk):
                out.append(contribution[row, end - len(read) : end].tolist())
        return out

    def parameter_counts(self, mode: Mode, target: str | None = None) -> ParameterCounts:
        self._require_target(target)
        if mode == "adapter" and target is None:
            raise ValueError("mode 'adapter' needs a target")
        base = self.base_state_parameters()
        adapter = self.adapter_parameters(target) if target is not None else {}
        # the frozen pretrained weights (4-bit ones counted as the weights they stand for); LoRA of other targets out
        pretrained = self.encoder.numel() + sum(
            logical_numel(p) for name, p in self.lm.named_parameters() if ".lora_" not in name
        )
        total = pretrained + sum(p.numel() for p in base.values()) + sum(p.numel() for p in adapter.values())
        trained = base if mode == "base" else adapter
        return ParameterCounts(total=total, trainable=sum(p.numel() for p in trained.values()))

    # ---- Detector: state -----------------------------------------------------------------------------------------

    def base_state_parameters(self) -> dict[str, nn.Parameter]:
        return {
            **_linear_parameters("line", self.line.linear),
            **_linear_parameters("projector", self.projector),
            **self.lora_parameters(BASE_ADAPTER),
        }

    def adapter_parameters(self, target: str) -> dict[str, nn.Parameter]:
        self._require_target(target)
        return {
            **_linear_parameters("projector", self.projector_for(target)),
            **self.lora_parameters(adapter_name(target)),
        }

    def base_state(self) -> dict[str, torch.Tensor]:
        # in host memory whatever the device: states are written to artifacts and compared across detectors
        return {name: host_copy(p) for name, p in self.base_state_parameters().items()}

    def load_base_state(self, tensors: dict[str, torch.Tensor]) -> None:
        parameters = self.base_state_parameters()
        check_state("logllm base", shapes(parameters), tensors)
        copy_into(parameters, tensors)

    def adapter_state(self, target: str) -> dict[str, torch.Tensor]:
        return {name: host_copy(p) for name, p in self.adapter_parameters(target).items()}

    def expected_adapter_shapes(self) -> dict[str, tuple[int, ...]]:
        """An adapter has the shapes of the base projector and the base LoRA (no probe target needed)."""
        base = shapes(self.base_state_parameters())
        return {name: shape for name, shape in base.items() if not name.startswith("line.")}

    def load_adapter_state(self, target: str, tensors: dict[str, torch.Tensor]) -> None:
        check_state(f"logllm adapter {target!r}", self.expected_adapter_shapes(), tensors)
        if target not in self._targets:
            self.add_target(target)
        copy_into(self.adapter_parameters(target), tensors)


def _linear_parameters(prefix: str, linear: nn.Linear) -> dict[str, nn.Parameter]:
    """``<prefix>.weight`` and ``<prefix>.bias``, typed as the parameters they are (nn.Linear types them as tensors)."""
    return {f"{prefix}.{name}": parameter for name, parameter in linear.named_parameters()}


def _lora_weight(layers: nn.ModuleDict, adapter: str) -> torch.Tensor:
    """One adapter's weight in a LoRA layer's ``lora_A`` or ``lora_B`` (an nn.Linear per adapter)."""
    return cast(nn.Linear, layers[adapter]).weight
