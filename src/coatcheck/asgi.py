"""SessionMiddleware for ASGI apps (Starlette, FastAPI, Litestar, Quart)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import _http
from ._http import PlainResponse, RequestInfo
from .config import Settings
from .errors import SessionStoreError, SessionTooLarge
from .options import SessionOptions
from .runtime import Runtime, log_store_error
from .strategy import build_runtime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_info(scope: Scope) -> RequestInfo:
    """Pull what the runtime needs out of an ASGI scope."""
    cookies: list[bytes] = []
    forwarded = agent = None
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            cookies.append(value)
        elif name == b"x-forwarded-proto":
            forwarded = forwarded or value
        elif name == b"user-agent":
            agent = value
    client = scope.get("client")
    return RequestInfo(
        path=scope.get("path", "/"),  # the full path, root_path included (ASGI spec)
        scheme=scope.get("scheme", "http"),
        cookie=b"; ".join(cookies) if cookies else None,
        forwarded_proto=forwarded,
        user_agent=agent,
        client_ip=client[0] if client else None,
    )


async def send_plain(send: Send, response: PlainResponse) -> None:
    """Send a plain response (503, 500, 403...) in place of the app's."""
    await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    await send({"type": "http.response.body", "body": response.body})


class SessionMiddleware(SessionOptions):
    """Server-side (or, with CookieStore, client-side) sessions for any ASGI app.

    Puts a `Session` at `scope["session"]` (so Starlette's `request.session` is ours),
    commits it before `http.response.start` is passed on, and answers 503 if the store
    cannot load or save. WebSocket scopes get the session loaded read-only.
    The options are DESIGN.md §2's; `coatcheck.config.Settings` documents each one.
    """

    app: ASGIApp
    manager: Runtime
    _every_path = False

    def _start(self, settings: Settings) -> None:
        self._use(build_runtime(settings))

    def _use(self, runtime: Runtime) -> None:
        self.manager = runtime
        # Every request path is in scope of a cookie of path "/": no path check per request.
        self._every_path = runtime.settings.cookie.path == "/"

    @property
    def store(self) -> Any:
        return self.manager.store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(scope, receive, send)
                return
            if kind != "websocket":
                await self.app(scope, receive, send)
                return
        runtime = self.manager
        request = request_info(scope)
        if not (self._every_path or runtime.in_scope(request.path)):
            await self.app(scope, receive, send)
            return
        read_only = kind == "websocket"
        try:
            session = runtime.load_without_io(request, read_only=read_only)
            if session is None:
                session = await runtime.load(request, read_only=read_only)
        except SessionStoreError as exc:
            log_store_error(exc, "loading a session")
            await (
                send_plain(send, _http.unavailable())
                if kind == "http"
                else send({"type": "websocket.close", "code": 1011})
            )
            return
        scope["session"] = session
        if read_only:
            await self.app(scope, receive, send)
            return

        failed = False

        async def send_with_session(message: Message) -> None:
            nonlocal failed
            if message["type"] != "http.response.start":
                if not failed:  # else the error response already went out: drop the app's
                    await send(message)
                return
            unset = scope.get("session") is not session
            if session.untouched and not unset:  # owes nothing: the app's message as it is
                await send(message)
                return
            try:
                added = await runtime.commit(session, request, unset=unset)
            except SessionStoreError as exc:
                log_store_error(exc, "saving a session")
                failed = True
                await send_plain(send, _http.unavailable())
                return
            except SessionTooLarge as exc:  # only with CookieStore(debug=True)
                failed = True
                await send_plain(send, _http.too_large(exc))
                return
            if added:
                message = {
                    **message,
                    "headers": _http.with_session_headers(message.get("headers", ()), added),
                }
            await send(message)

        await self.app(scope, receive, send_with_session)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.manager.close()
            await send(message)

        await self.app(scope, receive, send_closing)
