"""``adaptlog``: the stream side's command line. The only place settings are built (``load_settings``).

Exit codes: 0 done; 1 failed (the broker, a model, a health check); 2 bad usage (a bad flag or value, or a setting
that is wrong: the message names it); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from stream.errors import AdaptlogError, ConfigError
from stream.gc_policy import tune_for_throughput
from stream.logs import configure as configure_logging
from stream.settings import Settings, load_settings

WORKERS = frozenset({"run", "infer", "demo"})  # long-running, per-line work: see stream.gc_policy
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def package_version() -> str:
    try:
        return version("adaptlog")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaptlog", description="Streaming log anomaly detection on Kafka.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO", help="least severe level logged (any case)"
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one object a line")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (COMMAND --help for its options)"
    )

    sub.add_parser("run", help="run the stream workers (ingest, parse, session stages) until SIGTERM")

    infer = sub.add_parser("infer", help="score windows with the registry's models; publish verdicts and alerts")
    infer.add_argument("--registry", type=Path, help="model registry directory (default: inference.registry)")
    infer.add_argument("--base", help="base model name in the registry (default: the only one)")
    infer.add_argument("--verdicts", action="store_true", help="also publish every verdict to the verdicts topic")

    notify = sub.add_parser(
        "notify", help="forward the alerts topic to Alertmanager and/or a JSON webhook (at least once) until SIGTERM"
    )
    notify.add_argument(
        "--alertmanager", metavar="URL", help="Alertmanager base URL (default: notify.alertmanager_url)"
    )
    notify.add_argument(
        "--webhook", metavar="URL", help="JSON webhook URL, Slack-compatible (default: notify.webhook_url)"
    )

    replay = sub.add_parser("replay", help="produce a log file (gzip accepted) to the input topic")
    replay.add_argument("file", type=Path, help="the log file to send, one line a record (.gz: gzip)")
    replay.add_argument("--system", required=True, help="the source system the lines come from (see settings)")
    replay.add_argument("--format", help="line format (default: the system's); loghub bgl/thunderbird strip labels")
    replay.add_argument("--labels", type=Path, help="HDFS block label CSV (BlockId,Label): sent as record headers")
    replay.add_argument("--rate", type=float, help="lines per second (default: as fast as the broker takes them)")
    replay.add_argument("--topic", help="input topic (default: the logs topic)")

    tail = sub.add_parser("tail", help="print a topic's records as JSON lines")
    tail.add_argument("topic", help="the topic to read, from its beginning")
    tail.add_argument("--max", type=int, dest="max_records", help="stop after this many records (default: no limit)")
    tail.add_argument("--timeout", type=float, default=5.0, help="stop after this many seconds without a record")

    sub.add_parser(
        "topics", help="create every topic adaptlog uses (partitions, replication, compaction); existing ones are kept"
    )
    health = sub.add_parser("health", help="exit 0 when the local process's /healthz answers 200 (container probe)")
    health.add_argument("--port", type=int, help="default: metrics_port (or inference/trainer metrics_port)")

    _add_decode(sub)

    console = sub.add_parser("console", help="serve the operator console (incidents, labels, systems) until SIGTERM")
    console.add_argument("--port", type=int, help="HTTP port (default: console.port)")
    console.add_argument("--registry", type=Path, help="model registry directory (default: console.registry)")

    demo = sub.add_parser("demo", help="embedded broker + workers + a bundled sample replay, then a summary")
    demo.add_argument("--timeout", type=float, default=540.0, help="give up after this many seconds")
    return parser


def _add_decode(sub: argparse._SubParsersAction) -> None:
    from stream.settings import INPUT_PRESETS

    decode = sub.add_parser(
        "decode", help="decode records from a file or stdin as ingest would (no broker); print lines and dead letters"
    )
    decode.add_argument("file", metavar="FILE|-", help="one record a line (- reads stdin)")
    decode.add_argument("--system", help="the system of records that name none (default: the topic's)")
    decode.add_argument(
        "--input-format", choices=INPUT_PRESETS, help="the records' shipper preset (default: the topic's or system's)"
    )
    decode.add_argument("--topic", help="decode as if read from this input topic (default: the first input topic)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if not sys.stderr.isatty():
        # transformers' "Loading weights" bar is a terminal's: in a pod's log or a pipe it is noise between the log
        # lines (as in adaptlog-train); read when huggingface_hub is first imported, which is later
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        settings = load_settings()
        return asyncio.run(_interruptible(_dispatch(args, settings)))
    except ConfigError as exc:
        print(f"adaptlog: configuration error: {exc}", file=sys.stderr)
        return 2
    except AdaptlogError as exc:
        print(f"adaptlog: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("adaptlog: interrupted", file=sys.stderr)
        return 130


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in WORKERS:
        tune_for_throughput()
    if args.command == "run":
        from prometheus_client import CollectorRegistry

        from stream.ops_http import OpsServer, ops_port
        from stream.pipeline.worker import run_worker

        stop = _stop_on_signals()
        registry = CollectorRegistry()
        ops = OpsServer(ops_port(settings), registry) if ops_port(settings) else None
        await run_worker(settings, stop, registry=registry, ops=ops)
        return 0
    if args.command == "topics":
        return await _topics(settings)
    if args.command == "health":
        return _health(args, settings)
    if args.command == "infer":
        from stream.inference.worker import run_inference

        overrides = {
            "registry": args.registry or settings.inference.registry,
            "base": args.base if args.base is not None else settings.inference.base,
            "publish_verdicts": args.verdicts or settings.inference.publish_verdicts,
        }
        inference = settings.inference.model_copy(update=overrides)
        counts = await run_inference(settings.model_copy(update={"inference": inference}), _stop_on_signals())
        logging.getLogger("adaptlog").info("inference stopped: %s", dict(sorted(counts.items())))
        return 0
    if args.command == "notify":
        return await _notify(args, settings)
    if args.command == "replay":
        return await _replay(args, settings)
    if args.command == "tail":
        from stream.tail import tail

        await tail(settings, args.topic, args.max_records, args.timeout)
        return 0
    if args.command == "decode":
        from stream.decode_command import decode_settings, run_decode

        return run_decode(decode_settings(settings, args.topic, args.system, args.input_format), args.file, args.topic)
    if args.command == "console":
        return await _console(args, settings)
    if args.command == "demo":
        from stream.demo import run_demo

        return await run_demo(settings, timeout_s=args.timeout)
    raise ConfigError("command", f"unknown command {args.command!r}")


async def _console(args: argparse.Namespace, settings: Settings) -> int:
    from stream.console.app import serve

    given = {"port": args.port, "registry": args.registry}
    update = {field: value for field, value in given.items() if value is not None}
    if update:  # through the model's checks, as the environment's values went
        console = settings.console.model_validate({**settings.console.model_dump(), **update})
        settings = settings.model_copy(update={"console": console})
    await serve(settings, _stop_on_signals())
    return 0


async def _notify(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from stream.notify.worker import run_notify

    flags = {"alertmanager_url": ("--alertmanager", args.alertmanager), "webhook_url": ("--webhook", args.webhook)}
    given = {field: value for field, (_, value) in flags.items() if value}
    try:  # model_copy does not validate: the flags go through the same checks as the settings
        notify = type(settings.notify)(**(settings.notify.model_dump() | given))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(flags[str(first["loc"][0])][0], first["msg"]) from None
    counts = await run_notify(settings.model_copy(update={"notify": notify}), _stop_on_signals())
    logging.getLogger("adaptlog").info("notify stopped: %s", dict(sorted(counts.items())))
    return 0


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from stream.formats import ready_format
    from stream.replay import read_block_labels, replay, replay_records

    if args.system not in settings.systems:
        raise ConfigError("--system", f"unknown system {args.system!r}; known: {', '.join(sorted(settings.systems))}")
    if not args.file.is_file():
        raise ConfigError("FILE", f"no such file {args.file}")
    spec = settings.systems[args.system]
    line_format = ready_format(args.format, "--format") if args.format else spec.line_format(args.system)
    labels = read_block_labels(args.labels) if args.labels else None
    sent = await replay(
        settings, replay_records(args.file, args.system, line_format, labels), args.system, args.topic, args.rate
    )
    print(f"replayed {sent} lines of {args.file} as system {args.system}", file=sys.stderr)
    return 0


async def _topics(settings: Settings) -> int:
    from stream.pipeline.kafka_clients import all_topic_specs, ensure_topics

    specs = all_topic_specs(settings)
    await ensure_topics(settings, specs)
    for spec in specs:
        configs = ",".join(f"{k}={v}" for k, v in sorted(spec.topic_configs.items())) or "-"
        print(f"{spec.name}\tpartitions={spec.num_partitions}\treplication={spec.replication_factor}\t{configs}")
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from stream.ops_http import check_health

    port = args.port or settings.metrics_port or settings.inference.metrics_port or settings.trainer.metrics_port
    if not port:
        raise ConfigError("metrics_port", "no port to ask (ADAPTLOG_METRICS_PORT or --port)")
    healthy, said = check_health(port)
    print(f"{'healthy' if healthy else 'unhealthy'}: {said}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


async def _interruptible(command: Coroutine[Any, Any, int]) -> int:
    """Run ``command``; Ctrl-C cancels it and surfaces as KeyboardInterrupt (exit 130, "interrupted").

    Through the loop's own signal handler, not asyncio.run's: that one wakes the loop only when the main thread
    itself is interrupted, and a SIGINT the kernel hands to another thread (aiokafka resolves names on the default
    executor's threads) left a command waiting on a silent broker for its 40 s request timeout. ``add_signal_handler``
    writes to the loop's wakeup pipe, so the cancel is seen at once whichever thread took the signal. Workers
    replace it with a graceful stop (``_stop_on_signals``)."""
    task = asyncio.current_task()
    if task is None:  # a bug: this runs as asyncio.run's main task
        raise RuntimeError("_interruptible runs outside a task")
    interrupted = asyncio.Event()

    def cancel() -> None:
        interrupted.set()
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, cancel)
    try:
        return await command
    except asyncio.CancelledError:
        if interrupted.is_set():
            raise KeyboardInterrupt from None
        raise


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


if __name__ == "__main__":
    sys.exit(main())
