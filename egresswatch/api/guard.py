"""The web edge's guard: Host allow-list (DNS rebinding), Origin check on state-changing
requests (CSRF), an optional access token, and strict security headers on every response.
"""

import hmac
import json
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "egresswatch_token"  # noqa: S105 - the cookie's name, not a secret
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


@dataclass(frozen=True)
class GuardPolicy:
    """`hosts`: the names the server may be reached by (no port); `token`: None on loopback."""

    hosts: frozenset[str]
    token: str | None = None

    def host_allowed(self, host_header: str) -> bool:
        return _hostname(host_header) in self.hosts

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """Same origin: the Origin names an allowed host and the very host:port asked for."""
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        return parts.netloc.lower() == host_header.lower() and self.host_allowed(parts.netloc)

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(presented, self.token)


def _hostname(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class GuardMiddleware:
    """ASGI middleware applying a GuardPolicy to every HTTP request."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _refuse(send, *refusal)
            return
        cookie = self._cookie_for(scope)
        await self.app(scope, receive, _with_security_headers(send, cookie))

    def _cookie_for(self, scope: Scope) -> bytes | None:
        """A token given in the URL (the printed link) is kept in a strict, HttpOnly cookie."""
        if self.policy.token is None or _query_token(scope) is None:
            return None
        return f"{TOKEN_COOKIE}={self.policy.token}; Path=/; HttpOnly; SameSite=Strict".encode()

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = headers.get("host", "")
        if not self.policy.host_allowed(host):
            return 421, "host_not_allowed", "this server does not answer to that Host name"
        if scope["method"] not in SAFE_METHODS and not self._same_origin(headers, host):
            return 403, "cross_origin", "state-changing requests must come from this origin"
        if not self.policy.token_ok(_presented_token(scope, headers)):
            return 401, "token_required", "open the URL printed by `egresswatch web --show-token`"
        return None

    def _same_origin(self, headers: dict[str, str], host: str) -> bool:
        origin = headers.get("origin")
        if origin is not None:
            return self.policy.origin_allowed(origin, host)
        # No Origin: not a browser (browsers send it on every POST); unless Fetch metadata says
        # the request came from another site.
        return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _presented_token(scope: Scope, headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    query = _query_token(scope)
    if query is not None:
        return query
    cookie = SimpleCookie(headers.get("cookie", ""))
    morsel = cookie.get(TOKEN_COOKIE)
    return None if morsel is None else morsel.value


def _query_token(scope: Scope) -> str | None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query["token"][0] if "token" in query else None


def _with_security_headers(send: Send, cookie: bytes | None) -> Send:
    extra = list(SECURITY_HEADERS) + ([(b"set-cookie", cookie)] if cookie else [])

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = list(message.get("headers", [])) + extra
        await send(message)

    return sender


async def _refuse(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
