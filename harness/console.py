"""The console's browser tests' parts: one headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) per session, and a console served from a thread of this process on a free port.

Where Chromium or its driver is missing the browser tests skip, unless ``ADAPTLOG_REQUIRE_CHROMIUM=1`` (.ci/run
sets it): then they fail, as the Alertmanager tests do under ADAPTLOG_REQUIRE_ALERTMANAGER.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stream.settings import Settings

REQUIRE_ENV = "ADAPTLOG_REQUIRE_CHROMIUM"
OPERATOR_TOKEN = "operator-token-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789ab"


class ChromiumUnavailable(RuntimeError):
    pass


def start_chromium():  # -> selenium.webdriver.Chrome
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        raise ChromiumUnavailable(
            "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as exc:
        raise ChromiumUnavailable(f"chromium would not start: {exc.msg}") from None


def write_tokens(path: Path) -> Path:
    path.write_text(
        json.dumps(
            [
                {"user": "alice", "role": "operator", "token": OPERATOR_TOKEN},
                {"user": "victor", "role": "viewer", "token": VIEWER_TOKEN},
            ]
        )
    )
    return path


@contextmanager
def running_console(settings: Settings) -> Iterator[str]:
    """``adaptlog console``'s ``serve`` in a thread with its own event loop; yields the base URL once it answers."""
    from stream.console.app import serve

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(serve(settings, stop))
        except BaseException as exc:  # reported to the test below, not lost in the thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="console", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.console.port}"
    deadline = time.monotonic() + 60
    while True:
        if failure:
            raise RuntimeError(f"the console did not start: {failure[0]!r}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        if failure:
            raise failure[0]


def require_or_skip(reason: str) -> None:
    from harness.required import missing

    missing("Chromium", REQUIRE_ENV, reason)
