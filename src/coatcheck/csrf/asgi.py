"""CSRFMiddleware for ASGI apps: reads the request, asks `rules.evaluate`, answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .._http import refused
from ..audit import csrf_refused
from ..engine import is_secure
from .forms import FormScanner
from .origins import normalize_origin
from .routes import starlette_endpoint_exempt
from .rules import (
    DEFAULT_FIELD_NAME,
    DEFAULT_HEADER_NAME,
    DEFAULT_MAX_BODY_SIZE,
    READ_FORM,
    SAFE_METHODS,
    CSRFPolicy,
    CSRFRequest,
    Verdict,
    body_too_large,
    checked_trust_proxy,
    evaluate,
)
from .tokens import session_secret, session_trusts_proxy

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class CSRFMiddleware:
    """CSRF protection for ASGI apps. Goes *inside* `SessionMiddleware` (it reads
    `scope["session"]`).

    Refusals are `403 Forbidden` (`text/plain`, naming the failed check, never a token; the
    machine-readable reason is in the `X-CSRF-Failure` header); a form body that does not
    reveal the token within `max_body_size` bytes gets `413`. Requests without a session (outside
    the session cookie's path) pass when safe and get a 403 (`no-session`) otherwise.
    WebSocket handshakes from an untrusted `Origin` are refused (cross-site WebSocket
    hijacking) unless `check_websockets=False`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_origins: Iterable[str],
        field_name: str = DEFAULT_FIELD_NAME,
        header_name: str = DEFAULT_HEADER_NAME,
        exempt_paths: Iterable[str] = (),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        trust_proxy: bool | None = None,
        check_websockets: bool = True,
    ) -> None:
        self.app = app
        self.policy = CSRFPolicy.build(
            trusted_origins=trusted_origins,
            field_name=field_name,
            header_name=header_name,
            exempt_paths=exempt_paths,
            max_body_size=max_body_size,
        )
        self.trust_proxy = checked_trust_proxy(trust_proxy)
        self.check_websockets = bool(check_websockets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" and self.check_websockets:
            await self._websocket(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        session = scope.get("session")
        has_session = isinstance(session, MutableMapping)
        request = self._request(scope, session)
        exempt = self.endpoint_exempt(scope, request)

        def secret() -> str | None:
            return session_secret(session) if isinstance(session, MutableMapping) else None

        verdict = evaluate(request, self.policy, session_token=secret, has_session=has_session, exempt=exempt)
        if verdict is READ_FORM:
            read = await self._read_form(request, receive)
            if read is None:
                return  # the client went away while sending the body
            if isinstance(read, Verdict):
                await _refuse(send, read, session, request.path)
                return
            form_token, receive = read
            verdict = evaluate(
                request,
                self.policy,
                session_token=secret,
                form_token=form_token,
                form_read=True,
                exempt=exempt,
            )
        if not verdict.allowed:
            await _refuse(send, verdict, session, request.path)
            return
        await self.app(scope, receive, send)

    def _request(self, scope: Scope, session: object) -> CSRFRequest:
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
        trust = self.trust_proxy if self.trust_proxy is not None else session_trusts_proxy(session)
        forwarded = next((v for n, v in headers if n == b"x-forwarded-proto"), None)
        return CSRFRequest.from_headers(
            method=scope.get("method", "GET"),
            path=scope.get("path", "/"),
            secure=is_secure(scope.get("scheme", "http"), forwarded, trust),
            headers=headers,
            header_name=self.policy.header_name,
        )

    def endpoint_exempt(self, scope: Scope, request: CSRFRequest) -> bool:
        """True if the framework marks this request's endpoint exempt (Starlette's routes are
        walked for `@csrf_exempt`). A framework plugin overrides this hook (coatcheck.litestar)."""
        if request.method in SAFE_METHODS:
            return False  # not needed: safe methods pass anyway
        # scope["app"] is the Starlette app this middleware was added to; self.app is the app
        # it wraps directly (a Starlette app when composed by hand, or mounted under another).
        outer = scope.get("app")
        if outer is not None and starlette_endpoint_exempt(outer, scope):
            return True
        return outer is not self.app and starlette_endpoint_exempt(self.app, scope)

    async def _read_form(
        self, request: CSRFRequest, receive: Receive
    ) -> tuple[str | None, Receive] | Verdict | None:
        """Read the body until the token field is certainly found or the body ends; return the
        token and a `receive` that replays what was read. None if the client disconnected."""
        scanner = FormScanner(request.content_type, self.policy.field_name)
        more = True
        token = None
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            if message["type"] != "http.request":
                continue
            more = bool(message.get("more_body", False))
            token = scanner.feed(message.get("body", b""))
            if token is None and not more:
                token = scanner.finish()
            if token is not None:
                break
            if len(scanner) > self.policy.max_body_size:
                return body_too_large(self.policy)
        return token, _replay(scanner.body, more, receive)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = None
        count = 0
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                origin = value.decode("latin-1").strip()
                count += 1
        if count:
            normal = normalize_origin(origin or "")
            if count > 1 or normal is None or normal not in self.policy.trusted_origins:
                csrf_refused(scope.get("session"), "websocket-origin-untrusted", scope.get("path"))
                await send({"type": "websocket.close", "code": 1008, "reason": "untrusted Origin"})
                return
        await self.app(scope, receive, send)


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A `receive` that first hands the app the body already read, then continues the stream."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _refuse(send: Send, verdict: Verdict, session: object, path: str) -> None:
    csrf_refused(session, verdict.reason, path)
    response = refused(verdict.status, verdict.reason, verdict.detail)
    await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    await send({"type": "http.response.body", "body": response.body})


__all__ = ["CSRFMiddleware"]
