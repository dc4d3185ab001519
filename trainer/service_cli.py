"""``adaptlog-train serve | status | rollback``: the feedback service and its operations.

Settings come from the environment like every adaptlog process (``ADAPTLOG_TRAINER__REGISTRY``, ...); ``--registry``
and ``--label-db`` override them. Every import of the service (torch, aiokafka) happens in the command that runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from typing import TYPE_CHECKING

from stream.errors import ConfigError

if TYPE_CHECKING:  # the commands import these when they run: building the parser (--help) imports no torch
    from stream.model.registry import Registry
    from stream.settings import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    srv = sub.add_parser("serve", help="keep labeled windows, retrain adapters from feedback, publish the better ones")
    srv.set_defaults(run=run_serve)
    srv.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one object a line")
    st = sub.add_parser("status", help="targets, serving versions, label counts, last metrics, next retrain")
    st.set_defaults(run=run_status)
    st.add_argument("--json", action="store_true", help="one JSON object instead of text")
    rb = sub.add_parser("rollback", help="serve an earlier adapter version of a target (announced like a publish)")
    rb.set_defaults(run=run_rollback)
    rb.add_argument("target", help="the target system whose adapter to serve")
    rb.add_argument("version", help="a published adapter version of the target, e.g. v0002")
    for command in (srv, st, rb):
        command.add_argument("--registry", type=str, help="model registry directory (default: trainer.registry)")
        command.add_argument("--label-db", type=str, help="label store file (default: <registry>/labels.sqlite)")


def _settings(args: argparse.Namespace) -> Settings:
    from stream.settings import load_settings

    settings = load_settings()
    update = {}
    if args.registry:
        update["registry"] = args.registry
    if args.label_db:
        update["label_db"] = args.label_db
    if update:
        trainer = settings.trainer.model_validate({**settings.trainer.model_dump(), **update})
        settings = settings.model_copy(update={"trainer": trainer})
    return settings


def run_serve(args: argparse.Namespace) -> int:
    from stream.logs import configure as configure_logging
    from trainer.feedback.service import serve

    configure_logging("INFO", args.log_format)
    settings = _settings(args)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        counts = await serve(settings, stop)
        logging.getLogger("adaptlog").info("trainer stopped: %s", dict(sorted(counts.items())))

    asyncio.run(main())
    return 0


def status(settings: Settings) -> dict:
    from stream.model.registry import name_problem
    from trainer.feedback.retrain import next_retrain
    from trainer.feedback.service import label_db, open_registry, policy_of
    from trainer.feedback.store import LabelStore

    registry, base = open_registry(settings)
    policy = policy_of(settings)
    now = int(time.time() * 1000)
    targets = {}
    with LabelStore(label_db(settings)) as store:
        for system in sorted(set(store.systems()) | set(registry.names("adapter"))):
            # a stream system the registry cannot name has labels but can never have an adapter (nor a pointer)
            pointer = registry.pointer("adapter", system) if name_problem(system) is None else None
            serving = registry.serving("adapter", system) if pointer is not None else None
            counts = store.counts(system)
            history = store.history(system)
            last = history[-1] if history else None
            upcoming = next_retrain(policy, counts, store.oldest_unused_ms(system), last, now)
            targets[system] = {
                "serving": pointer.version if pointer else None,
                "serving_since": pointer.since if pointer else None,
                # the rule that set the serving adapter's threshold; None before manifests recorded one
                "threshold_rule": serving.threshold_rule if serving else None,
                # zero-shot (no adapter), zero-label (no labeled anomaly behind it) or labeled
                "supervision": serving.supervision if serving else "zero-shot",
                "labels": counts,
                "last_retrain": last,
                "next_retrain": upcoming,
            }
        pending = store.pending_count()
    return {"base": base, "registry": str(registry.root), "pending_labels": pending, "targets": targets}


def _last_retrain_text(last: dict) -> str:
    if not last:
        return "never retrained"
    if last.get("failed"):
        return f"last retrain: failed ({last.get('error')})"
    if "rollback" in last:
        return f"last change: rollback to {last['rollback']}"
    return (
        f"last retrain: {'published ' + str(last.get('version')) if last.get('published') else 'rejected'}, "
        f"held-out F1 {last.get('challenger', {}).get('f1', float('nan')):.3f} vs champion "
        f"{last.get('champion', {}).get('f1', float('nan')):.3f}"
    )


def run_status(args: argparse.Namespace) -> int:
    report = status(_settings(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"base {report['base']} in {report['registry']}; {report['pending_labels']} labels wait for their window")
    for system, entry in report["targets"].items():
        labels = entry["labels"]
        verdict = _last_retrain_text(entry["last_retrain"] or {})
        rule = f" (threshold: {entry['threshold_rule']})" if entry.get("threshold_rule") else ""
        serving = entry["serving"] or "zero-shot"
        if entry["serving"] and entry.get("supervision"):
            serving += f" {entry['supervision']}"
        print(
            f"  {system:<12} serving {serving}{rule}; {labels['total']} labels "
            f"({labels['anomalous']} anomalous, {labels['unused']} new); {verdict}; next: {entry['next_retrain']}"
        )
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from stream.pipeline.kafka_clients import make_producer
    from trainer.feedback.service import announce, label_db, open_registry
    from trainer.feedback.store import LabelStore

    settings = _settings(args)
    registry = open_registry(settings)[0]
    _check_rollback(registry, args.target, args.version)
    pointer = registry.set_serving("adapter", args.target, args.version, reason="rollback")
    with LabelStore(label_db(settings)) as store:
        store.record_retrain(
            args.target, {"at_ms": int(time.time() * 1000), "rollback": pointer.version, "from": pointer.previous}
        )

    async def tell() -> None:
        producer = make_producer(settings)
        await producer.start()
        try:
            await announce(producer, settings, args.target, pointer.version, "rollback")
        finally:
            await producer.stop()

    asyncio.run(tell())
    print(
        f"{args.target} serves {pointer.version} (was {pointer.previous}); announced on {settings.topics.model_updates}"
    )
    return 0


def _check_rollback(registry: Registry, target: str, version: str) -> None:
    """A target or version the registry does not have is a usage error naming it (exit 2), before anything moves."""
    from stream.model.registry import name_problem

    problem = name_problem(target)
    if problem is not None:
        raise ConfigError("TARGET", problem)
    published = [manifest.version for manifest in registry.versions("adapter", target)]
    if version not in published:
        known = ", ".join(v for v in published if v) or "none"
        raise ConfigError("VERSION", f"{target} has no sound adapter {version}; published: {known}")
