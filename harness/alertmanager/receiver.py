"""A real HTTP receiver for notifier tests: stdlib ``http.server`` on a loopback port, in a thread (a process edge).

It answers each POST from a script (``answers``: statuses for successive requests, then ``default``), or 400 when
``refuse`` says so of the body, and records every request with the status it got, so a test can tell what was
acknowledged from what was only attempted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GATE_WAIT_S = 30.0


@dataclass
class Received:
    body: Any
    headers: dict[str, str]
    status: int  # what the receiver answered


@dataclass
class Receiver:
    url: str = ""
    answers: list[int] = field(default_factory=list)  # consumed one per request
    default: int = 200
    delay_s: float = 0.0  # a slow receiver: each answer waits this long
    # A closed gate holds every answer until it opens (at most GATE_WAIT_S), so a test can keep a sender busy
    # for as long as it takes, say, a consumer group to rebalance, instead of guessing a delay.
    gate: threading.Event = field(default_factory=threading.Event)
    refuse: Callable[[Any], bool] | None = None
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledged(self) -> list[Any]:
        with self.lock:
            return [r.body for r in self.requests if 200 <= r.status < 300]

    def _answer(self, body: Any, headers: dict[str, str]) -> int:
        with self.lock:
            if self.refuse is not None and self.refuse(body):
                status = 400
            else:
                status = self.answers.pop(0) if self.answers else self.default
            self.requests.append(Received(body, headers, status))
            return status


@contextmanager
def http_receiver(**script: Any) -> Iterator[Receiver]:
    receiver = Receiver(**script)
    receiver.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(receiver.delay_s)
            receiver.gate.wait(GATE_WAIT_S)
            status = receiver._answer(json.loads(raw), dict(self.headers.items()))
            reply = b"ok" if status < 300 else f"scripted failure {status}".encode()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
