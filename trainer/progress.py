"""Progress bars for long training work (tqdm on stderr), as a ``stream.model.detector.Progress`` callback.

Drawn only on a terminal: redirected to a file or a CI log, stderr gets no bars (tqdm's ``disable=None``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: the trainer's parser imports this module and must not import torch
    from stream.model.detector import Progress


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator[Progress | None]:
    """One bar per stage (epoch or training stage), replaced when the stage changes; none when ``quiet`` or when
    stderr is not a terminal."""
    if quiet:
        yield None
        return
    from tqdm import tqdm

    bar: tqdm | None = None
    stage = ""

    def update(name: str, done: int, total: int) -> None:
        nonlocal bar, stage
        if bar is None or name != stage:
            if bar is not None:
                bar.close()
            bar, stage = tqdm(total=total, desc=name, unit="batch", leave=False, disable=None), name
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
