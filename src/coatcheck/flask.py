"""Flask integration: `flask.session` becomes a coatcheck session.

    from coatcheck.flask import Session
    app.config["SESSION_STORE"] = "redis://localhost/0"
    Session(app)            # or: sessions = Session(); sessions.init_app(app)

A Flask `SessionInterface` whose `open_session` / `save_session` run the same runtime load
and commit as the ASGI and WSGI middleware, through the sync bridge. Flask calls
`save_session` inside `process_response`, before the WSGI `start_response`, so the store
write finishes before any header goes out. Flask's `flash()`, Flask-Login and Flask-WTF work
unchanged, since they only use `flask.session` as a mapping.

Like Flask, the integration reads the app's configuration when a request needs it: the
runtime is built at the first request (so config set after `Session(app)` counts), and built
again, keeping the store it opened, if the configuration it came from changes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

try:
    from flask import Flask, Request, Response, g, request
    from flask.sessions import NullSession, SessionInterface, SessionMixin
    from markupsafe import Markup, escape
    from werkzeug.datastructures import Headers
    from werkzeug.exceptions import Forbidden, ServiceUnavailable
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("coatcheck.flask needs Flask: pip install 'coatcheck[flask]'") from exc

from . import _http, audit
from . import csrf as rules
from ._flask_config import (
    options_from_config,
)
from ._flask_session import (
    EXTENSION,
    Built,
    FlaskSession,
    FlaskSessions,
    current_session,
    sessions_for,
)
from ._http import refused
from .config import Compat, Cookie, Duration, Secret, Unset, option_names
from .csrf.tokens import session_secret
from .csrf.wsgi import read_form_token
from .errors import ConfigurationError, SessionStoreError
from .runtime import log_store_error
from .session import CSRF_KEY
from .wsgi import ENVIRON_KEY, UNAVAILABLE, request_info

if TYPE_CHECKING:
    from collections.abc import Sequence

    from werkzeug.sansio.response import Response as BaseResponse

    from .codec import Serializer
    from .events import OnEvent
    from .migrate import LegacyReader
    from .stores.base import ClientSideStore, Store

F = TypeVar("F", bound=Callable[..., Any])

_STORE_FAILED = "coatcheck.store_failed"
_BUILT = "coatcheck.flask.built"  # environ: the runtime that loaded this request's session


class NoSession(NullSession):
    """`flask.session` when no coatcheck session exists for the request: no secret is set,
    its path is outside the cookie path, or the store failed and the request gets a 503."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(
            "the session is unavailable for this request: no secret key is set (set app.secret_key "
            "or SESSION_SECRET), its path is outside SESSION_COOKIE_PATH, or the session store did not answer"
        )

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _refuse


class CoatcheckSessionInterface(SessionInterface):
    """Flask's hook: load at request start, commit in `process_response`."""

    null_session_class = NoSession

    def __init__(self, sessions: FlaskSessions) -> None:
        self.sessions = sessions

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        built = self.sessions.current()
        bridge = built.bridge
        if bridge is None:
            return None
        environ = request.environ
        info = request_info(environ)
        runtime = bridge.runtime
        if not built.every_path and not runtime.in_scope(info.path):
            return None
        # No cookie of ours: a new session, no I/O (what bridge.load starts with).
        session = runtime.load_without_io(info)
        if session is None:
            try:
                session = bridge.load(info)
            except SessionStoreError as exc:
                log_store_error(exc, "loading a session")
                environ[_STORE_FAILED] = True
                _refuse_from_now_on(app)  # the check that answers this request with a 503
                return None
        environ[ENVIRON_KEY] = session
        environ[_BUILT] = built
        assert isinstance(session, FlaskSession)
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: BaseResponse) -> None:
        if not isinstance(session, FlaskSession):
            return
        if session.untouched and session.stored_id is None:
            return  # unused and never stored: the commit plans nothing and nothing is refreshed
        built = request.environ.get(_BUILT)
        if session.request is None or not isinstance(built, Built):
            return
        assert built.bridge is not None
        session.before_commit(refresh=built.side.refresh_each_request)
        try:
            added = built.bridge.commit(session, session.request)
        except SessionStoreError as exc:
            log_store_error(exc, "saving a session")
            _become_unavailable(response)
            return
        if not added:
            return
        headers = response.headers
        caching = _http.cache_headers_of(headers.items())
        headers.remove("Vary")
        headers.remove("Cache-Control")
        headers.extend(_http.with_session_str_headers(caching, added))


def _become_unavailable(response: BaseResponse) -> None:
    """Turn the app's response into the 503 the WSGI middleware sends, before any byte of it
    goes out, closing the app's body (a generator may hold resources)."""
    body = getattr(response, "response", None)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    response.status_code = UNAVAILABLE.status
    response.headers = Headers(UNAVAILABLE.str_headers)
    if isinstance(response, Response):
        response.set_data(UNAVAILABLE.body)


try:  # the request context itself: one ContextVar read instead of a LocalProxy lookup
    from flask.globals import _cv_request
except ImportError:  # pragma: no cover - a Flask without it: the proxy
    _cv_request = None  # type: ignore[assignment]


def _refuse_from_now_on(app: Flask) -> None:
    """Put `_refuse_when_store_failed` first among the app's before_request functions, once:
    until a load fails, requests run no check. The list is replaced, never changed in place,
    so a request iterating it in another thread runs each function once."""
    funcs = app.before_request_funcs.get(None, [])
    if _refuse_when_store_failed not in funcs:
        app.before_request_funcs[None] = [_refuse_when_store_failed, *funcs]


def _refuse_when_store_failed() -> None:
    environ = _cv_request.get().request.environ if _cv_request is not None else request.environ
    if environ.get(_STORE_FAILED):
        raise ServiceUnavailable("The session store did not answer. Please retry shortly.", retry_after=5)


# ---- the extension --------------------------------------------------------------------------
class _Default(enum.Enum):
    """A keyword argument not given: the app's config (or the option's default) applies."""

    DEFAULT = "from config"


DEFAULT = _Default.DEFAULT


class Session:
    """The Flask extension. `Session(app)` or `Session()` then `init_app(app)`.

    Keyword options override the app's config; each is an option of `SessionMiddleware`
    (`coatcheck.config.Settings`), read from `SESSION_<NAME>` when not given. The config is
    read when the first request needs the session (and again if it changes), as Flask does.
    `rotate_on_login` (default True) gives Flask-Login a fixation-safe login: when
    `login_user()` succeeds the session gets a new id (data kept) bound to the user, and
    `logout_user()` retires the old id.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        rotate_on_login: bool = True,
        secret: Secret | _Default = DEFAULT,
        store: Store | ClientSideStore | str | _Default | None = DEFAULT,
        name: str | _Default | None = DEFAULT,
        cookie: Cookie | _Default = DEFAULT,
        resave: bool | _Default = DEFAULT,
        save_uninitialized: bool | _Default = DEFAULT,
        rolling: bool | _Default = DEFAULT,
        unset: Unset | _Default = DEFAULT,
        trust_proxy: bool | _Default = DEFAULT,
        idle_timeout: Duration | _Default | None = DEFAULT,
        absolute_timeout: Duration | _Default | None = DEFAULT,
        touch_after: Duration | _Default = DEFAULT,
        client_hints: bool | _Default = DEFAULT,
        store_timeout: Duration | _Default | None = DEFAULT,
        insecure_dev_secret: bool | _Default = DEFAULT,
        serializer: Serializer | str | _Default = DEFAULT,
        clock: Callable[[], float] | _Default = DEFAULT,
        compat: Compat | _Default | None = DEFAULT,
        on_event: OnEvent | _Default | None = DEFAULT,
        migrate_from: Sequence[LegacyReader] | _Default = DEFAULT,
    ) -> None:
        given = dict(locals())
        self.options = {k: v for k, v in given.items() if k in option_names() and v is not DEFAULT}
        self.rotate_on_login = rotate_on_login
        self._apps: dict[int, FlaskSessions] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        sessions = FlaskSessions(app, self.options)
        sessions.current()  # a misconfiguration fails here, at start-up (a missing secret is Flask's null session)
        app.session_interface = CoatcheckSessionInterface(sessions)
        app.extensions[EXTENSION] = sessions
        self._apps[id(app)] = sessions
        # The 503 check is added, first of all before_request functions, when a load fails.
        if self.rotate_on_login:
            _connect_flask_login(app)

    @property
    def store(self) -> Any:
        """The store of the current app (or of the only app this extension was set up on)."""
        if len(self._apps) == 1:
            return next(iter(self._apps.values())).store
        return sessions_for().store


manager_for = sessions_for  # the name earlier releases documented


def _connect_flask_login(app: Flask) -> None:
    try:
        from flask_login import user_logged_in, user_logged_out
    except ImportError:
        return
    if app.extensions.get("coatcheck.flask_login"):
        return  # init_app called again on this app: one rotation per login is enough
    app.extensions["coatcheck.flask_login"] = True
    user_logged_in.connect(_rotate_on_login, app, weak=False)
    user_logged_out.connect(_rotate_on_logout, app, weak=False)


def _rotate_on_login(sender: Flask, user: Any = None, **_: Any) -> None:
    session = _session_or_none()
    if session is not None and user is not None:
        session.login(user.get_id())  # new id, data kept (Flask-Login's keys included)


def _rotate_on_logout(sender: Flask, user: Any = None, **_: Any) -> None:
    session = _session_or_none()
    if session is None:
        return
    # Retire the old id and unbind the user, keeping what Flask-Login left in the session
    # (its "_remember": "clear" marker, flashes): destroy, then write it back into a new one.
    kept = {k: v for k, v in session.items() if k != CSRF_KEY}
    session.logout()
    if kept:
        session.update(kept)


def _session_or_none() -> FlaskSession | None:
    from flask import session as flask_session

    obj = flask_session._get_current_object()  # type: ignore[attr-defined]
    return obj if isinstance(obj, FlaskSession) else None


# ---- CSRF -----------------------------------------------------------------------------------
class CSRFError(Forbidden):
    """A request refused by `CSRFProtect` (403, or 413 for a form whose token field is past
    the body limit). Register an error handler for it to render your own page; `reason` is
    the machine-readable check that failed."""

    def __init__(self, verdict: rules.Verdict) -> None:
        super().__init__(description=verdict.detail)
        self.code = verdict.status
        self.reason = verdict.reason
        self._response = refused(verdict.status, verdict.reason, verdict.detail)

    def get_body(self, environ: Any = None, scope: Any = None) -> str:
        return self._response.body.decode()

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return self._response.str_headers


def csrf_exempt(view: F) -> F:
    """Mark a Flask view function as not needing a CSRF token (webhooks, token-auth APIs)."""
    return rules.csrf_exempt(view)


class CSRFProtect:
    """CSRF protection for Flask, with the rules of `coatcheck.csrf` (the same `evaluate` as
    the ASGI `CSRFMiddleware`). Needs `coatcheck.flask.Session` on the same app.

    Config: `CSRF_TRUSTED_ORIGINS` (required: the origins your pages are served from),
    `CSRF_FIELD_NAME`, `CSRF_HEADER_NAME`, `CSRF_EXEMPT_PATHS`, `CSRF_MAX_BODY_SIZE`. The
    token field is looked for in the first `max_body_size` bytes of a form (read
    incrementally and replayed, so the view parses the same form); a later field gets 413.
    Unsafe requests outside the session cookie's path get 403 (`no-session`).
    Templates get `csrf_token()` (a freshly masked token) and `csrf_input()` (the hidden field).
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        config = app.config
        settings: dict[str, Any] = {
            "trusted_origins": config.get("CSRF_TRUSTED_ORIGINS", ()),
            "field_name": config.get("CSRF_FIELD_NAME", rules.DEFAULT_FIELD_NAME),
            "header_name": config.get("CSRF_HEADER_NAME", rules.DEFAULT_HEADER_NAME),
            "exempt_paths": config.get("CSRF_EXEMPT_PATHS", ()),
            "max_body_size": config.get("CSRF_MAX_BODY_SIZE", rules.DEFAULT_MAX_BODY_SIZE),
            "origins_setting": "app.config['CSRF_TRUSTED_ORIGINS']",
        }
        policy = rules.CSRFPolicy.build(**{**settings, **self.options})
        app.extensions["coatcheck.csrf"] = policy

        def check() -> None:
            _check_csrf(app, policy)

        app.before_request(check)
        field = policy.field_name

        def csrf_token() -> str:
            return generate_csrf()

        def csrf_input() -> Markup:
            return Markup('<input type="hidden" name="{}" value="{}">').format(
                escape(field), escape(generate_csrf())
            )

        app.jinja_env.globals.update(csrf_token=csrf_token, csrf_input=csrf_input)


def generate_csrf() -> str:
    """A freshly masked CSRF token for the current session (creates the token on first use)."""
    return rules.get_token(current_session())


def _check_csrf(app: Flask, policy: rules.CSRFPolicy) -> None:
    if request.method in rules.SAFE_METHODS:
        return
    environ = request.environ
    session = environ.get(ENVIRON_KEY)
    sessions = app.extensions.get(EXTENSION)
    if not isinstance(sessions, FlaskSessions):
        raise ConfigurationError("CSRFProtect needs coatcheck.flask.Session(app) on the same app")
    info = request_info(environ)
    csrf_request = rules.CSRFRequest.from_headers(
        method=request.method,
        path=info.path,
        secure=sessions.runtime.is_secure(info),
        headers=_header_pairs(request.headers.items()),
        header_name=policy.header_name,
    )
    has_session = isinstance(session, FlaskSession)  # False: the path is outside the cookie path

    def secret() -> str | None:
        return session_secret(session) if isinstance(session, FlaskSession) else None

    exempt = rules.is_marked_exempt(app.view_functions.get(request.endpoint or ""))
    verdict = rules.evaluate(
        csrf_request, policy, session_token=secret, has_session=has_session, exempt=exempt
    )
    if verdict is rules.READ_FORM:
        found = _form_token(csrf_request, policy)
        if isinstance(found, rules.Verdict):
            verdict = found
        else:
            verdict = rules.evaluate(
                csrf_request, policy, session_token=secret, form_token=found, form_read=True, exempt=exempt
            )
    if not verdict.allowed:
        g.coatcheck_csrf_failure = verdict.reason
        audit.csrf_refused(session, verdict.reason, info.path, fallback=sessions.runtime)
        raise CSRFError(verdict)


def _header_pairs(items: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in items]


def _form_token(csrf_request: rules.CSRFRequest, policy: rules.CSRFPolicy) -> str | rules.Verdict | None:
    """The token field of the form body, read incrementally within `max_body_size` and
    replayed for the view (Werkzeug parses the same bytes later)."""
    if "form" in request.__dict__:  # an earlier before_request parsed the form already
        value = request.form.get(policy.field_name)
        return value if isinstance(value, str) else None
    found = read_form_token(request.environ, csrf_request.content_type, policy)
    # Werkzeug caches the input stream on first use: make it wrap the replayed body.
    request.__dict__.pop("stream", None)
    return found


__all__ = [
    "CSRFError",
    "CSRFProtect",
    "CoatcheckSessionInterface",
    "FlaskSession",
    "FlaskSessions",
    "Session",
    "csrf_exempt",
    "current_session",
    "generate_csrf",
    "manager_for",
    "options_from_config",
    "sessions_for",
]
