"""Family name -> Detector class, imported on first use (LogLLM pulls in peft and bitsandbytes; TransLog does not)."""

from __future__ import annotations

from importlib import import_module

from stream.errors import ModelError
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
