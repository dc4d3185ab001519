"""LogTransfer's hyperparameters: one dataclass, every field's type and range checked when built."""

from __future__ import annotations

from dataclasses import dataclass, fields

from stream.errors import ConfigError
from stream.model.word_vectors import GLOVE_DIM, GLOVE_NAME

VECTORS = (GLOVE_NAME, "fit")
POSITIVE = ("word_dim", "hidden", "layers", "classifier_hidden", "max_len", "epochs", "batch_size", "fit_vocabulary")
FIELD_TYPES = {"str": (str,), "int": (int,), "float": (int, float)}  # annotations are strings here (__future__)


@dataclass
class LogTransferConfig:
    vectors: str = GLOVE_NAME  # "glove-6b-50d" (pretrained, frozen) or "fit" (GloVe trained on the templates)
    word_dim: int = GLOVE_DIM  # template vector size; 50 with the pretrained GloVe
    hidden: int = 128  # LSTM hidden size (the paper's)
    layers: int = 2  # stacked LSTM layers
    classifier_hidden: int = 192
    max_len: int = 20  # templates per window the LSTM reads (the paper's sliding window W); the last ones are kept
    dropout: float = 0.1  # between LSTM layers and before each classifier layer
    epochs: int = 10  # FitOptions defaults
    lr: float = 1e-3
    batch_size: int = 64
    # rows of the fitted GloVe table (vectors="fit"): the most frequent words are kept. GloVe fits a dense
    # [V, V] matrix: a few hundred template words take ~1 s; the full 4096 would take tens of seconds and ~0.5 GB
    fit_vocabulary: int = 4096
    init_seed: int = 0  # initial weights: the same config always starts from the same model

    def __post_init__(self) -> None:
        for f in fields(self):  # from JSON or a CLI, a wrong type should fail here, not deep inside torch
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, FIELD_TYPES[str(f.type)]):
                raise ConfigError("logtransfer", f"LogTransferConfig.{f.name} must be {f.type}, got {value!r}")
        if self.vectors not in VECTORS:
            raise ConfigError(
                "logtransfer", f"LogTransferConfig.vectors must be one of {VECTORS}, got {self.vectors!r}"
            )
        if self.vectors == GLOVE_NAME and self.word_dim != GLOVE_DIM:
            raise ConfigError(
                "logtransfer", f"LogTransferConfig.word_dim must be {GLOVE_DIM} with {GLOVE_NAME}, got {self.word_dim}"
            )
        for name in POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigError(
                    "logtransfer", f"LogTransferConfig.{name} must be positive, got {getattr(self, name)}"
                )
        if not 0 <= self.dropout < 1:
            raise ConfigError("logtransfer", f"LogTransferConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ConfigError("logtransfer", f"LogTransferConfig.lr must be positive, got {self.lr}")
