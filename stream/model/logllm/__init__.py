"""LogLLM (Guan et al., 2024): BERT line vectors -> projector -> decoder LLM with LoRA, answering in words.
``config`` (hyperparameters), ``prompt`` (the paper's prompt and answers), ``state`` (adapter names and state
tensors), ``detector`` (the ``Detector``), ``fit`` (its hooks into the shared training loop,
``stream.model.training``)."""

from stream.model.logllm.config import QUANTIZATIONS, SCORE_DTYPES, LogLLMConfig
from stream.model.logllm.detector import TARGET_NAME, LogLLMDetector, Pretrained
from stream.model.logllm.prompt import (
    ANSWER_ANOMALOUS,
    ANSWER_NORMAL,
    PROMPT_HEAD,
    PROMPT_TAIL,
    PromptTokens,
    window_lines,
)
from stream.model.logllm.state import BASE_ADAPTER, adapter_name, host_copy, serving_adapter_name

__all__ = [
    "ANSWER_ANOMALOUS",
    "ANSWER_NORMAL",
    "BASE_ADAPTER",
    "PROMPT_HEAD",
    "PROMPT_TAIL",
    "QUANTIZATIONS",
    "SCORE_DTYPES",
    "TARGET_NAME",
    "LogLLMConfig",
    "LogLLMDetector",
    "Pretrained",
    "PromptTokens",
    "adapter_name",
    "host_copy",
    "serving_adapter_name",
    "window_lines",
]
