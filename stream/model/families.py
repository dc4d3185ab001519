"""Family name -> Detector class, imported on first use (LogLLM pulls in peft and bitsandbytes; TransLog does not).

``create_detector`` is where hyperparameters enter a model: whatever a family's constructor raises about them (its
config's ConfigError, or a builtin error from a value of the wrong type deep in a constructor) leaves it as a
ConfigError, so no caller above has to catch builtins.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from stream.errors import ConfigError, ModelError
from stream.model.detector import Detector

# name -> (module, class)
FAMILIES: dict[str, tuple[str, str]] = {
    "translog": ("stream.model.translog", "TransLogDetector"),
    "logtransfer": ("stream.model.logtransfer", "LogTransferDetector"),
    "logllm": ("stream.model.logllm", "LogLLMDetector"),
}


def family_class(name: str) -> type[Detector]:
    try:
        module, cls = FAMILIES[name]
    except KeyError:
        raise ModelError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None
    found = getattr(import_module(module), cls)
    if not (isinstance(found, type) and issubclass(found, Detector)):
        raise ModelError(f"{module}.{cls} is not a Detector")
    return found


def create_detector(family: str, config: dict[str, Any], *, seed: int = 0) -> Detector:
    """``family_class(family).create(config, seed=seed)``, a rejected hyperparameter a ConfigError naming it."""
    cls = family_class(family)
    try:
        return cls.create(config, seed=seed)
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError) as exc:  # a value of the wrong type met deep in a constructor
        raise ConfigError(f"{family} config", f"{type(exc).__name__}: {exc}") from None
