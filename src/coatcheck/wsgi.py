"""SessionMiddleware for WSGI apps (Flask, Django, Pyramid, Bottle, plain WSGI).

Same options and semantics as the ASGI middleware (`coatcheck.asgi`): the same
`SessionManager` loads and commits, through the sync bridge (`coatcheck._sync`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from types import TracebackType
from typing import Any

from . import _sync, csrf
from ._http import refused
from .asgi import _UNAVAILABLE
from .csrf.tokens import session_secret, session_trusts_proxy
from .csrf.wsgi import read_form_token
from .engine import CommitPlan, add_cache_headers, is_secure
from .errors import SessionStoreError
from .express import adopt_store
from .runtime import RequestInfo, SessionManager, log_store_error
from .session import Session
from .stores.url import from_url

ENVIRON_KEY = "coatcheck.session"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
Headers = list[tuple[str, str]]
Write = Callable[[bytes], object]
StartResponse = Callable[..., Write]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

UNAVAILABLE_STATUS = "503 Service Unavailable"
UNAVAILABLE_HEADERS: Headers = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Retry-After", "5"),
    ("Cache-Control", "no-store"),
    ("Content-Length", str(len(_UNAVAILABLE))),
]


class WSGISession(Session):
    """The session WSGI handlers see: a `Session` whose explicit I/O is synchronous."""

    def save(self) -> None:  # type: ignore[override]  # the sync twin of `await session.save()`
        """Commit now instead of when the response starts. Raises SessionStoreError."""
        if self._manager is None:
            raise RuntimeError("this session is not attached to a middleware")
        _sync.run_sync(self._manager.save_now(self))

    def reload(self) -> None:  # type: ignore[override]  # the sync twin of `await session.reload()`
        """Discard this request's changes and read the session from the store again."""
        if self._manager is None:
            raise RuntimeError("this session is not attached to a middleware")
        _sync.run_sync(self._manager.reload(self))


class WSGISessionManager(SessionManager):
    """A SessionManager that hands out `WSGISession`s and survives fork().

    A store given as a URL is rebuilt in each forked child (gunicorn workers of a preloaded
    app), so no connection is ever shared between processes. A store given as an object
    must itself be fork-aware (the built-in ones check their pid).
    """

    session_class = WSGISession

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        store = options.get("store")
        self._store_url = store if isinstance(store, str) else None
        _sync.after_fork_in_child(self._renew_store)

    def _renew_store(self) -> None:
        if self._store_url is not None:
            _sync.keep_forever(self.store)  # never closed here: it may hold the parent's sockets
            store = from_url(self._store_url)
            if self.record_format is not None:  # compat="express": the Node layout again
                store = adopt_store(store, self.record_format)
            self.store = store

    def load_sync(self, request: RequestInfo) -> Session:
        """`load` from a WSGI thread; enters the event loop only if the store must be read.
        Raises SessionStoreError."""
        session = self.load_without_io(request)
        return session if session is not None else _sync.run_sync(self.load(request))

    def commit_sync(self, session: Session, request: RequestInfo, *, unset: bool = False) -> CommitPlan:
        """`commit` from a WSGI thread; enters the event loop only if the store must be
        written (a request that only read its session needs no I/O). Raises SessionStoreError."""
        plan, store_work = self.prepare_commit(session, request, unset=unset)
        if store_work:
            _sync.run_sync(self.apply_commit(session, plan))
        return plan

    def close_sync(self) -> None:
        """Close the store (its connections and threads)."""
        _sync.run_sync(self.close())


def request_info(environ: dict[str, Any]) -> RequestInfo:
    """Pull what the engine needs out of a WSGI environ."""
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


CACHE_HEADER_NAMES = frozenset(("vary", "cache-control"))


def cache_headers(current: Headers) -> Headers:
    """`engine.add_cache_headers` for str headers: given the response's Vary and
    Cache-Control headers (possibly none), the ones to send instead."""
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in current]
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in add_cache_headers(raw)]


def with_session_headers(headers: Headers, plan: CommitPlan) -> Headers:
    """The response headers with what the commit plan adds (Set-Cookie, Vary, Cache-Control)."""
    if plan.cache_headers:
        kept: Headers = []
        caching: Headers = []
        for name, value in headers:
            (caching if name.lower() in CACHE_HEADER_NAMES else kept).append((name, value))
        headers = kept + cache_headers(caching)
    cookies = plan.set_cookies()  # client-side sessions may send several (chunks)
    if cookies:
        headers = [*headers, *(("Set-Cookie", value.decode("latin-1")) for value in cookies)]
    return headers


def _discard(_: bytes) -> None:
    """The `write` of a response that was replaced by a 503: the app's body goes nowhere."""


class SessionMiddleware:
    """Server-side (or, with CookieStore, client-side) sessions for any WSGI app.

    Puts a `WSGISession` at `environ["coatcheck.session"]` and commits it when the app calls
    `start_response`, before the headers are passed on: the server writes nothing before
    that call returns and the first body chunk exists, so a redirect can never race the
    save. Answers 503 if the store cannot load or save. Options are those of the ASGI
    `SessionMiddleware` (DESIGN.md §2).
    """

    def __init__(self, app: WSGIApp, **options: Any) -> None:
        self.app = app
        self.manager = WSGISessionManager(**options)

    @property
    def store(self) -> Any:
        return self.manager.store

    def close(self) -> None:
        """Close the store; call at shutdown if your server offers a hook."""
        self.manager.close_sync()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = request_info(environ)
        manager = self.manager
        if not manager.in_scope(request.path):
            return self.app(environ, start_response)
        try:
            session = manager.load_sync(request)
        except SessionStoreError as exc:
            log_store_error(exc, "loading a session")
            start_response(UNAVAILABLE_STATUS, list(UNAVAILABLE_HEADERS))
            return [_UNAVAILABLE]
        environ[ENVIRON_KEY] = session
        response = _SessionResponse(manager, session, request, environ, start_response)
        body = self.app(environ, response.start_response)
        if response.plan is not None:
            return body  # committed already (the usual case): the server gets the app's iterable itself
        return _LateStartBody(response, body)


class _SessionResponse:
    """One request's `start_response` wrapper: commits on the first call, then passes the
    headers (plus the session's) on, or a 503 if the store failed."""

    __slots__ = ("environ", "failed", "manager", "plan", "request", "server_start", "session")

    def __init__(
        self,
        manager: WSGISessionManager,
        session: Session,
        request: RequestInfo,
        environ: dict[str, Any],
        server_start: StartResponse,
    ) -> None:
        self.manager = manager
        self.session = session
        self.request = request
        self.environ = environ
        self.server_start = server_start
        self.plan: CommitPlan | None = None
        self.failed = False

    def start_response(self, status: str, headers: Headers, exc_info: ExcInfo | None = None) -> Write:
        # A second call (an error page replacing the headers, with exc_info) reuses the
        # plan: the store was written once, and the new headers must carry its cookie too.
        if self.plan is None and not self.failed:
            try:
                self.plan = self.manager.commit_sync(
                    self.session, self.request, unset=self.environ.get(ENVIRON_KEY) is not self.session
                )
            except SessionStoreError as exc:
                log_store_error(exc, "saving a session")
                self.failed = True
        if self.failed:
            self.server_start(UNAVAILABLE_STATUS, list(UNAVAILABLE_HEADERS), exc_info)
            return _discard
        assert self.plan is not None
        return self.server_start(status, with_session_headers(headers, self.plan), exc_info)


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
            return _UNAVAILABLE
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
                return _refuse(start_response, found)
            verdict = csrf.evaluate(
                request, self.policy, session_token=secret, form_token=found, form_read=True
            )
        if not verdict.allowed:
            return _refuse(start_response, verdict)
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


def _refuse(start_response: StartResponse, verdict: csrf.Verdict) -> list[bytes]:
    response = refused(verdict.status, verdict.reason, verdict.detail)
    start_response(response.status_line, response.str_headers)
    return [response.body]


__all__ = [
    "ENVIRON_KEY",
    "CSRFMiddleware",
    "SessionMiddleware",
    "WSGISession",
    "WSGISessionManager",
    "cache_headers",
    "request_info",
    "with_session_headers",
]
