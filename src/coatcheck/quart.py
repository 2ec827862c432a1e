"""Quart integration: `quart.session` becomes a coatcheck session, natively async.

    from coatcheck.quart import Session
    app.config["SESSION_STORE"] = "redis://localhost/0"
    Session(app)            # or: sessions = Session(); sessions.init_app(app)

Quart's `SessionInterface` is async, so `open_session` / `save_session` await the runtime's
load and commit directly: no thread, no sync bridge. Quart calls `save_session` in
`process_response`, before the response starts, so the store write finishes before any
header goes out. Configuration is read from the app's config exactly as
`coatcheck.flask.Session` reads Flask's (SECRET_KEY, SESSION_STORE, SESSION_COOKIE_*,
PERMANENT_SESSION_LIFETIME, SESSION_<OPTION>: docs/flask.md). `flash()` and
`get_flashed_messages()` work unchanged; `coatcheck.quart_auth.SessionAuth` keeps
Quart-Auth's user in the session. A store that cannot load or save answers 503
(`coatcheck._http.unavailable`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

try:
    from quart import Quart, Response, current_app, has_request_context, has_websocket_context
    from quart import request as current_request
    from quart.sessions import SessionInterface, SessionMixin
    from quart.wrappers import BaseRequestWebsocket, Websocket
    from werkzeug.datastructures import Headers
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("coatcheck.quart needs Quart: pip install 'coatcheck[quart]'") from exc

from . import _http
from ._flask_config import flask_side, options_from_config
from .asgi import request_info
from .config import Settings
from .errors import ConfigurationError, SessionStoreError, SessionTooLarge
from .flask import NoSession
from .runtime import Runtime, log_store_error
from .session import Session as CoreSession
from .strategy import build_runtime

if TYPE_CHECKING:
    from werkzeug.wrappers import Response as WerkzeugResponse

_EXTENSION = "coatcheck"
_STORE_FAILED = "coatcheck.store_failed"


class QuartSession(CoreSession, SessionMixin):
    """`quart.session`: a coatcheck `Session` with the attributes Quart's API expects.

    `permanent` maps to the cookie's lifetime (PERMANENT_SESSION_LIFETIME when True, a
    browser-session cookie when False); `new` is `is_new`; setting `modified = True` forces
    a save. `await session.save()` and `await session.reload()` are the runtime's, directly.
    """

    __slots__ = ()

    @property
    def permanent(self) -> bool:
        return self.cookie.max_age_seconds is not None

    @permanent.setter
    def permanent(self, value: bool) -> None:
        wanted = sessions_for().permanent_lifetime if value else None
        if self.cookie.max_age_seconds != wanted:  # apps set it on every request: only changes count
            self.cookie.max_age = wanted

    @property
    def new(self) -> bool:  # type: ignore[override]
        return self.is_new

    @property
    def accessed(self) -> bool:
        return super().accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        # Quart sets this on every lookup of the `session` proxy; the mapping tracks real
        # reads and writes, which is what decides Vary: Cookie.
        pass

    @property
    def modified(self) -> bool:
        return super().modified

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:  # Flask's and Quart's idiom for "I mutated something nested, save it"
            self.mark_modified()


@dataclass(slots=True)
class QuartSessions:
    """The sessions of one Quart app: its runtime and its permanent lifetime."""

    runtime: Runtime
    permanent_lifetime: float

    @property
    def store(self) -> Any:
        return self.runtime.store


class CoatcheckSessionInterface(SessionInterface):
    """Quart's hook: load at request start, commit in `process_response`. WebSocket
    connections get their session read-only."""

    null_session_class = NoSession

    def __init__(self, sessions: QuartSessions) -> None:
        self.sessions = sessions

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> QuartSession | None:
        runtime = self.sessions.runtime
        info = request_info(_scope(request))
        if not runtime.in_scope(info.path):
            return None
        read_only = isinstance(request, Websocket)
        try:
            session = runtime.load_without_io(info, read_only=read_only)
            if session is None:
                session = await runtime.load(info, read_only=read_only)
        except SessionStoreError as exc:
            log_store_error(exc, "loading a session")
            _scope(request)[_STORE_FAILED] = True  # _refuse_when_store_failed answers 503
            return None
        assert isinstance(session, QuartSession)
        return session

    async def save_session(
        self, app: Quart, session: SessionMixin, response: Response | WerkzeugResponse | None
    ) -> None:
        if response is None or not isinstance(session, QuartSession) or session.request is None:
            return  # a WebSocket's session is read-only: nothing to commit
        try:
            added = await self.sessions.runtime.commit(session, session.request)
        except SessionStoreError as exc:
            log_store_error(exc, "saving a session")
            _replace(response, _http.unavailable())
            return
        except SessionTooLarge as exc:  # only with CookieStore(debug=True)
            _replace(response, _http.too_large(exc))
            return
        if not added:
            return
        headers = response.headers
        caching = _http.cache_headers_of(headers.items())
        headers.remove("Vary")
        headers.remove("Cache-Control")
        headers.extend(_http.with_session_str_headers(caching, added))


def _scope(request: BaseRequestWebsocket) -> MutableMapping[str, Any]:
    return cast("MutableMapping[str, Any]", request.scope)


def _replace(response: Response | WerkzeugResponse, plain: _http.PlainResponse) -> None:
    """Turn the app's response into a plain error response before any byte of it goes out."""
    response.status_code = plain.status
    response.headers.clear()
    response.headers.extend(plain.str_headers)
    response.set_data(plain.body)


def _plain_response(plain: _http.PlainResponse) -> Response:
    return Response(plain.body, status=plain.status, headers=Headers(plain.str_headers))


async def _refuse_when_store_failed() -> Response | None:
    request = current_request if has_request_context() else None
    if request is not None and _scope(request).get(_STORE_FAILED):
        return _plain_response(_http.unavailable())
    return None


async def _close_websocket_when_store_failed() -> Response | None:
    from quart import websocket

    if has_websocket_context() and _scope(websocket).get(_STORE_FAILED):
        return _plain_response(_http.unavailable())  # Quart rejects the handshake with it
    return None


class Session:
    """The Quart extension. `Session(app)` or `Session()` then `init_app(app)`.

    Reads the app's config as `coatcheck.flask.Session` does (docs/flask.md): SECRET_KEY
    (and SECRET_KEY_FALLBACKS), SESSION_STORE, Flask's SESSION_COOKIE_* and
    PERMANENT_SESSION_LIFETIME, and SESSION_<OPTION> for every option of
    `coatcheck.SessionMiddleware`. Misconfiguration raises ConfigurationError here.
    """

    def __init__(self, app: Quart | None = None) -> None:
        self._apps: dict[int, QuartSessions] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        options = options_from_config(app.config)
        if options.get("secret") is None:
            raise ConfigurationError(
                "coatcheck.quart.Session needs a secret: set app.config['SECRET_KEY'] (or SESSION_SECRET); "
                "make one with `coatcheck secret`"
            )
        lifetime = flask_side(app.config).permanent_lifetime
        runtime = build_runtime(Settings(**options), QuartSession)
        sessions = QuartSessions(runtime=runtime, permanent_lifetime=lifetime)
        app.session_interface = CoatcheckSessionInterface(sessions)  # type: ignore[assignment]
        app.extensions[_EXTENSION] = sessions
        self._apps[id(app)] = sessions
        # First of all before_request functions: nothing should run on a 503.
        app.before_request_funcs.setdefault(None, []).insert(0, _refuse_when_store_failed)
        app.before_websocket_funcs.setdefault(None, []).insert(0, _close_websocket_when_store_failed)

        @app.after_serving
        async def close_store() -> None:
            await runtime.close()

    @property
    def store(self) -> Any:
        """The store of the current app (or of the only app this extension was set up on)."""
        if len(self._apps) == 1:
            return next(iter(self._apps.values())).store
        return sessions_for().store


def sessions_for(app: Quart | None = None) -> QuartSessions:
    """The coatcheck sessions set up on `app` (default: the current app)."""
    target = app if app is not None else current_app
    sessions = target.extensions.get(_EXTENSION)
    if not isinstance(sessions, QuartSessions):
        raise RuntimeError("coatcheck.quart.Session(app) was not set up on this app")
    return sessions


def current_session() -> QuartSession | None:
    """`quart.session` as a `QuartSession` (typed), or None when this request has none."""
    from quart import session as quart_session

    if not (has_request_context() or has_websocket_context()):
        return None
    obj = quart_session._get_current_object()  # type: ignore[attr-defined]
    return obj if isinstance(obj, QuartSession) else None


__all__ = [
    "CoatcheckSessionInterface",
    "QuartSession",
    "QuartSessions",
    "Session",
    "current_session",
    "sessions_for",
]
