"""The console's routes. Every handler is async, so it runs on the event loop that feeds the view (no thread sees
the view change under it). Reads need any signed-in role; POSTs go through ``Access.check_change`` (role, origin,
CSRF). Bad input (a filter, a version) is a 400 page that says what was wrong."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from stream.console.access import COOKIE, Access, Forbidden, Principal
from stream.console.feeds import Feeds
from stream.console.models import Models
from stream.console.outbox import VERDICTS, Outbox, UndoError
from stream.console.plot import f1_svg
from stream.console.view import ConsoleView, IncidentFilter
from stream.errors import ModelError, RequestError
from stream.records import SEVERITIES, STATUSES, rfc3339
from stream.settings import ConsoleSettings

PAGE_SIZE = 50
MAX_FORM_BYTES = 64 * 1024


class BadInput(RequestError):
    """A request parameter the console cannot use; the message is shown."""


def parse_time(value: str, name: str) -> int | None:
    """'' -> None; epoch milliseconds or ISO 8601 (a browser's datetime-local, read as UTC) -> epoch ms."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{name}: {value!r} is neither epoch milliseconds nor an ISO 8601 time") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


async def read_form(request: Request) -> dict[str, str]:
    # urlencoded forms only (all the console sends): parsed here, so Starlette needs no multipart package
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadInput(f"a form is at most {MAX_FORM_BYTES} bytes")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def safe_back(value: str, default: str) -> str:
    """Only a path on this site (never //host or a scheme): an open redirect is a phishing tool."""
    return value if value.startswith("/") and not value.startswith("//") else default


@dataclass
class Pages:
    settings: ConsoleSettings
    view: ConsoleView
    outbox: Outbox
    access: Access
    models: Models
    feeds: Feeds | None
    templates: Environment

    def render(
        self, request: Request, who: Principal, template: str, /, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            who=who,
            csrf=self.access.csrf_token(who),
            pending=self.outbox.of_user(who.user),
            now_ms=int(time.time() * 1000),
            path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            systems=self.view.system_names(),
            rfc3339=rfc3339,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def guarded(self, handler: Callable[[Request, Principal], Awaitable[Response]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            who = self.access.principal(request)
            if who is None:
                if request.headers.get("authorization") or request.method != "GET":
                    return PlainTextResponse("sign in first (a bearer token or the proxy)", status_code=401)
                return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)
            try:
                return await handler(request, who)
            except Forbidden as exc:
                return self.render(request, who, "error.html", status=403, message=str(exc))
            except BadInput as exc:
                return self.render(request, who, "error.html", status=400, message=str(exc))

        return endpoint

    async def login_page(self, request: Request) -> Response:
        html = self.templates.get_template("login.html").render(next=request.query_params.get("next", "/"), error="")
        return HTMLResponse(html)

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        who = self.access.by_token(form.get("token", "").strip())
        if who is None:
            html = self.templates.get_template("login.html").render(next=form.get("next", "/"), error="unknown token")
            return HTMLResponse(html, status_code=401)
        response = RedirectResponse(safe_back(form.get("next", "/"), "/incidents"), status_code=303)
        response.set_cookie(
            COOKIE, form["token"].strip(), httponly=True, samesite="strict", secure=self.settings.cookie_secure
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def incidents(self, request: Request, who: Principal) -> Response:
        q = request.query_params
        try:
            wanted = IncidentFilter(
                status=q.get("status", ""),
                system=q.get("system", ""),
                severity=q.get("severity", ""),
                since_ms=parse_time(q.get("since", ""), "since"),
                until_ms=parse_time(q.get("until", ""), "until"),
            )
            page = int(q.get("page", "1") or 1)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        if page < 1:
            raise BadInput("page must be 1 or more")
        rows, total = self.view.select(wanted, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        pages = max(1, -(-total // PAGE_SIZE))
        kept = [(k, v) for k, v in q.multi_items() if k != "page"]
        link = lambda n: "?" + urlencode([*kept, ("page", str(n))])  # noqa: E731 -- one line, used twice
        return self.render(
            request, who, "incidents.html", rows=rows, total=total, page=page, pages=pages, q=dict(q),
            newer=link(page - 1) if page > 1 else "", older=link(page + 1) if page < pages else "",
            statuses=STATUSES, severities=SEVERITIES, labels=self.view.labels,
        )  # fmt: skip

    async def incident(self, request: Request, who: Principal) -> Response:
        alert_id = request.path_params["alert_id"]
        incident = self.view.incidents.get(alert_id)
        if incident is None:
            raise BadInput(f"no incident {alert_id} in the console's view (resolved long ago, or not yet seen)")
        windows = [(window_id, self.view.windows.get(window_id)) for window_id in incident.window_ids]
        return self.render(request, who, "incident.html", incident=incident, windows=windows, labels=self.view.labels)

    async def label(self, request: Request, who: Principal) -> Response:
        form = await read_form(request)
        self.access.check_change(request, who, form)
        verdict = VERDICTS.get(form.get("verdict", ""))
        if verdict is None:
            raise BadInput(f"verdict must be one of {sorted(VERDICTS)}, not {form.get('verdict')!r}")
        scope, alert_id = form.get("scope", ""), form.get("alert_id") or None
        incident = self.view.incidents.get(alert_id or "")
        if scope == "incident":
            if incident is None:
                raise BadInput(f"no incident {alert_id!r} in the console's view")
            window_ids, what = list(incident.window_ids), f"incident {incident.alert_id[:8]} ({incident.system})"
        elif scope == "window":
            window_id = form.get("window_id", "")
            if incident is None or window_id not in incident.window_ids:
                raise BadInput(f"window {window_id!r} is not one of incident {alert_id!r}'s")
            window_ids, what = [window_id], f"window {window_id[:8]}"
        elif scope == "template":
            system, template = form.get("system", ""), form.get("template", "")
            window_ids, what = self.view.windows_with_template(system, template), f"template {template!r} ({system})"
        else:
            raise BadInput(f"scope must be incident, window or template, not {scope!r}")
        try:
            self.outbox.add(who.user, verdict, window_ids, what, int(time.time() * 1000), alert_id)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        return RedirectResponse(safe_back(form.get("back", ""), "/incidents"), status_code=303)

    async def undo(self, request: Request, who: Principal) -> Response:
        form = await read_form(request)
        self.access.check_change(request, who, form)
        try:
            self.outbox.undo(form.get("label_id", ""), who.user)
        except UndoError as exc:
            raise BadInput(str(exc)) from None
        return RedirectResponse(safe_back(form.get("back", ""), "/incidents"), status_code=303)

    async def systems(self, request: Request, who: Principal) -> Response:
        return self.render(request, who, "systems.html", states=self.view.systems)

    async def system(self, request: Request, who: Principal) -> Response:
        name = request.path_params["name"]
        if name not in self.view.systems:
            raise BadInput(f"no system {name!r} in the console's view")
        try:
            model = self.models.state(name)
        except ModelError as exc:
            model, problem = None, str(exc)
        else:
            problem = ""
        plot = f1_svg(model.versions) if model is not None else ""
        return self.render(
            request, who, "system.html", name=name, state=self.view.systems[name], model=model, plot=plot,
            problem=problem, confirm=request.query_params.get("rollback", ""),
        )  # fmt: skip

    async def rollback(self, request: Request, who: Principal) -> Response:
        name = request.path_params["name"]
        form = await read_form(request)
        self.access.check_change(request, who, form)
        version = form.get("version", "")
        if form.get("confirm") != "yes":
            raise BadInput("a rollback needs its confirmation step (confirm=yes)")
        try:
            previous = self.models.rollback(name, version, who.user)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        if self.feeds is not None:
            await self.feeds.announce(name, version, who.user, previous)
        return RedirectResponse(f"/systems/{name}", status_code=303)

    async def templates_page(self, request: Request, who: Principal) -> Response:
        name = request.path_params["name"]
        stats = self.view.templates_of(name)
        return self.render(request, who, "templates.html", name=name, stats=stats[:1000], total=len(stats))

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        """Ready once the feeds run: before that every page would be empty, which reads as "no incidents"."""
        if self.feeds is not None and not self.feeds.started:
            return PlainTextResponse("reading the topics", status_code=503)
        return PlainTextResponse("ready")
