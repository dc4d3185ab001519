"""TransLog (Guo et al., 2021): sentence-embedded templates -> transformer encoder -> logit, with per-target
bottleneck adapters. ``config`` (hyperparameters), ``layers`` (the modules), ``detector`` (the ``Detector``),
``fit`` (its hooks into the shared training loop, ``stream.model.training``)."""

from stream.model.translog.config import VALID_LAYERS, TransLogConfig
from stream.model.translog.detector import TransLogDetector, rename_target
from stream.model.translog.layers import Adapter, EncoderLayer, StackedParts, TargetParts, TransLog, sinusoidal

__all__ = [
    "VALID_LAYERS",
    "Adapter",
    "EncoderLayer",
    "StackedParts",
    "TargetParts",
    "TransLog",
    "TransLogConfig",
    "TransLogDetector",
    "rename_target",
    "sinusoidal",
]
