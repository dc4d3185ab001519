"""Shared fixtures.

``kafka_broker`` (session) -- a :class:`harness.broker.RunningBroker`, started on first use only, so
``pytest -m "not broker"`` never starts one. Tests that use it are marked ``broker`` automatically.
Which broker, in order (details in ``harness/broker/selection.py``):

1. ``KAFKA_BOOTSTRAP_SERVERS=host:port``  use that broker ("external")
2. a Docker daemon answers                 Apache Kafka 4.x via testcontainers
3. ``java`` + ``mvn`` on PATH              Apache Kafka 4.x as a local KRaft process (jars cached under
                                           ``~/.cache/adaptlog``, or ``ADAPTLOG_KAFKA_CACHE``)
4. otherwise                               Tansu, with a warning and a line in the summary

Environment:

* ``ADAPTLOG_TEST_BROKER=auto|external|testcontainers|apache|tansu``  force one (its failure is then an error);
  ``tansu`` is how to run the broker tests against Tansu on a machine that has Java.
* ``ADAPTLOG_REQUIRE_APACHE_KAFKA=1``  falling back to Tansu fails the broker tests instead (CI sets this).

``alertmanager`` (session) -- a real Prometheus Alertmanager on loopback (harness/alertmanager/service.py: built
once from the Go module proxy and cached). Where it cannot be built or started the tests using it are skipped, unless
``ADAPTLOG_REQUIRE_ALERTMANAGER=1`` (CI sets it): then they fail.

``chromium`` (session) -- one headless Chromium driven by Selenium (harness/console.py); skipped where
Debian's chromium/chromium-driver are missing, unless ``ADAPTLOG_REQUIRE_CHROMIUM=1`` (CI sets it): then failed.

``topic_prefix`` (function) -- a unique prefix; tests create their own topics under it, so they never share
state through the session broker.

Data (module scope, as each module had its own): the real Loghub slices under ``../shared/data`` as the trainer loads
them, defined once here where modules load them the same way. A module that slices or shapes a dataset its own way
keeps that fixture, named for what it holds (``bgl_windows20_every50``, ``thunderbird_5line_slices``, ...).

``bgl_2k`` -- BGL_2k.log as labeled windows of 20 lines (100 windows).
``thunderbird_19k`` -- Thunderbird_19k as labeled windows (the loader's default size).
``hdfs_unlabeled_pool`` -- 2,000 unlabeled blocks of HDFS_2pct's train part, its test blocks and their labels (the
zero-label scorers' tests).

The summary names the broker that ran, e.g. ``broker: apache-kafka 4.1.1 (local KRaft) at 127.0.0.1:40123``.
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.broker.running import BrokerUnavailable, RunningBroker
from harness.broker.selection import start_test_broker
from harness.required import missing
from harness.streaming import DATA

if TYPE_CHECKING:
    from stream.model.detector import WindowText
    from trainer.datasets import Dataset

# Set at conftest import, before any test module can import a model hub client: tests never download models.
# (Nothing imported above touches huggingface_hub.)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_BROKER_LINES = pytest.StashKey[list[str]]()
BROKER_DIRS = ("tests/broker/", "tests/browser/")  # where the tests that use the broker live


@pytest.fixture(autouse=True)
def _root_log_level_restored() -> Iterator[None]:
    """A test that runs a CLI in-process (``stream.logs.configure``) sets the root logger's level; put it back, so
    a later test's caplog sees what it would see alone (an INFO root let a registry test capture "published"
    records when the broker tests ran first). Handlers need no care: pytest attaches its own at every phase."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


class BrokerFallbackWarning(UserWarning):
    """The tests ran against Tansu, not Apache Kafka: Kafka-only behaviour went untested."""


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[RunningBroker]:
    lines = request.config.stash.setdefault(_BROKER_LINES, [])
    try:
        selection = start_test_broker()
    except BrokerUnavailable as exc:
        reason = str(exc)
        selection = None
    if selection is None:  # failed outside the except block, so pytest shows the reason, not a chained traceback
        lines.append(f"broker: none could be started -- {reason}")
        pytest.fail(f"no Kafka broker for the tests: {reason}", pytrace=False)
    broker = selection.broker
    lines.append(f"broker: {broker.describe()}")
    lines.extend(f"broker: passed over {reason}" for reason in selection.passed_over)
    if selection.fell_back_to_tansu:
        notice = (
            f"broker tests ran against {broker.kind}, NOT Apache Kafka (idempotence, transactions and "
            "compaction are not exercised); set ADAPTLOG_REQUIRE_APACHE_KAFKA=1 to make this an error"
        )
        lines.append(f"broker: WARNING {notice}")
        warnings.warn(notice, BrokerFallbackWarning, stacklevel=1)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def alertmanager(request: pytest.FixtureRequest):
    from harness.alertmanager.service import REQUIRE_ENV, AlertmanagerUnavailable, start_alertmanager

    lines = request.config.stash.setdefault(_BROKER_LINES, [])
    try:
        am = start_alertmanager()
    except AlertmanagerUnavailable as exc:
        reason = str(exc)
        am = None
    if am is None:  # outside the except block, so pytest shows the reason, not a chained traceback
        lines.append(f"alertmanager: none could be started -- {reason}")
        missing("Alertmanager", REQUIRE_ENV, reason)
    lines.append(f"alertmanager: {am.version} (built from the Go module proxy) at {am.url}")
    try:
        yield am
    finally:
        am.stop()


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest):
    """One headless Chromium for every browser test (harness/console.py); skipped where Debian's chromium and
    chromium-driver are missing, failed instead under ADAPTLOG_REQUIRE_CHROMIUM=1 (CI sets it)."""
    from harness.console import ChromiumUnavailable, require_or_skip, start_chromium

    try:
        browser = start_chromium()
    except ChromiumUnavailable as exc:
        reason = str(exc)
        browser = None
    if browser is None:  # outside the except block, so pytest shows the reason, not a chained traceback
        require_or_skip(reason)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def topic_prefix() -> str:
    return f"t-{uuid.uuid4().hex}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # So `-m "not broker"` reliably skips everything that would start a broker, marked by hand or not.
    for item in items:
        if "kafka_broker" in getattr(item, "fixturenames", ()):
            if not item.nodeid.startswith(BROKER_DIRS):  # the xdist scheduler below keeps those on one worker
                raise pytest.UsageError(f"{item.nodeid} uses the broker: put it under one of {BROKER_DIRS}")
            item.add_marker(pytest.mark.broker)
    if getattr(config.option, "dist", "no") == "loadscope":
        items[:] = _longest_first(items)


def _longest_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The broker scope (minutes), then the modules with a test marked slow, then the rest, each module's tests in
    their own order: the scheduler below hands scopes out in this order, so the last ones to run are short and
    neither worker waits long for the other (with pytest-xdist's default, by test count, the one-test demo module
    ran last, for two minutes on one worker)."""
    slow_modules = {_module(item) for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        module = _module(item)
        return 0 if module.startswith(BROKER_DIRS) else 1 if module in slow_modules else 2

    return sorted(items, key=rank)  # stable: the order within each rank is collection order


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist loadscope`` (``make test``): each module's tests on one worker, so a module fixture (a trained
    model) is built once, not once per worker; and all of tests/broker and tests/browser as one scope, so one worker
    runs every broker test on one broker, as the session fixture promises. (``--dist loadgroup`` with marks would
    say the same, but pytest-xdist 3.8 cannot group on pytest 9.2: pytest-xdist issue #1386.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # scopes in the order _longest_first put them, not by test count

    class ModulesAndOneBroker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "broker" if module.startswith(BROKER_DIRS) else module

    return ModulesAndOneBroker(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # On a pytest-xdist worker: hand the service lines to the controller, which prints the summary
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["service_lines"] = session.config.stash.get(_BROKER_LINES, [])


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: the controller hears a worker finish
def pytest_testnodedown(node: Any, error: object) -> None:
    lines = getattr(node, "workeroutput", {}).get("service_lines", [])
    node.config.stash.setdefault(_BROKER_LINES, []).extend(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_BROKER_LINES, [])
    if lines:
        terminalreporter.section("test services (kafka broker, alertmanager)")
        for line in lines:
            terminalreporter.write_line(line, yellow="WARNING" in line or "none" in line)


@pytest.fixture(scope="session")
def hdfs_registry(tmp_path_factory: pytest.TempPathFactory):
    """A registry holding a TransLog base trained on HDFS (see harness/inference.py); trained once a session."""
    from harness.inference import train_hdfs_registry

    return train_hdfs_registry(shared_by_workers(tmp_path_factory) / "hdfs-registry")


def shared_by_workers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's temporary directory that all its pytest-xdist workers share (each has its own ``popen-gwN`` under
    it), so a session fixture that saves what it built there builds it once per run, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def logllm_decoder_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the SmolLM2 GGUF's dequantized export is kept (``load_decoder``'s ``cache_dir``): pytest's cache, so
    later runs read it back too; a directory for this session under ``-p no:cacheprovider``."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("logllm-decoder") if cache is not None else tmp_path_factory.mktemp("logllm-decoder")


@pytest.fixture(scope="session")
def smollm2_dir(logllm_decoder_cache: Path) -> Path:
    """SmolLM2-135M as a local model directory: the packaged GGUF read once and exported where ``load_decoder``'s
    cache puts it. Reading the GGUF costs 15-60 s on 2 cores, this directory about a second; tests that need a
    LogLLM but not the GGUF path itself pass it as the config's ``decoder`` (the same float32 weights, the same
    tokenizer). tests/unit/test_model_offline.py and tests/unit/test_model_logllm.py keep loading ``decoder=""``."""
    from stream.model.decoder import load_decoder, smollm2_gguf, weights_sha256

    cache = logllm_decoder_cache
    load_decoder("", cache_dir=cache)  # exports on the first call, ever; a quick read after that
    gguf = smollm2_gguf()
    exported = cache / f"{gguf.stem}-{weights_sha256(gguf)[:16]}"  # load_decoder's naming of its export
    if not (exported / "config.json").is_file():
        pytest.fail(f"the SmolLM2 export is not where load_decoder's cache keeps it: {exported}", pytrace=False)
    return exported


@pytest.fixture(scope="module")
def bgl_2k() -> Dataset:
    """BGL_2k.log as labeled windows of 20 lines (100 windows)."""
    from trainer.datasets import load_labeled_lines

    return load_labeled_lines(DATA / "bgl" / "BGL_2k.log", system="bgl")


@pytest.fixture(scope="module")
def thunderbird_19k() -> Dataset:
    """Thunderbird_19k as labeled windows (the loader's default size)."""
    from trainer.datasets import load_labeled_lines

    return load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system="thunderbird")


@pytest.fixture(scope="module")
def hdfs_unlabeled_pool() -> tuple[list[WindowText], list[WindowText], list[int]]:
    """HDFS_2pct as the transfer bench reads it (LogTransfer's budget, seed 0's split): 2,000 blocks of the train part
    drawn at random as unlabeled traffic (labels not returned), then the test part's blocks and their labels."""
    import random

    from trainer.datasets import default_split
    from trainer.results import BUDGETS, load_dataset
    from trainer.train import inputs

    dataset = load_dataset("hdfs", BUDGETS["logtransfer"])
    split = default_split(dataset, seed=0)
    pool = sorted(random.Random("unlabeled/0").sample(list(split.train), 2000))
    unlabeled, _ = inputs(dataset, pool)
    test, labels = inputs(dataset, split.test)
    return unlabeled, test, labels
