"""SessionMiddleware for ASGI apps (Starlette, FastAPI, Litestar, Quart)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .engine import add_cache_headers
from .errors import SessionStoreError, SessionTooLarge
from .runtime import RequestInfo, SessionManager, log_store_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UNAVAILABLE = b"Service Unavailable: the session store did not answer. Please retry shortly.\n"


def request_info(scope: Scope) -> RequestInfo:
    """Pull what the engine needs out of an ASGI scope."""
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


class SessionMiddleware:
    """Server-side (or, with CookieStore, client-side) sessions for any ASGI app.

    Puts a `Session` at `scope["session"]` (so Starlette's `request.session` is ours),
    commits it before `http.response.start` is passed on, and answers 503 if the store
    cannot load or save. WebSocket scopes get the session loaded read-only.
    Options are those of DESIGN.md §2; see `SessionManager` for each one.
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        self.app = app
        self.manager = SessionManager(**options)

    @property
    def store(self) -> Any:
        return self.manager.store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request = request_info(scope)
        if not self.manager.in_scope(request.path):
            await self.app(scope, receive, send)
            return
        try:
            session = self.manager.load_without_io(request, read_only=kind == "websocket")
            if session is None:
                session = await self.manager.load(request, read_only=kind == "websocket")
        except SessionStoreError as exc:
            log_store_error(exc, "loading a session")
            await (_unavailable(send) if kind == "http" else send({"type": "websocket.close", "code": 1011}))
            return
        scope["session"] = session
        if kind == "websocket":
            await self.app(scope, receive, send)
            return

        failed = False

        async def send_with_session(message: Message) -> None:
            nonlocal failed
            if message["type"] == "http.response.start":
                if not session._accessed and scope.get("session") is session:
                    await send(message)  # never touched: nothing to commit, no headers to add
                    return
                try:
                    plan = await self.manager.commit(
                        session, request, unset=scope.get("session") is not session
                    )
                except SessionStoreError as exc:
                    log_store_error(exc, "saving a session")
                    failed = True
                    await _unavailable(send)
                    return
                except SessionTooLarge as exc:  # only with CookieStore(debug=True)
                    failed = True
                    await _too_large(send, exc)
                    return
                headers = list(message.get("headers", ()))
                if plan.cache_headers:
                    headers = add_cache_headers(headers)
                headers.extend((b"set-cookie", value) for value in plan.set_cookies())
                message = {**message, "headers": headers}
            elif failed:
                return  # the 503 already went out: drop the app's response
            await send(message)

        await self.app(scope, receive, send_with_session)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.manager.close()
            await send(message)

        await self.app(scope, receive, send_closing)


async def _too_large(send: Send, exc: SessionTooLarge) -> None:
    await _plain_response(send, 500, f"Internal Server Error: {exc}\n".encode())


async def _unavailable(send: Send) -> None:
    await _plain_response(send, 503, _UNAVAILABLE, [(b"retry-after", b"5")])


async def _plain_response(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A short uncacheable text/plain response, sent in place of the app's."""
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        *(extra or []),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
