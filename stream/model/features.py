"""The one window encoding used by training and serving: template texts -> (embeddings [L, 384], mask [L])."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stream.model.embeddings import EMBED_DIM, TemplateEmbedder

FEATURE_VERSION = "translog-minilm-l6-v2-meanpool-l2/keep-last/1"


def encode_window(
    embedder: TemplateEmbedder, templates: Sequence[str], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A window -> (x [max_len, 384], mask [max_len] bool, True = real line).

    Longer windows are truncated keeping the LAST max_len lines (the most recent); shorter ones are right-padded
    with zeros (mask False).
    """
    kept = list(templates)[-max_len:]
    x = torch.zeros(max_len, EMBED_DIM)
    mask = torch.zeros(max_len, dtype=torch.bool)
    if kept:
        x[: len(kept)] = embedder.embed(kept)
        mask[: len(kept)] = True
    return x, mask


def encode_batch(
    embedder: TemplateEmbedder, windows: Sequence[Sequence[str]], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """windows -> (x [B, max_len, 384], mask [B, max_len])."""
    embedder.embed(list(dict.fromkeys(t for w in windows for t in list(w)[-max_len:])))  # one batched pass
    pairs = [encode_window(embedder, w, max_len) for w in windows]
    if not pairs:
        return torch.zeros(0, max_len, EMBED_DIM), torch.zeros(0, max_len, dtype=torch.bool)
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
