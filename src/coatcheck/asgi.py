"""SessionMiddleware for ASGI apps (Starlette, FastAPI, Litestar, Quart)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import _http
from ._http import PlainResponse, RequestInfo, SessionHeaders
from .config import Settings
from .errors import SessionStoreError, SessionTooLarge
from .options import SessionOptions
from .runtime import Runtime, log_store_error
from .session import Session
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
    return RequestInfo(  # positional: this runs for every request, anonymous ones included
        scope.get("path", "/"),  # path: the full path, root_path included (ASGI spec)
        scope.get("scheme", "http"),  # scheme
        b"; ".join(cookies) if cookies else None,  # cookie
        forwarded,  # forwarded_proto
        agent,  # user_agent
        client[0] if client else None,  # client_ip
    )


async def _sent() -> None:
    """An awaitable that sends nothing (a message dropped after an error response)."""


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
    _fresh_app: ASGIApp
    _every_path = False

    def _start(self, settings: Settings) -> None:
        self._use(build_runtime(settings))

    def _use(self, runtime: Runtime) -> None:
        self.manager = runtime
        # The app a request without our cookie runs (a subclass may skip layers that only
        # concern loaded sessions).
        self._fresh_app = self.app
        # Every request path is in scope of a cookie of path "/": no path check per request.
        self._every_path = runtime.settings.cookie.path == "/"

    @property
    def store(self) -> Any:
        return self.manager.store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        request = request_info(scope)
        runtime = self.manager
        if not (self._every_path or runtime.in_scope(request.path)):
            await self._outside_path(scope, receive, send)
            return
        session = runtime.load_without_io(request)
        if session is None:  # the request carries our cookie: load it (I/O), here and not in
            # a coroutine of its own: each layer is one more object alive while the load waits
            try:
                session = await runtime.load(request)
            except SessionStoreError as exc:
                log_store_error(exc, "loading a session")
                await send_plain(send, _http.unavailable())
                return
            scope["session"] = session
            await self.app(scope, receive, _SessionSender(self, session, request, scope, send))
            return
        scope["session"] = session
        await self._fresh_app(scope, receive, _SessionSender(self, session, request, scope, send))

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _outside_path(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request outside the cookie's path: the browser never sends the cookie there."""
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.manager
        request = request_info(scope)
        if not (self._every_path or runtime.in_scope(request.path)):
            await self.app(scope, receive, send)
            return
        try:
            session = runtime.load_without_io(request, read_only=True)
            if session is None:
                session = await runtime.load(request, read_only=True)
        except SessionStoreError as exc:
            log_store_error(exc, "loading a session")
            await send({"type": "websocket.close", "code": 1011})
            return
        scope["session"] = session
        await self.app(scope, receive, send)

    async def _commit_then_start(self, sender: _SessionSender, message: Message) -> None:
        """Commit the sender's session, then send the app's start message with the session's
        headers (or, if the store failed, an error response in its place)."""
        session, request, scope, send = sender.session, sender.request, sender.scope, sender.send
        try:
            added = await self.manager.commit(session, request, unset=scope.get("session") is not session)
        except SessionStoreError as exc:
            log_store_error(exc, "saving a session")
            sender.failed = True
            await send_plain(send, _http.unavailable())
            return
        except SessionTooLarge as exc:  # only with CookieStore(debug=True)
            sender.failed = True
            await send_plain(send, _http.too_large(exc))
            return
        if added:
            added = self._spelled(added)
            message = {
                **message,
                "headers": _http.with_session_headers(message.get("headers", ()), added),
            }
        await send(message)

    def _spelled(self, added: SessionHeaders) -> SessionHeaders:
        """The session's headers as this middleware writes them (a subclass may respell)."""
        return added

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.manager.close()
            await send(message)

        await self.app(scope, receive, send_closing)


class _SessionSender:
    """`send` for the app: commits the session before the response starts. One object per
    request: a closure cost a function, its tuple and a cell per captured name, all alive (and
    tracked by the garbage collector) for as long as the app runs."""

    __slots__ = ("failed", "middleware", "request", "scope", "send", "session")

    def __init__(
        self, middleware: SessionMiddleware, session: Session, request: RequestInfo, scope: Scope, send: Send
    ) -> None:
        self.middleware, self.session, self.request = middleware, session, request
        self.scope, self.send = scope, send
        self.failed = False  # True once an error response replaced the app's

    # Returns `send`'s own awaitable: an untouched session costs no coroutine of ours per
    # message; only a session that owes a commit gets one.
    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] != "http.response.start":
            return _sent() if self.failed else self.send(message)  # after an error response: dropped
        session, scope = self.session, self.scope
        if session.untouched and scope.get("session") is session:
            return self.send(message)  # owes nothing: the app's message as it is
        return self.middleware._commit_then_start(self, message)
