"""The demo's answers outside its pages: a styled page for CSRF refusals and the favicon.

`CSRFMiddleware` answers a refused form with a plain-text 403 naming the failed check (and
the reason in `X-CSRF-Failure`). That is right for an API, but in the demo the usual cause
is a stale form, e.g. after a revoke, a `memory://` restart or "log out my other sessions",
and a learner deserves a page that says so and offers a way back.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2

from .inspector import ASGIApp, Message, Receive, Scope, Send

FAILURE_HEADER = b"x-csrf-failure"
FAVICON = resources.files("coatcheck.demo").joinpath("static", "favicon.svg").read_bytes()
_PAGE_FOR = {  # the page each form lives on: where "reload" leads after a refused POST
    "/login": "/login",
    "/logout": "/",
    "/cart/add": "/cart",
    "/cart/remove": "/cart",
    "/settings": "/settings",
    "/profile/logout-others": "/profile",
}
STALE = (
    "The form's token belongs to a session that has ended or changed since the page was loaded: "
    "a log-out, a revoke, \u201clog out my other sessions\u201d, or a restart of a memory:// demo."
)
_WHY = {
    "session-token-missing": STALE,
    "token-mismatch": STALE,
    "token-missing": "The form carried no CSRF token.",
    "token-malformed": "The form's CSRF token was damaged on the way.",
    "origin-untrusted": "The form was posted from an address this demo does not trust (add it with --origin).",
    "referer-untrusted": "The form was posted from an address this demo does not trust (add it with --origin).",
    "origin-null": "The form was posted from a page with no origin (a sandbox or a file).",
    "sec-fetch-site": "Your browser says the form was posted from another site.",
    "body-too-large": "The form was too large to check.",
}


class StyledRefusals:
    """ASGI wrapper around `CSRFMiddleware`: a refusal becomes an HTML page (same status and
    `X-CSRF-Failure` header); every other response passes through untouched."""

    def __init__(self, app: ASGIApp, *, env: jinja2.Environment) -> None:
        self.app = app
        self._template = env.get_template("refused.html")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") == "/favicon.ico":
            await _send(send, 200, FAVICON, b"image/svg+xml", cache=b"public, max-age=86400")
            return
        refused: dict[str, Any] = {}

        async def restyle(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if FAILURE_HEADER in headers:
                    refused.update(status=message["status"], reason=headers[FAILURE_HEADER].decode("latin-1"))
                    return
            elif refused:
                if not message.get("more_body", False):
                    await self._refusal(scope, send, refused["status"], refused["reason"])
                return
            await send(message)

        await self.app(scope, receive, restyle)

    async def _refusal(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        page = self._template.render(
            status=status,
            reason=reason,
            why=_WHY.get(reason, "The request did not pass the CSRF check."),
            back=_PAGE_FOR.get(str(scope.get("path", "")), "/"),
        )
        await _send(
            send,
            status,
            page.encode(),
            b"text/html; charset=utf-8",
            extra=[(FAILURE_HEADER, reason.encode())],
        )


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    cache: bytes = b"no-store",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
