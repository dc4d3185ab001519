"""Model cost per family on CPU: inference windows/s by batch size (1, 16, 64) in fp32 and bf16, training windows/s
for pretraining against adapter tuning, trainable parameters of an adapter against the whole model, and windows of
16 adapters mixed in one batch against a batch for one adapter.

Windows are real: 20-line BGL windows (every 100th of bgl_windows20) and, for LogLLM, the same windows as lines.
Inference is timed with a warm per-template / per-line embedding cache, as a serving worker runs (templates
recur); the first, cold pass is reported apart. The baseline of each row is the same family at batch size 1 in
fp32, measured in the same run. Best of ``--repeat``.

Mixed adapters (batch 64, in the precision the inference worker serves with: ``precision`` auto):
``scores_mixed`` with each row bound to one of 16 adapters (TransLog gathers each row's adapter weights; LogLLM
picks each row's LoRA by peft's per-row adapter names) against the same windows all for one adapter, and against
running one adapter group after another (``Detector``'s default).

    python bench/model_bench.py [--families translog,logtransfer,logllm] [--windows 256] [--parts mixed]
        -> bench/results/model.json
    python bench/model_bench.py --families logllm --parts train_dtype --out bench/results/logllm_train_dtype.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.streaming import DATA  # noqa: E402
from stream.model.detector import Detector, FitOptions, WindowText, cpu_has_native_bf16  # noqa: E402
from stream.model.families import family_class  # noqa: E402
from stream.model.logllm import LogLLMDetector  # noqa: E402
from trainer.datasets import load_bgl_windows  # noqa: E402

BATCH_SIZES = (1, 16, 64)
ADAPTERS = 16
PARTS = ("training", "inference", "mixed", "train_dtype")
# LogLLM's training precision (``train_dtype``): one optimizer step per stage over TRAIN_DTYPE_WINDOWS windows, each
# dtype from a fresh detector; a CPU that emulates bf16 takes minutes for these three steps
TRAIN_DTYPE_WINDOWS = 8
CONFIGS: dict[str, dict[str, Any]] = {"translog": {}, "logtransfer": {}, "logllm": {"max_lines": 20}}


def windows(count: int) -> tuple[list[WindowText], list[int]]:
    bgl = DATA / "bgl"
    dataset = load_bgl_windows(bgl / "bgl_windows20.csv.gz", bgl / "bgl_window_templates.csv", every=100)
    picked = dataset.windows[:count]
    return [WindowText(w.templates, w.masked) for w in picked], [w.label for w in picked]


def timed(repeat: int, run) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def inference(detector: Detector, texts: list[WindowText], repeat: int, target: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    detector.scores(texts[:64], target=target, batch_size=64)  # cold: fills the embedding cache
    rows: dict[str, Any] = {"cold_first_64_windows_s": round(time.perf_counter() - started, 3)}
    for dtype in ("fp32", "bf16"):
        if isinstance(detector, LogLLMDetector):
            # LogLLM's scoring sets its own autocast from its config (an outer one would be switched off inside)
            detector.cfg = dataclasses.replace(detector.cfg, score_dtype={"fp32": "float32", "bf16": "bfloat16"}[dtype])
        for batch in BATCH_SIZES:
            n = min(len(texts), max(batch * 4, 32))
            context = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

            def run(n: int = n, batch: int = batch, context=context) -> None:
                with context:
                    detector.scores(texts[:n], target=target, batch_size=batch)

            seconds = timed(repeat, run)
            rows[f"{dtype}_batch{batch}_windows_per_s"] = round(n / seconds, 1)
    rows["batch64_vs_batch1_fp32"] = round(rows["fp32_batch64_windows_per_s"] / rows["fp32_batch1_windows_per_s"], 2)
    rows["bf16_vs_fp32_batch64"] = round(rows["bf16_batch64_windows_per_s"] / rows["fp32_batch64_windows_per_s"], 2)
    return rows


def mixed_adapters(detector: Detector, texts: list[WindowText], repeat: int) -> dict[str, Any]:
    """16 adapters with distinct weights (a new target's perturbed), their windows interleaved in one batch."""
    detector.precision = "auto"  # as the inference worker serves: bf16 where the CPU has it natively
    generator = torch.Generator().manual_seed(0)
    targets = [f"mix{k}" for k in range(ADAPTERS)]
    for target in targets:
        detector.add_target(target)
        state = detector.adapter_state(target)
        detector.load_adapter_state(
            target, {n: t + 0.02 * torch.randn(t.shape, generator=generator) for n, t in state.items()}
        )
    single = [targets[0]] * len(texts)
    mixed = [targets[i % ADAPTERS] for i in range(len(texts))]
    rates = {}
    detector.scores_mixed(texts, mixed, batch_size=64)  # warm: embeddings, LogLLM's serving adapters
    for name, run in {
        "single_adapter": lambda: detector.scores_mixed(texts, single, batch_size=64),
        f"{ADAPTERS}_adapters_one_pass": lambda: detector.scores_mixed(texts, mixed, batch_size=64),
        f"{ADAPTERS}_adapters_group_after_group": lambda: Detector.scores_mixed(detector, texts, mixed, batch_size=64),
    }.items():
        rates[name] = len(texts) / timed(repeat, run)
    for target in targets:
        detector.remove_target(target)
    single_rate = rates["single_adapter"]
    return {
        **{f"{name}_windows_per_s": round(rate, 1) for name, rate in rates.items()},
        "one_pass_vs_single": round(rates[f"{ADAPTERS}_adapters_one_pass"] / single_rate, 3),
        "group_after_group_vs_single": round(rates[f"{ADAPTERS}_adapters_group_after_group"] / single_rate, 3),
        "note": "LogTransfer has no one-pass path: its scores_mixed is the group-after-group default",
    }


def training(family: str, texts: list[WindowText], labels: list[int]) -> dict[str, Any]:
    detector = family_class(family).create(CONFIGS[family], seed=0)
    detector.scores(texts, batch_size=64)  # embeddings cached, so both sides time training, not the encoder
    base = detector.fit(texts, labels, target=None, mode="base", options=FitOptions(epochs=1, seed=0))
    detector.add_target("bench")
    adapter = detector.fit(texts, labels, target="bench", mode="adapter", options=FitOptions(epochs=1, seed=0))
    counts_base = detector.parameter_counts("base")
    counts_adapter = detector.parameter_counts("adapter", "bench")
    return {
        "detector": detector,
        "pretrain_windows_per_s": round(base.windows_seen / base.seconds, 1),
        "adapter_windows_per_s": round(adapter.windows_seen / adapter.seconds, 1),
        "pretrain_seconds_vs_adapter_seconds": round(base.seconds / adapter.seconds, 2),  # one epoch (LogLLM: 3 stages)
        "parameters_total": counts_adapter.total,
        "parameters_base_trainable": counts_base.trainable,
        "parameters_adapter_trainable": counts_adapter.trainable,
        "adapter_share_of_total": round(counts_adapter.trainable / counts_adapter.total, 4),
    }


def train_dtypes(texts: list[WindowText], labels: list[int]) -> dict[str, Any]:
    """LogLLM training windows/s in float32 (the baseline), bfloat16 and "auto", and what "auto" chose here."""
    rates = {}
    short = {"stage1_windows": TRAIN_DTYPE_WINDOWS, "stage2_epochs": 1, "stage3_epochs": 1, "lr_decay": 1.0}
    short |= {"batch_size": TRAIN_DTYPE_WINDOWS, "micro_batch_size": TRAIN_DTYPE_WINDOWS}
    for dtype in ("float32", "bfloat16", "auto"):
        print(f"[logllm] training in {dtype} ...", file=sys.stderr, flush=True)
        detector = LogLLMDetector.create(CONFIGS["logllm"] | short | {"train_dtype": dtype}, seed=0)
        window, label = texts[:TRAIN_DTYPE_WINDOWS], labels[:TRAIN_DTYPE_WINDOWS]
        detector.scores(window)  # [CLS] vectors cached: the rates time the decoder, not the encoder
        report = detector.fit(window, label, target=None, mode="base", options=FitOptions(seed=0))
        rates[dtype] = report.windows_seen / report.seconds
    return {
        "cpu_native_bf16": cpu_has_native_bf16(),
        **{f"{dtype}_windows_per_s": round(rate, 3) for dtype, rate in rates.items()},
        "bfloat16_vs_float32": round(rates["bfloat16"] / rates["float32"], 3),
        "auto_vs_float32": round(rates["auto"] / rates["float32"], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="translog,logtransfer,logllm")
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts, labels = windows(args.windows)
    results: dict[str, Any] = {"threads": args.threads, "windows": len(texts), "torch": torch.__version__}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"--parts: unknown {unknown}; choose from {PARTS}")
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        row: dict[str, Any] = {}
        if "train_dtype" in parts and family == "logllm":
            row["train_dtype"] = train_dtypes(texts, labels)
        if "training" in parts or "inference" in parts:
            print(f"[{family}] training ...", file=sys.stderr, flush=True)
            row |= training(family, texts, labels)
            detector = row.pop("detector")
        elif "mixed" in parts:  # the mixed-adapter comparison measures cost: the weights' training does not change it
            detector = family_class(family).create(CONFIGS[family], seed=0)
        if "inference" in parts:
            print(f"[{family}] inference ...", file=sys.stderr, flush=True)
            row["inference_base"] = inference(detector, texts, args.repeat, None)
            row["inference_adapter"] = inference(detector, texts, args.repeat, "bench")
        if "mixed" in parts:
            print(f"[{family}] {ADAPTERS} adapters mixed ...", file=sys.stderr, flush=True)
            row["mixed_adapters"] = mixed_adapters(detector, texts, args.repeat)
        results[family] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def table(results: dict[str, Any]) -> str:
    lines = [
        "| family | fp32 b1 | fp32 b16 | fp32 b64 | bf16 b1 | bf16 b16 | bf16 b64 | b64/b1 | pretrain w/s | "
        "adapter w/s | adapter params / total |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    mixed = [
        f"| {family} | {row['mixed_adapters']['single_adapter_windows_per_s']} | "
        f"{row['mixed_adapters'][f'{ADAPTERS}_adapters_one_pass_windows_per_s']} | "
        f"{row['mixed_adapters']['one_pass_vs_single']} | {row['mixed_adapters']['group_after_group_vs_single']} |"
        for family, row in results.items()
        if isinstance(row, dict) and "mixed_adapters" in row
    ]
    if not any(isinstance(row, dict) and "inference_adapter" in row for row in results.values()):
        lines = []
    for family, row in results.items():
        if not isinstance(row, dict) or "inference_adapter" not in row:
            continue
        inf = row["inference_adapter"]
        speeds = " | ".join(str(inf[f"{d}_batch{b}_windows_per_s"]) for d in ("fp32", "bf16") for b in BATCH_SIZES)
        lines.append(
            f"| {family} | {speeds} | {inf['batch64_vs_batch1_fp32']}x | {row['pretrain_windows_per_s']} | "
            f"{row['adapter_windows_per_s']} | {row['parameters_adapter_trainable']:,} / {row['parameters_total']:,} |"
        )
    if mixed:
        lines += [
            "",
            f"| family | 1 adapter w/s | {ADAPTERS} mixed, one pass w/s | one pass / single | "
            "group after group / single |",
            "|---|---|---|---|---|",
            *mixed,
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
