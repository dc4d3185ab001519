"""The operator console in a real headless Chromium, on a real broker, with real inference and a real retrain.

A labeled Thunderbird slice goes through a real InferenceWorker (a small TransLog base at threshold 0: every window
is anomalous, so every window is explained and alerted); the console reads the topics; an operator signs in, sees
the incidents, labels one window a false alarm in the page; the record is read back from the feedback topic; the
trainer's feedback service retrains Thunderbird's adapter from the labels and publishes it; the system page shows
the new version and its held-out F1. A viewer can read but not label. The three pages' screenshots go to
docs/images (docs/console.md shows them).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from harness.broker.running import RunningBroker
from harness.console import OPERATOR_TOKEN, VIEWER_TOKEN, running_console, write_tokens
from harness.inference import produce_windows, publish_nudged_adapter, small_registry, stream_window
from harness.streaming import DATA, count_records, free_port, read_topic, settings_for
from stream.inference.model_host import ModelHost
from stream.inference.worker import InferenceWorker
from stream.model.registry import Registry
from stream.pipeline.kafka_clients import ensure_topics, inference_topic_specs, make_producer, trainer_topic_specs
from stream.records import ANOMALOUS, NORMAL, ModelUpdate, Window, encode
from stream.settings import Settings
from trainer.datasets import load_labeled_lines

pytestmark = [pytest.mark.browser, pytest.mark.broker, pytest.mark.slow]


def waiting(browser: WebDriver, seconds: float) -> WebDriverWait:
    """A wait that also retries when an element it found was replaced meanwhile: a form's POST or a refresh
    navigates while the condition reads the old page (a stale element, as a CI run once saw after a rollback)."""
    return WebDriverWait(browser, seconds, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


SYSTEM = "thunderbird"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@functools.cache
def labeled_slice() -> tuple[Window, ...]:
    """100 windows of 20 Thunderbird lines around where its anomalies begin (window 478): both labels in it."""
    dataset = load_labeled_lines(DATA / "thunderbird" / "Thunderbird_19k.log.gz", system=SYSTEM)
    return tuple(
        stream_window(SYSTEM, list(w.templates), list(w.masked), ANOMALOUS if w.label else NORMAL, key=f"w{i}")
        for i, w in enumerate(dataset.windows[440:540], start=440)
    )


async def replay_through_inference(settings: Settings, windows: list[Window]) -> int:
    """Windows to the topic, a real inference worker until the alerts stop growing; returns the alert count."""
    await ensure_topics(settings, [*inference_topic_specs(settings), *trainer_topic_specs(settings)])
    await produce_windows(settings, windows)
    stop = asyncio.Event()
    worker = InferenceWorker(settings, ModelHost(Registry(settings.inference.registry)))
    task = asyncio.create_task(worker.run(stop))
    try:
        seen, steady_since, deadline = -1, time.monotonic(), time.monotonic() + 120
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            now = await count_records(settings, settings.topics.alerts)
            if now != seen:
                seen, steady_since = now, time.monotonic()
            elif now and time.monotonic() - steady_since > 3:
                return now
        raise AssertionError(f"inference did not settle in 120 s ({seen} alerts)")
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@pytest.fixture(scope="module")
def stack(kafka_broker: RunningBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    root = tmp_path_factory.mktemp("console")
    registry = root / "registry"
    small_registry(registry, threshold=0.0, max_len=20)
    settings = settings_for(
        kafka_broker.bootstrap,
        f"console-{root.name}",
        kafka_broker.supports_idempotence,
        inference={"registry": str(registry), "max_wait_ms": 50},
        trainer={"registry": str(registry), "base": "hdfs", "min_new_labels": 10, "min_per_class": 3,
                 "check_interval_s": 1, "min_unlabeled": 0, "threads": 2},
        console={"port": free_port(), "tokens_file": str(write_tokens(root / "tokens.json")), "cookie_secure": False,
                 "undo_s": 1.0, "registry": str(registry)},
    )  # fmt: skip
    asyncio.run(replay_through_inference(settings, list(labeled_slice())))
    with running_console(settings) as url:
        yield settings, url


def sign_in(browser, url: str, token: str) -> None:
    browser.delete_all_cookies()
    browser.get(url + "/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "who"))


def shoot(browser, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(IMAGES / f"console-{name}.png"))


def test_an_operator_labels_a_false_alarm_and_sees_the_retrained_version(stack, chromium) -> None:
    settings, url = stack
    alerts = asyncio.run(read_topic(settings, settings.topics.alerts, quiet_s=1))
    incidents = {a["alert_id"] for a in alerts}
    sign_in(chromium, url, OPERATOR_TOKEN)
    chromium.get(url + f"/incidents?system={SYSTEM}")
    rows = waiting(chromium, 30).until(
        lambda b: (
            (b.refresh() or True)
            and len(b.find_elements(By.CSS_SELECTOR, "tr.incident")) == min(50, len(incidents))
            and b.find_elements(By.CSS_SELECTOR, "tr.incident")
        )
    )
    shown = {row.get_attribute("data-alert-id") for row in rows}
    assert shown <= incidents and shown
    shoot(chromium, "incidents")

    rows[0].find_element(By.CSS_SELECTOR, "td a").click()
    window = waiting(chromium, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "section.window"))[0]
    window_id = window.get_attribute("data-window-id")
    assert chromium.find_elements(By.CSS_SELECTOR, "#explanation code")  # templates with weights
    assert (
        "against" in chromium.find_element(By.ID, "score").text
        and "zero-shot" in chromium.find_element(By.ID, "model").text
    )
    window.find_element(By.CSS_SELECTOR, "button.false").click()
    assert "False alarm" in waiting(chromium, 10).until(lambda b: b.find_element(By.ID, "pending")).text

    feedback = asyncio.run(read_topic(settings, settings.topics.feedback, until=1, timeout_s=30))
    assert [(r["window_id"], r["verdict"], r["by"], r["kind"]) for r in feedback] == [
        (window_id, "false_positive", "alice", "alert")
    ]
    assert abs(feedback[0]["at_ms"] - time.time() * 1000) < 120_000
    waiting(chromium, 30).until(
        lambda b: (b.refresh() or True) and "labeled false alarm by alice" in b.find_element(By.CSS_SELECTOR,
            f'section[data-window-id="{window_id}"]').text
    )  # fmt: skip
    shoot(chromium, "incident")

    # the other windows' ground truth, as other operators would send it; then the trainer retrains from all of them
    truths = [w for w in labeled_slice() if w.window_id != window_id]
    asyncio.run(send_labels(settings, truths))
    asyncio.run(retrain_once(settings))
    chromium.get(url + f"/systems/{SYSTEM}")
    version = waiting(chromium, 60).until(
        lambda b: (b.refresh() or True) and b.find_elements(By.CSS_SELECTOR, '#versions tr[data-version="v0001"]')
    )[0]
    f1 = float(version.find_element(By.CSS_SELECTOR, "td.f1").text)
    assert 0 < f1 <= 1
    assert chromium.find_elements(By.CSS_SELECTOR, f'#f1-plot circle[data-version="v0001"][data-f1="{f1:.3f}"]')
    assert "v0001" in chromium.find_element(By.ID, "serving").text
    assert "published v0001" in chromium.find_element(By.ID, "last-retrain").text  # the trainer's report
    assert "none seen" in chromium.find_element(By.ID, "last-failure").text
    anomalous = sum(w.label == ANOMALOUS for w in truths)
    received = f"{anomalous} anomalous (real problems), {len(truths) - anomalous + 1} normal (false alarms)"
    waiting(chromium, 30).until(lambda b: (b.refresh() or True) and received in b.find_element(By.ID, "labels").text)
    # the trainer's schedule after its retrain: every label used, so the next one waits for min_new_labels (10)
    waiting(chromium, 30).until(
        lambda b: (b.refresh() or True) and "after 10 more labels" in b.find_element(By.ID, "next-retrain").text
    )
    shoot(chromium, "system")
    chromium.get(url + f"/systems/{SYSTEM}/templates")
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#templates tbody tr")) > 5
    shoot(chromium, "templates")


async def send_labels(settings: Settings, windows: list[Window]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for window in windows:
            record = {"kind": "label", "window_id": window.window_id, "label": window.label, "by": "truth"}
            await producer.send(settings.topics.feedback, json.dumps(record).encode(), key=window.window_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def retrain_once(settings: Settings) -> None:
    """The trainer's feedback service until it announces an adapter on model-updates (or 240 s pass)."""
    from trainer.feedback.service import serve

    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not task.done():
            await asyncio.sleep(2)
            updates = await read_topic(settings, settings.topics.model_updates, quiet_s=0.5, timeout_s=10)
            if any(update["kind"] == "adapter" for update in updates):
                return
        raise AssertionError("the trainer announced no adapter in 240 s")
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)


def test_a_viewer_reads_but_cannot_label_and_a_change_needs_the_csrf_token(stack, chromium) -> None:
    settings, url = stack
    sign_in(chromium, url, VIEWER_TOKEN)
    chromium.get(url + "/incidents")
    row = waiting(chromium, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "tr.incident"))[0]
    alert_id = row.get_attribute("data-alert-id")
    assert not chromium.find_elements(By.CSS_SELECTOR, "form.label-form")  # no buttons for a viewer
    before = asyncio.run(count_records(settings, settings.topics.feedback))
    # the viewer forges the form the operator would send, with the viewer's own valid CSRF token
    status = chromium.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const csrf = document.querySelector('meta[name=csrf]').content;
        fetch('/label', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},
          body: new URLSearchParams({csrf: csrf, verdict: 'false', scope: 'incident', alert_id: arguments[0]})})
          .then(r => done(r.status));""",
        alert_id,
    )
    assert status == 403
    assert chromium.execute_script("return document.cookie") == ""  # the sign-in cookie is HttpOnly
    # the operator's own request without the CSRF token is refused too
    assert post(url, OPERATOR_TOKEN, {"verdict": "false", "scope": "incident", "alert_id": alert_id}) == 403
    assert post(url, None, {"verdict": "false", "scope": "incident", "alert_id": alert_id}) == 401
    time.sleep(settings.console.undo_s + 1.5)  # longer than a label waits before it is sent
    assert asyncio.run(count_records(settings, settings.topics.feedback)) == before


def post(url: str, token: str | None, form: dict[str, str]) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/label", body, headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_an_operator_rolls_back_after_a_confirmation_and_it_is_announced(stack, chromium) -> None:
    settings, url = stack
    registry = Registry(settings.console.registry)
    base = registry.serving("base", "hdfs")
    for seed in (1, 2):
        publish_nudged_adapter(registry, base, "edge", seed=seed)  # v0001, then v0002 serving
    # what the trainer publishes when it serves a version (a record without its fields is skipped, and logged)
    asyncio.run(send_update(settings, ModelUpdate("edge", "v0002", "test", at_ms=int(time.time() * 1000))))
    sign_in(chromium, url, OPERATOR_TOKEN)
    chromium.get(url + "/systems/edge")
    link = waiting(chromium, 30).until(
        lambda b: (b.refresh() or True) and b.find_elements(By.CSS_SELECTOR, 'tr[data-version="v0001"] a.rollback')
    )[0]
    link.click()  # the first click only asks
    confirm = waiting(chromium, 10).until(lambda b: b.find_element(By.CSS_SELECTOR, "form.confirm"))
    assert registry.pointer("adapter", "edge").version == "v0002"
    assert "Serve v0001 instead of v0002?" in confirm.text
    confirm.find_element(By.CSS_SELECTOR, "button.danger").click()
    waiting(chromium, 10).until(lambda b: "v0001" in b.find_element(By.ID, "serving").text)
    pointer = registry.pointer("adapter", "edge")
    assert (pointer.version, pointer.previous, pointer.reason) == ("v0001", "v0002", "rollback by alice (console)")
    updates = asyncio.run(read_topic(settings, settings.topics.model_updates, quiet_s=1))
    rollbacks = [u for u in updates if u.get("target") == "edge" and u.get("reason") == "rollback"]
    assert [(u["version"], u["from"], u["by"]) for u in rollbacks] == [("v0001", "v0002", "alice")]


async def send_update(settings: Settings, update: ModelUpdate) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.model_updates, encode(update), key=update.target.encode())
    finally:
        await producer.stop()
