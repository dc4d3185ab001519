"""The one window encoding TransLog uses in training and serving.

A window is its last ``max_len`` template texts (the most recent lines), right-padded. It is encoded as indices into
a table of distinct templates plus a mask, and the table holds each template's sentence embedding once: a batch of
windows that repeat a few dozen templates (the usual case) embeds and stores each of them once, not once per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stream.model.embeddings import EMBED_DIM, TemplateEmbedder

FEATURE_VERSION = "translog-minilm-l6-v2-meanpool-l2/keep-last/1"


@dataclass(frozen=True)
class EncodedWindows:
    ids: torch.Tensor  # [N, max_len] long: row of ``table``; padding points at the last row (all zeros)
    mask: torch.Tensor  # [N, max_len] bool: True = a real line
    table: torch.Tensor  # [T + 1, 384]: the distinct templates' embeddings, then a zero row for padding

    def __len__(self) -> int:
        return self.ids.shape[0]

    def embeddings(self, rows: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [B, L, 384], mask [B, L]) of the selected windows, L = the longest of them (at most max_len).

        Lines are kept left-aligned, so cutting the all-padding columns changes no output and saves the
        attention and feed-forward work on them (HDFS blocks are mostly far shorter than max_len)."""
        mask = self.mask[rows]
        length = max(1, int(mask.sum(1).max().item())) if mask.numel() else 1
        return self.table[self.ids[rows][:, :length]], mask[:, :length]


def encode_windows(
    embedder: TemplateEmbedder,
    windows: Sequence[Sequence[str]],
    max_len: int,
    device: torch.device | None = None,
) -> EncodedWindows:
    """The windows' encoding, its tensors on ``device`` (default: the CPU): built in host memory, then moved in
    three copies (ids, mask, the table of distinct templates), not one per line."""
    kept = [list(w)[-max_len:] for w in windows]
    vocabulary = list(dict.fromkeys(t for w in kept for t in w))
    row = {text: i for i, text in enumerate(vocabulary)}
    pad = len(vocabulary)
    ids = torch.full((len(kept), max_len), pad, dtype=torch.long)
    mask = torch.zeros(len(kept), max_len, dtype=torch.bool)
    for i, window in enumerate(kept):
        if window:
            ids[i, : len(window)] = torch.tensor([row[t] for t in window])
            mask[i, : len(window)] = True
    table = torch.zeros(pad + 1, EMBED_DIM)
    if vocabulary:
        table[:pad] = embedder.embed(vocabulary)
    if device is not None:
        ids, mask, table = ids.to(device), mask.to(device), table.to(device)
    return EncodedWindows(ids, mask, table)


def encode_batch(
    embedder: TemplateEmbedder,
    windows: Sequence[Sequence[str]],
    max_len: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """windows -> (x [B, max_len, 384], mask [B, max_len]) on ``device`` (default: the CPU)."""
    return encode_windows(embedder, windows, max_len, device).embeddings(slice(None))


# Padded lines one forward pass may hold: a batch of long windows is cut smaller than one of short windows.
TOKEN_BUDGET = 1024


def length_batches(lengths: Sequence[int], batch_size: int, token_budget: int = TOKEN_BUDGET) -> list[list[int]]:
    """Indices cut into batches of windows of similar length (shortest first), each at most ``batch_size`` windows
    and (beyond its first window) ``token_budget`` padded lines.

    Sessions differ in length by two orders of magnitude (an HDFS block has 2 to 300 lines): batching them in
    arrival order pads every window to the longest of its batch, and on a CPU that padding is most of the work."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[i], 1)  # sorted: the newcomer is the longest so far
        if current and (len(current) >= batch_size or (len(current) + 1) * longest > token_budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
