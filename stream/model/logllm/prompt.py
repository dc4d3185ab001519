"""LogLLM's prompt: the paper's words around the line vectors, the two answers, and what the model reads of a
window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stream.errors import ModelError
from stream.model.detector import WindowText

# The paper's prompt and answers (its code writes the newline as a literal "\\n"; the paper means a line break).
PROMPT_HEAD = "Below is a sequence of system log messages:"
PROMPT_TAIL = ". Is this sequence normal or anomalous? \n"
ANSWER_ANOMALOUS = "The sequence is anomalous."
ANSWER_NORMAL = "The sequence is normal."


@dataclass(frozen=True)
class PromptTokens:
    """The prompt's token ids for one tokenizer, and which answer token decides the score."""

    head: tuple[int, ...]  # the tokenizer's leading special tokens (Llama-3's BOS) + PROMPT_HEAD
    tail: tuple[int, ...]
    answers: dict[int, tuple[int, ...]]  # label -> answer + EOS, what training teaches
    prefix: tuple[int, ...]  # the answer tokens both answers share ("The sequence is")
    anomalous: int  # first token where the answers differ
    normal: int

    @classmethod
    def build(cls, tokenizer: Any) -> PromptTokens:
        def ids(text: str) -> tuple[int, ...]:
            return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])

        head = ids(PROMPT_HEAD)
        with_specials = tuple(tokenizer(PROMPT_HEAD)["input_ids"])
        lead = with_specials[: len(with_specials) - len(head)] if with_specials[-len(head) :] == head else ()
        eos = () if tokenizer.eos_token_id is None else (int(tokenizer.eos_token_id),)
        anomalous, normal = ids(ANSWER_ANOMALOUS), ids(ANSWER_NORMAL)
        shared = 0
        while shared < min(len(anomalous), len(normal)) and anomalous[shared] == normal[shared]:
            shared += 1
        if shared == min(len(anomalous), len(normal)):
            raise ModelError("the tokenizer cannot tell the two answers apart at any token")
        return cls(
            head=lead + head,
            tail=ids(PROMPT_TAIL),
            answers={1: anomalous + eos, 0: normal + eos},
            prefix=anomalous[:shared],
            anomalous=anomalous[shared],
            normal=normal[shared],
        )


def window_lines(windows: Sequence[WindowText], max_lines: int) -> list[tuple[str, ...]]:
    """What the model reads of each window: its masked lines (templates for sequence files), the last max_lines."""
    return [tuple(w.lines()[-max_lines:]) for w in windows]
