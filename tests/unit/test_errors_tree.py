"""Every exception class adaptlog defines sits in the stream.errors tree (issue "One way through the code", item 2),
so an error policy that names our classes never has to name a builtin to catch ours."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import stream
import trainer
from stream.errors import AdaptlogError

# modules that run something when imported
SKIPPED = ("__main__",)


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for package in (stream, trainer):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if info.name.rsplit(".", 1)[-1] in SKIPPED:
                continue
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == module.__name__:
                    found.append(value)
    return found


def test_every_exception_class_of_ours_derives_from_adaptlog_error() -> None:
    classes = defined_exceptions()
    # the tree's own classes and those defined next to the code that raises them (console, notifier, loop, records)
    assert len(classes) >= 15
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, AdaptlogError))
    assert outside == []
