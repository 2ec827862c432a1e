"""aiohttp integration: sessions for `aiohttp.web` apps, as aiohttp-session users know them.

    from coatcheck.aiohttp import SessionMiddleware, get_session

    app = web.Application()
    SessionMiddleware(app, secret=SECRET, store="redis://localhost/0")

    async def handler(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["visits"] = session.get("visits", 0) + 1

`SessionMiddleware` takes the options of `coatcheck.SessionMiddleware` and registers itself
on the app: a middleware, an `on_response_prepare` hook and an `on_cleanup` hook. The
session is loaded on the first `get_session` (a request that never asks for it costs no
store call) and committed before the response's headers go out: when the handler returns
(or raises an `HTTPException` such as `HTTPFound`), or, for a response the handler
prepares itself (streams, WebSockets), from `on_response_prepare`. A store that cannot
load or save turns the response into the shared 503 (`coatcheck._http.unavailable`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

try:
    from aiohttp import web
    from multidict import CIMultiDict
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("coatcheck.aiohttp needs aiohttp: pip install 'coatcheck[aiohttp]'") from exc

from . import _http
from ._http import RequestInfo
from .config import Settings
from .errors import SessionStoreError, SessionTooLarge
from .options import SessionOptions
from .runtime import Runtime, log_store_error
from .session import Session
from .strategy import build_runtime

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AiohttpSession(Session):
    """The session `get_session` returns: a coatcheck `Session` (a dict), plus the names
    aiohttp-session's `Session` offers (`new`, `created`, `changed()`, `invalidate()`,
    `max_age`)."""

    __slots__ = ()

    @property
    def new(self) -> bool:
        """True until the session exists in the store under its current id."""
        return self.is_new

    @property
    def created(self) -> int:
        """When the session was created (Unix seconds); now for a new one."""
        meta = self.meta
        return int(meta.created) if meta is not None else int(self.settings.clock())

    def changed(self) -> None:
        """Save this session even if no key changed (after mutating a value in place)."""
        self.mark_modified()

    def invalidate(self) -> None:
        """Delete the session record and expire the cookie (aiohttp-session's logout)."""
        self.destroy()

    @property
    def max_age(self) -> float | None:
        """The cookie's lifetime in seconds; None: a browser-session cookie."""
        return self.cookie.max_age_seconds

    @max_age.setter
    def max_age(self, value: float | None) -> None:
        self.cookie.max_age = value


@dataclass(slots=True)
class _RequestSession:
    """One request's session state: loaded lazily, committed once."""

    runtime: Runtime
    info: RequestInfo
    session: AiohttpSession | None = None
    committed: bool = False


_STATE: web.RequestKey[_RequestSession] = web.RequestKey("coatcheck.session", _RequestSession)


def request_info(request: web.BaseRequest) -> RequestInfo:
    """Pull what the runtime needs out of an aiohttp request."""
    headers = request.headers
    cookies = headers.getall("Cookie", [])
    forwarded = headers.get("X-Forwarded-Proto")
    agent = headers.get("User-Agent")
    return RequestInfo(
        path=request.path,
        scheme=request.scheme,
        cookie="; ".join(cookies).encode("latin-1") if cookies else None,
        forwarded_proto=forwarded.encode("latin-1") if forwarded else None,
        user_agent=agent.encode("latin-1") if agent else None,
        client_ip=request.remote,
    )


async def get_session(request: web.Request) -> AiohttpSession:
    """This request's session, loaded on first use. Raises SessionStoreError if the store
    does not answer (the middleware then answers 503), and RuntimeError outside the
    middleware (no `SessionMiddleware(app, ...)`, or a path outside the cookie's path)."""
    state: _RequestSession | None = request.get(_STATE)
    if state is None:
        raise RuntimeError(
            "no session for this request: set up coatcheck.aiohttp.SessionMiddleware(app, ...), "
            "and check that the path is inside Cookie(path=...)"
        )
    if state.session is None:
        session = state.runtime.load_without_io(state.info)
        if session is None:
            session = await state.runtime.load(state.info)
        assert isinstance(session, AiohttpSession)
        state.session = session
    return state.session


async def new_session(request: web.Request) -> AiohttpSession:
    """The session emptied under a new id (the old record is deleted at commit): call it at
    login so an id planted before login is worthless (session fixation). To keep the data
    and bind a user, use `(await get_session(request)).login(user_id)` instead."""
    session = await get_session(request)
    session.regenerate(keep_data=False)
    return session


class SessionMiddleware(SessionOptions):
    """Server-side (or, with CookieStore, client-side) sessions for an `aiohttp.web`
    Application. `SessionMiddleware(app, secret=..., store=...)` registers itself on `app`;
    the options are those of `coatcheck.SessionMiddleware` (DESIGN.md §2)."""

    app: web.Application
    manager: Runtime

    def _start(self, settings: Settings) -> None:
        self.manager = build_runtime(settings, AiohttpSession)
        app = self.app
        if not isinstance(app, web.Application):
            raise TypeError(f"SessionMiddleware(app, ...) needs an aiohttp.web.Application, got {app!r}")
        if _MIDDLEWARE in app:
            raise RuntimeError("coatcheck.aiohttp.SessionMiddleware is already set up on this app")
        app[_MIDDLEWARE] = self
        app.middlewares.append(self.middleware)
        app.on_response_prepare.append(_on_prepare)
        app.on_cleanup.append(self._cleanup)

    @property
    def store(self) -> Any:
        return self.manager.store

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request_info(request)
        runtime = self.manager
        if not runtime.in_scope(info.path):
            return await handler(request)
        state = _RequestSession(runtime, info)
        request[_STATE] = state
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # HTTPFound & co. are responses too: they carry the cookie
            failure = await _commit(state, exc)
            if failure is not None:
                return failure
            raise
        except SessionStoreError as exc:  # from get_session, or from a commit in on_response_prepare
            log_store_error(exc, "loading or saving a session")
            state.committed = True
            return _plain(_http.unavailable())
        failure = await _commit(state, response)
        return failure if failure is not None else response

    async def _cleanup(self, app: web.Application) -> None:
        await self.manager.close()


_MIDDLEWARE: web.AppKey[SessionMiddleware] = web.AppKey("coatcheck.sessions", SessionMiddleware)


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Commit a response the handler prepares itself (a stream, a WebSocket) before its
    headers go out. A store failure propagates out of `prepare()`: the middleware answers 503."""
    state: _RequestSession | None = request.get(_STATE)
    if state is None or state.committed or state.session is None:
        return
    state.committed = True
    added = await state.runtime.commit(state.session, state.info)
    if added:
        _add_headers(response, added)


async def _commit(state: _RequestSession, response: web.StreamResponse) -> web.Response | None:
    """Commit before `response` is prepared; a plain error response instead if that failed."""
    if state.committed or state.session is None or response.prepared:
        return None
    state.committed = True
    try:
        added = await state.runtime.commit(state.session, state.info)
    except SessionStoreError as exc:
        log_store_error(exc, "saving a session")
        return _plain(_http.unavailable())
    except SessionTooLarge as exc:  # only with CookieStore(debug=True)
        return _plain(_http.too_large(exc))
    if added:
        _add_headers(response, added)
    return None


def _add_headers(response: web.StreamResponse, added: _http.SessionHeaders) -> None:
    headers = response.headers
    caching = _http.cache_headers_of(headers.items())
    headers.popall("Vary", None)
    headers.popall("Cache-Control", None)
    for name, value in _http.with_session_str_headers(caching, added):
        headers.add(name, value)


def _plain(plain: _http.PlainResponse) -> web.Response:
    # aiohttp computes Content-Length from the body itself
    headers = CIMultiDict((n, v) for n, v in plain.str_headers if n.lower() != "content-length")
    return web.Response(status=plain.status, body=plain.body, headers=headers)


__all__ = ["AiohttpSession", "SessionMiddleware", "get_session", "new_session", "request_info"]
