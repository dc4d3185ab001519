"""LogTransfer (Chen et al., ISSRE 2020): word-vector templates -> LSTM -> shared classifier, a target's own LSTM
under the frozen classifier. ``config`` (hyperparameters), ``layers`` (the modules), ``detector`` (the
``Detector``), ``fit`` (its hooks into the shared training loop, ``stream.model.training``)."""

from stream.model.logtransfer.config import LogTransferConfig
from stream.model.logtransfer.detector import LogTransferDetector
from stream.model.logtransfer.layers import Classifier, LogTransfer, new_lstm

__all__ = ["Classifier", "LogTransfer", "LogTransferConfig", "LogTransferDetector", "new_lstm"]
