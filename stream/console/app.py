"""Wiring: the Starlette app over a view, and ``serve`` (feeds + uvicorn on one event loop) for ``adaptlog console``.

``build_app`` takes its parts, so a benchmark or a test can serve a view it filled itself; ``serve`` is the
process: it starts the Kafka feeds, then uvicorn, and on stop sends the labels still in their undo window.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import uvicorn
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stream.console.access import Access
from stream.console.feeds import Feeds
from stream.console.models import Models
from stream.console.outbox import Outbox
from stream.console.pages import Pages
from stream.console.view import ConsoleView
from stream.settings import Settings

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["short"] = lambda text, n=12: text if len(text) <= n else text[: n - 1] + "…"
    return env


def build_app(pages: Pages) -> Starlette:
    g = pages.guarded

    async def home(_request: object) -> Response:
        return RedirectResponse("/incidents", status_code=303)

    routes = [
        Route("/", home),
        Route("/healthz", pages.healthz),
        Route("/readyz", pages.readyz),
        Route("/login", pages.login_page, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/incidents", g(pages.incidents)),
        Route("/incidents/{alert_id}", g(pages.incident)),
        Route("/label", g(pages.label), methods=["POST"]),
        Route("/undo", g(pages.undo), methods=["POST"]),
        Route("/systems", g(pages.systems)),
        Route("/systems/{name}", g(pages.system)),
        Route("/systems/{name}/rollback", g(pages.rollback), methods=["POST"]),
        Route("/systems/{name}/templates", g(pages.templates_page)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes)


def make_pages(settings: Settings, view: ConsoleView, feeds: Feeds | None, outbox: Outbox) -> Pages:
    c = settings.console
    return Pages(c, view, outbox, Access(c), Models(c.registry or settings.inference.registry), feeds, templates())


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the console until ``stop`` is set: feeds in, pages out, labels flushed."""
    c = settings.console
    view = ConsoleView(c.max_incidents, c.max_windows, c.max_templates)
    outbox = Outbox(c.undo_s)
    feeds = Feeds(settings, view, outbox)
    pages = make_pages(settings, view, feeds, outbox)  # ConfigError (no way in, bad tokens file) before any I/O
    server = uvicorn.Server(uvicorn.Config(build_app(pages), host=c.host, port=c.port, log_config=None))
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # the CLI owns the signals
    await feeds.start()
    tasks = [
        asyncio.create_task(feeds.consume(stop), name="console-consume"),
        asyncio.create_task(feeds.flush(stop), name="console-flush"),
        asyncio.create_task(server.serve(), name="console-http"),
    ]
    log.info("console on http://%s:%d reading %s", c.host, c.port, ", ".join(feeds.topics()))
    try:
        done, _ = await asyncio.wait([*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in tasks and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await feeds.stop()
