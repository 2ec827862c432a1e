"""SessionMiddleware for WSGI apps (Flask, Django, Pyramid, Bottle, plain WSGI).

Same options and semantics as the ASGI middleware (`coatcheck.asgi`): the same runtime
loads and commits, through the sync bridge (`coatcheck._sync`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from types import TracebackType
from typing import Any, cast

from . import _http, _sync, csrf, engine
from ._http import NO_HEADERS, RequestInfo, SessionHeaders, refused
from .audit import csrf_refused
from .config import Settings
from .csrf.tokens import session_secret, session_trusts_proxy
from .csrf.wsgi import read_form_token
from .engine import is_secure
from .errors import SessionStoreError
from .options import SessionOptions
from .runtime import Runtime, log_store_error
from .server_side import ServerSideRuntime
from .session import Session
from .stores.base import SyncTwin
from .strategy import build_runtime

ENVIRON_KEY = "coatcheck.session"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
Headers = list[tuple[str, str]]
Write = Callable[[bytes], object]
StartResponse = Callable[..., Write]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

UNAVAILABLE = _http.unavailable()


class WSGISession(Session):
    """The session WSGI handlers see: a `Session` whose explicit I/O is synchronous."""

    __slots__ = ()

    def save(self) -> None:  # type: ignore[override]  # the sync twin of `await session.save()`
        """Commit now instead of when the response starts. Raises SessionStoreError."""
        _sync.run_sync(Session.save(self))

    def reload(self) -> None:  # type: ignore[override]  # the sync twin of `await session.reload()`
        """Discard this request's changes and read the session from the store again."""
        _sync.run_sync(Session.reload(self))


class SyncBridge:
    """A runtime driven from WSGI threads: enters the event loop only for store I/O, and
    survives fork() (a store given as a URL is opened again in each forked child, so no
    connection is ever shared between processes; a store given as an object must itself be
    fork-aware, as the built-in ones are)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        renew = getattr(runtime, "renew_store", None)
        if renew is not None:
            _sync.after_fork_in_child(renew)
        # A store with a blocking twin (standalone Redis) is called directly from this
        # thread: no event loop at all (`ServerSideRuntime.sync_store`).
        self._twin: Callable[[], SyncTwin | None] = getattr(runtime, "sync_store", _no_twin)

    def load(self, request: RequestInfo) -> Session:
        """Raises SessionStoreError."""
        runtime = self.runtime
        session = runtime.load_without_io(request)
        if session is not None:
            return session
        twin = self._twin()
        if twin is not None:
            return cast(ServerSideRuntime, runtime).load_direct(request, twin)
        return _sync.run_sync(runtime.load(request))

    def commit(self, session: Session, request: RequestInfo, *, unset: bool = False) -> SessionHeaders:
        """`Runtime.commit` from a WSGI thread: a request that only read its session needs no
        I/O and never enters the loop. Raises SessionStoreError."""
        runtime = self.runtime
        if session.untouched and not unset:  # decide() would plan NOTHING: skip building its inputs
            return NO_HEADERS
        plan = runtime.prepare(session, request, unset=unset)
        if plan is engine.NOTHING:
            return NO_HEADERS
        if plan.store_work:
            twin = self._twin()
            if twin is not None:
                plan = cast(ServerSideRuntime, runtime).apply_direct(session, request, plan, twin)
            else:
                plan = _sync.run_sync(runtime.apply(session, request, plan))
        return runtime.finish(session, request, plan)

    def close(self) -> None:
        """Close the store (its connections and threads)."""
        _sync.run_sync(self.runtime.close())


def _no_twin() -> None:
    return None


def request_info(environ: dict[str, Any]) -> RequestInfo:
    """Pull what the runtime needs out of a WSGI environ."""
    cookie = environ.get("HTTP_COOKIE")
    forwarded = environ.get("HTTP_X_FORWARDED_PROTO")
    agent = environ.get("HTTP_USER_AGENT")
    return RequestInfo(
        # The full path, like ASGI's: the mount point (SCRIPT_NAME) is part of what the
        # browser path-matches the cookie against.
        path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") or "/",
        scheme=environ.get("wsgi.url_scheme", "http"),
        cookie=cookie.encode("latin-1") if cookie else None,  # PEP 3333: headers are latin-1 str
        forwarded_proto=forwarded.encode("latin-1") if forwarded else None,
        user_agent=agent.encode("latin-1") if agent else None,
        client_ip=environ.get("REMOTE_ADDR"),
    )


def _discard(_: bytes) -> None:
    """The `write` of a response that was replaced by a 503: the app's body goes nowhere."""


class SessionMiddleware(SessionOptions):
    """Server-side (or, with CookieStore, client-side) sessions for any WSGI app.

    Puts a `WSGISession` at `environ["coatcheck.session"]` and commits it when the app calls
    `start_response`, before the headers are passed on: the server writes nothing before
    that call returns and the first body chunk exists, so a redirect can never race the
    save. Answers 503 if the store cannot load or save. Options are those of the ASGI
    `SessionMiddleware` (DESIGN.md §2).
    """

    app: WSGIApp
    manager: Runtime

    def _start(self, settings: Settings) -> None:
        self.manager = build_runtime(settings, WSGISession)
        self.bridge = SyncBridge(self.manager)

    @property
    def store(self) -> Any:
        return self.manager.store

    def close(self) -> None:
        """Close the store; call at shutdown if your server offers a hook."""
        self.bridge.close()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = request_info(environ)
        if not self.manager.in_scope(request.path):
            return self.app(environ, start_response)
        try:
            session = self.bridge.load(request)
        except SessionStoreError as exc:
            log_store_error(exc, "loading a session")
            start_response(UNAVAILABLE.status_line, UNAVAILABLE.str_headers)
            return [UNAVAILABLE.body]
        environ[ENVIRON_KEY] = session
        response = _SessionResponse(self.bridge, session, request, environ, start_response)
        body = self.app(environ, response.start_response)
        if response.added is not None:
            return body  # committed already (the usual case): the server gets the app's iterable itself
        return _LateStartBody(response, body)


class _SessionResponse:
    """One request's `start_response` wrapper: commits on the first call, then passes the
    headers (plus the session's) on, or a 503 if the store failed."""

    __slots__ = ("added", "bridge", "environ", "failed", "request", "server_start", "session")

    def __init__(
        self,
        bridge: SyncBridge,
        session: Session,
        request: RequestInfo,
        environ: dict[str, Any],
        server_start: StartResponse,
    ) -> None:
        self.bridge = bridge
        self.session = session
        self.request = request
        self.environ = environ
        self.server_start = server_start
        self.added: SessionHeaders | None = None
        self.failed = False

    def start_response(self, status: str, headers: Headers, exc_info: ExcInfo | None = None) -> Write:
        # A second call (an error page replacing the headers, with exc_info) reuses what the
        # first decided: the store was written once, and the new headers must carry its cookie too.
        if self.added is None and not self.failed:
            try:
                self.added = self.bridge.commit(
                    self.session, self.request, unset=self.environ.get(ENVIRON_KEY) is not self.session
                )
            except SessionStoreError as exc:
                log_store_error(exc, "saving a session")
                self.failed = True
        if self.failed:
            self.server_start(UNAVAILABLE.status_line, UNAVAILABLE.str_headers, exc_info)
            return _discard
        assert self.added is not None
        if self.added:
            headers = _http.with_session_str_headers(headers, self.added)
        return self.server_start(status, headers, exc_info)


class _LateStartBody:
    """The app's body when it had not called `start_response` by the time it returned
    (a generator that starts the response from inside). Commits on the first chunk, swaps in
    the 503 body if that commit failed, and always closes the app's iterable."""

    __slots__ = ("_body", "_chunks", "_closed", "_response")

    def __init__(self, response: _SessionResponse, body: Iterable[bytes]) -> None:
        self._response = response
        self._body = body
        self._chunks: Iterator[bytes] | None = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        if not self._response.failed:
            if self._chunks is None:
                self._chunks = iter(self._body)
            chunk = next(self._chunks)  # may call start_response, and so commit
        if self._response.failed:
            self.close()
            return UNAVAILABLE.body
        return chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


# ---- CSRF -----------------------------------------------------------------------------------
_CSRF_HEADERS = {
    "HTTP_ORIGIN": b"origin",
    "HTTP_REFERER": b"referer",
    "HTTP_SEC_FETCH_SITE": b"sec-fetch-site",
    "CONTENT_TYPE": b"content-type",
}


class CSRFMiddleware:
    """CSRF protection for WSGI apps, with the rules of `coatcheck.csrf` (the same `evaluate`
    the ASGI `CSRFMiddleware` calls). Goes *inside* `SessionMiddleware`:
    `SessionMiddleware(CSRFMiddleware(app, trusted_origins=[...]), secret=..., store=...)`.

    Refusals are 403 (`text/plain`, naming the failed check, never a token; the reason is in
    `X-CSRF-Failure`); a form whose token field is not within `max_body_size` bytes gets 413.
    Requests without a session (outside the session cookie's path) pass when safe and get a
    403 (`no-session`) otherwise. The app still reads the whole body: what was read to find
    the field is replayed. Render tokens with
    `coatcheck.csrf.get_token(environ["coatcheck.session"])`. Exemptions are explicit:
    `exempt_paths`.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        trusted_origins: Iterable[str],
        field_name: str = csrf.DEFAULT_FIELD_NAME,
        header_name: str = csrf.DEFAULT_HEADER_NAME,
        exempt_paths: Iterable[str] = (),
        max_body_size: int = csrf.DEFAULT_MAX_BODY_SIZE,
        trust_proxy: bool | None = None,
    ) -> None:
        self.app = app
        self.policy = csrf.CSRFPolicy.build(
            trusted_origins=trusted_origins,
            field_name=field_name,
            header_name=header_name,
            exempt_paths=exempt_paths,
            max_body_size=max_body_size,
        )
        self.trust_proxy = csrf.checked_trust_proxy(trust_proxy)
        self._token_key = "HTTP_" + self.policy.header_name.upper().replace("-", "_")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        if method in csrf.SAFE_METHODS:
            return self.app(environ, start_response)  # before anything else: nothing to check
        session = environ.get(ENVIRON_KEY)
        request = self._request(environ, method, session)

        def secret() -> str | None:
            return session_secret(session) if isinstance(session, MutableMapping) else None

        has_session = isinstance(session, MutableMapping)
        verdict = csrf.evaluate(request, self.policy, session_token=secret, has_session=has_session)
        if verdict is csrf.READ_FORM:
            found = read_form_token(environ, request.content_type, self.policy)
            if isinstance(found, csrf.Verdict):
                return _refuse(start_response, found, session, request.path)
            verdict = csrf.evaluate(
                request, self.policy, session_token=secret, form_token=found, form_read=True
            )
        if not verdict.allowed:
            return _refuse(start_response, verdict, session, request.path)
        return self.app(environ, start_response)

    def _request(self, environ: dict[str, Any], method: str, session: object) -> csrf.CSRFRequest:
        info = request_info(environ)
        trust = self.trust_proxy if self.trust_proxy is not None else session_trusts_proxy(session)
        headers = [
            (name, str(environ[key]).encode("latin-1"))
            for key, name in _CSRF_HEADERS.items()
            if key in environ
        ]
        token = environ.get(self._token_key)
        if token is not None:
            headers.append((self.policy.header_name.encode("latin-1"), str(token).encode("latin-1")))
        return csrf.CSRFRequest.from_headers(
            method=method,
            path=info.path,
            secure=is_secure(info.scheme, info.forwarded_proto, trust),
            headers=headers,
            header_name=self.policy.header_name,
        )


def _refuse(start_response: StartResponse, verdict: csrf.Verdict, session: object, path: str) -> list[bytes]:
    csrf_refused(session, verdict.reason, path)
    response = refused(verdict.status, verdict.reason, verdict.detail)
    start_response(response.status_line, response.str_headers)
    return [response.body]


__all__ = [
    "ENVIRON_KEY",
    "CSRFMiddleware",
    "SessionMiddleware",
    "SyncBridge",
    "WSGISession",
    "request_info",
]
