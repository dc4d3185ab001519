"""Who is asking, what they may do, and CSRF protection of every change.

Two ways in (``ConsoleSettings``): bearer tokens (a file of user, role, token; a browser signs in once and keeps the
token in an HttpOnly, SameSite=Strict cookie) and trusted proxy headers (an OIDC proxy in front names the user and
groups; only believed from the configured proxy addresses, since anyone can send a header). Roles: ``operator``
labels and rolls back, ``viewer`` reads.

CSRF: every form that changes something carries ``csrf``, an HMAC of the user and role under the process's secret;
a POST without the right one is refused (403), as is a POST whose Origin is another site. A cross-site page can
neither read the token (same-origin policy) nor send the cookie (SameSite=Strict): either defence alone suffices.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request

from stream.errors import ConfigError, RequestError
from stream.settings import ConsoleSettings

OPERATOR, VIEWER = "operator", "viewer"
ROLES = (OPERATOR, VIEWER)
COOKIE = "adaptlog_console"


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: str

    @property
    def can_change(self) -> bool:
        return self.role == OPERATOR


class Forbidden(RequestError):
    """A request the asker may not make (role, CSRF, origin); the message is shown to them."""


def load_tokens(path: Path) -> dict[str, Principal]:
    """token -> principal from a JSON list of {user, role, token}; ConfigError naming the problem."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("console.tokens_file", f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError("console.tokens_file", f"{path} is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ConfigError("console.tokens_file", f"{path} must hold a JSON list of {{user, role, token}}")
    tokens: dict[str, Principal] = {}
    for index, entry in enumerate(entries):
        where = f"{path} entry {index}"
        if not isinstance(entry, dict) or set(entry) != {"user", "role", "token"}:
            raise ConfigError("console.tokens_file", f"{where}: needs exactly user, role and token")
        user, role, token = entry["user"], entry["role"], entry["token"]
        if not isinstance(user, str) or not user.strip():
            raise ConfigError("console.tokens_file", f"{where}: user must be a non-empty string")
        if role not in ROLES:
            raise ConfigError("console.tokens_file", f"{where}: role must be one of {ROLES}, not {role!r}")
        if not isinstance(token, str) or len(token) < 16:
            raise ConfigError("console.tokens_file", f"{where}: a token must be a string of 16 or more characters")
        if token in tokens:
            raise ConfigError("console.tokens_file", f"{where}: the same token is given twice")
        tokens[token] = Principal(user, role)
    return tokens


class Access:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.tokens = load_tokens(settings.tokens_file) if settings.tokens_file is not None else {}
        try:
            self.proxies = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in settings.trusted_proxies)
        except ValueError as exc:
            raise ConfigError("console.trusted_proxies", str(exc)) from None
        if not self.tokens and not self.proxies:
            raise ConfigError("console", "no way in: set console.tokens_file and/or console.trusted_proxies")
        secret = settings.csrf_secret.get_secret_value() if settings.csrf_secret else secrets.token_hex(32)
        self.secret = secret.encode()

    def principal(self, request: Request) -> Principal | None:
        """The asker, or None when they have not signed in."""
        by_proxy = self._from_proxy(request)
        if by_proxy is not None:
            return by_proxy
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get(COOKIE, "")
        return self.by_token(token)

    def by_token(self, token: str) -> Principal | None:
        for known, principal in self.tokens.items():  # constant time per token: no early exit on a prefix
            if token and hmac.compare_digest(known.encode(), token.encode()):
                return principal
        return None

    def _from_proxy(self, request: Request) -> Principal | None:
        if not self.proxies or request.client is None:
            return None
        try:
            peer = ipaddress.ip_address(request.client.host)
        except ValueError:
            return None
        if not any(peer in network for network in self.proxies):
            return None
        user = request.headers.get(self.settings.proxy_user_header, "").strip()
        if not user:
            return None
        groups = {g.strip() for g in request.headers.get(self.settings.proxy_groups_header, "").split(",")}
        return Principal(user, OPERATOR if groups & set(self.settings.operator_groups) else VIEWER)

    def csrf_token(self, principal: Principal) -> str:
        message = f"csrf\x1f{principal.user}\x1f{principal.role}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def check_change(self, request: Request, principal: Principal, form: dict[str, str]) -> None:
        """Raise Forbidden unless ``principal`` may change things and the form is this site's own."""
        if not principal.can_change:
            raise Forbidden(f"{principal.user} has the {principal.role} role: it can read, not label or roll back")
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Forbidden(f"a change from another site ({origin}) is refused")
        if not hmac.compare_digest(form.get("csrf", ""), self.csrf_token(principal)):
            raise Forbidden("the form's CSRF token is missing or wrong: reload the page and try again")
