"""Flask integration: `flask.session` becomes a coatcheck session.

    from coatcheck.flask import Session
    app.config["SESSION_STORE"] = "redis://localhost/0"
    Session(app)            # or: sessions = Session(); sessions.init_app(app)

A Flask `SessionInterface` whose `open_session` / `save_session` run the same
`SessionManager` load and commit as the ASGI and WSGI middleware, through the sync bridge.
Flask calls `save_session` inside `process_response`, before the WSGI `start_response`, so
the store write finishes before any header goes out. Flask's `flash()`, Flask-Login and
Flask-WTF work unchanged, since they only use `flask.session` as a mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import NullSession, SessionInterface, SessionMixin
from markupsafe import Markup, escape
from werkzeug.datastructures import Headers
from werkzeug.exceptions import Forbidden, ServiceUnavailable

from . import csrf as rules
from ._http import refused
from .asgi import _UNAVAILABLE
from .config import Cookie, seconds
from .csrf.tokens import session_secret
from .csrf.wsgi import read_form_token
from .engine import is_secure
from .errors import ConfigurationError, SessionStoreError
from .runtime import log_store_error
from .session import CSRF_KEY
from .wsgi import (
    CACHE_HEADER_NAMES,
    ENVIRON_KEY,
    UNAVAILABLE_HEADERS,
    WSGISession,
    WSGISessionManager,
    cache_headers,
    request_info,
)

if TYPE_CHECKING:
    from werkzeug.sansio.response import Response as BaseResponse

F = TypeVar("F", bound=Callable[..., Any])

_STORE_FAILED = "coatcheck.store_failed"
_EXTENSION = "coatcheck"


class FlaskSession(WSGISession, SessionMixin):
    """`flask.session`: a coatcheck `Session` with the attributes Flask's API expects.

    `permanent` maps to the cookie's lifetime (PERMANENT_SESSION_LIFETIME when True, a
    browser-session cookie when False); `new` is `is_new`; setting `modified = True` forces
    a save, as with Flask's own session.
    """

    @property
    def permanent(self) -> bool:
        return self.cookie.max_age_seconds is not None

    @permanent.setter
    def permanent(self, value: bool) -> None:
        manager = self._manager
        lifetime = manager.permanent_lifetime if isinstance(manager, FlaskSessionManager) else None
        wanted = lifetime if value else None
        if self.cookie.max_age_seconds != wanted:  # apps set it on every request: only changes count
            self.cookie.max_age = wanted

    @property
    def new(self) -> bool:  # type: ignore[override]
        return self.is_new

    @property
    def accessed(self) -> bool:
        return self._accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        # Flask sets this whenever the `flask.session` proxy is looked up, even for
        # `session.permanent`; the mapping itself tracks real reads and writes, which is
        # what decides Vary: Cookie and Cache-Control: private.
        pass

    @property
    def modified(self) -> bool:
        return super().modified

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:  # Flask's idiom for "I mutated something nested, save it"
            self._accessed = True
            self._intent_modified = True


class FlaskSessionManager(WSGISessionManager):
    """The manager of one Flask app: hands out `FlaskSession`s."""

    session_class = FlaskSession

    def __init__(self, *, permanent_lifetime: float = 31 * 86400.0, **options: Any) -> None:
        super().__init__(**options)
        self.permanent_lifetime = permanent_lifetime


class NoSession(NullSession):
    """`flask.session` when no coatcheck session exists for the request (its path is outside
    the cookie path, or the store failed and the request is being answered with 503)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(
            "no session for this request: its path is outside SESSION_COOKIE_PATH, "
            "or the session store did not answer"
        )

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _refuse


class CoatcheckSessionInterface(SessionInterface):
    """Flask's hook: load at request start, commit in `process_response`."""

    null_session_class = NoSession

    def __init__(self, manager: FlaskSessionManager) -> None:
        self.manager = manager

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        info = request_info(request.environ)
        if not self.manager.in_scope(info.path):
            return None
        try:
            session = self.manager.load_sync(info)
        except SessionStoreError as exc:
            log_store_error(exc, "loading a session")
            request.environ[_STORE_FAILED] = True  # _refuse_when_store_failed answers 503
            return None
        request.environ[ENVIRON_KEY] = session
        assert isinstance(session, FlaskSession)
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: BaseResponse) -> None:
        if not isinstance(session, FlaskSession) or session._request is None:
            return
        try:
            plan = self.manager.commit_sync(session, session._request)
        except SessionStoreError as exc:
            log_store_error(exc, "saving a session")
            _become_unavailable(response)
            return
        headers = response.headers
        if plan.cache_headers:
            caching = [(n, v) for n, v in headers.items() if n.lower() in CACHE_HEADER_NAMES]
            headers.remove("Vary")
            headers.remove("Cache-Control")
            headers.extend(cache_headers(caching))
        for value in plan.set_cookies():  # client-side sessions may send several (chunks)
            headers.add("Set-Cookie", value.decode("latin-1"))


def _become_unavailable(response: BaseResponse) -> None:
    """Turn the app's response into the 503 the WSGI middleware sends, before any byte of it
    goes out, closing the app's body (a generator may hold resources)."""
    body = getattr(response, "response", None)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    response.status_code = 503
    response.headers = Headers(UNAVAILABLE_HEADERS)
    if isinstance(response, Response):
        response.set_data(_UNAVAILABLE)


def _refuse_when_store_failed() -> None:
    if request.environ.get(_STORE_FAILED):
        raise ServiceUnavailable("The session store did not answer. Please retry shortly.", retry_after=5)


# ---- configuration --------------------------------------------------------------------------
_PLAIN_OPTIONS = {
    "SESSION_RESAVE": "resave",
    "SESSION_SAVE_UNINITIALIZED": "save_uninitialized",
    "SESSION_ROLLING": "rolling",
    "SESSION_TRUST_PROXY": "trust_proxy",
    "SESSION_IDLE_TIMEOUT": "idle_timeout",
    "SESSION_ABSOLUTE_TIMEOUT": "absolute_timeout",
    "SESSION_TOUCH_AFTER": "touch_after",
    "SESSION_STORE_TIMEOUT": "store_timeout",
    "SESSION_CLIENT_HINTS": "client_hints",
    "SESSION_INSECURE_DEV_SECRET": "insecure_dev_secret",
    "SESSION_SERIALIZER": "serializer",
    "SESSION_COMPAT": "compat",
}


def options_from_config(config: Mapping[str, Any], *, need_secret: bool = True) -> dict[str, Any]:
    """`FlaskSessionManager` options from a Flask config (the mapping is documented in
    docs/flask.md). Raises ConfigurationError naming the config key to change.
    `need_secret=False`: the secret is given otherwise (`Session(app, secret=...)`)."""
    if "SESSION_TYPE" in config and "SESSION_STORE" not in config:
        raise ConfigurationError(
            "SESSION_TYPE is Flask-Session's setting: coatcheck reads SESSION_STORE, a URL such as "
            "'redis://localhost/0' or 'sqlite:///sessions.db', or a store object"
        )
    options: dict[str, Any] = {"secret": _secret(config)} if need_secret else {}
    if config.get("SESSION_STORE") is not None:
        options["store"] = config["SESSION_STORE"]
    options["name"] = config.get("SESSION_COOKIE_NAME") or "session"
    if config.get("SESSION_COMPAT") and options["name"] == "session":
        options["name"] = None  # Flask's default name: let compat="express" pick connect.sid
    lifetime = _lifetime(config)
    options["permanent_lifetime"] = lifetime
    secure = config.get("SESSION_COOKIE_SECURE", False)
    same_site = config.get("SESSION_COOKIE_SAMESITE")
    options["cookie"] = Cookie(
        max_age=lifetime if config.get("SESSION_PERMANENT", False) else None,
        # Flask's defaults (False, None) mean "not configured": coatcheck's safe defaults apply.
        secure=True if secure is True else "auto",
        same_site="lax" if same_site is None else str(same_site).lower(),  # type: ignore[arg-type]
        http_only=bool(config.get("SESSION_COOKIE_HTTPONLY", True)),
        path=config.get("SESSION_COOKIE_PATH") or config.get("APPLICATION_ROOT") or "/",
        domain=config.get("SESSION_COOKIE_DOMAIN") or None,
        partitioned=bool(config.get("SESSION_COOKIE_PARTITIONED", False)),
        priority=config.get("SESSION_COOKIE_PRIORITY"),
    )
    for key, option in _PLAIN_OPTIONS.items():
        if key in config:
            options[option] = config[key]
    return options


def _secret(config: Mapping[str, Any]) -> Any:
    explicit = config.get("SESSION_SECRET")
    if explicit:
        return explicit
    key = config.get("SECRET_KEY")
    if not key:
        raise ConfigurationError(
            "coatcheck.flask.Session needs a secret: set app.config['SECRET_KEY'] (or SESSION_SECRET); "
            'make one with `coatcheck secret` or `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
        )
    fallbacks = config.get("SECRET_KEY_FALLBACKS") or []  # Flask >= 3.1: old keys still verify
    return [key, *fallbacks]


def _lifetime(config: Mapping[str, Any]) -> float:
    value = config.get("PERMANENT_SESSION_LIFETIME", timedelta(days=31))
    lifetime = seconds(value, "PERMANENT_SESSION_LIFETIME")
    if not lifetime:
        raise ConfigurationError(
            "PERMANENT_SESSION_LIFETIME must be a positive timedelta or number of seconds"
        )
    return lifetime


# ---- the extension --------------------------------------------------------------------------
class Session:
    """The Flask extension. `Session(app)` or `Session()` then `init_app(app)`.

    Keyword options override the app's config (they are `SessionMiddleware`'s options).
    `rotate_on_login` (default True) gives Flask-Login a fixation-safe login: when
    `login_user()` succeeds the session gets a new id (data kept) bound to the user, and
    `logout_user()` retires the old id.
    """

    def __init__(self, app: Flask | None = None, *, rotate_on_login: bool = True, **options: Any) -> None:
        self.options = options
        self.rotate_on_login = rotate_on_login
        self._managers: dict[int, FlaskSessionManager] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        config_options = options_from_config(app.config, need_secret="secret" not in self.options)
        manager = FlaskSessionManager(**{**config_options, **self.options})
        app.session_interface = CoatcheckSessionInterface(manager)
        app.extensions[_EXTENSION] = manager
        self._managers[id(app)] = manager
        # First of all before_request functions: nothing should run on a 503.
        app.before_request_funcs.setdefault(None, []).insert(0, _refuse_when_store_failed)
        if self.rotate_on_login:
            _connect_flask_login(app)

    @property
    def store(self) -> Any:
        """The store of the current app (or of the only app this extension was set up on)."""
        if len(self._managers) == 1:
            return next(iter(self._managers.values())).store
        return manager_for().store


def manager_for(app: Flask | None = None) -> FlaskSessionManager:
    """The coatcheck SessionManager set up on `app` (default: the current app)."""
    target = app if app is not None else current_app
    manager = target.extensions.get(_EXTENSION)
    if not isinstance(manager, FlaskSessionManager):
        raise RuntimeError("coatcheck.flask.Session(app) was not set up on this app")
    return manager


def current_session() -> FlaskSession:
    """`flask.session` as a `FlaskSession` (typed), or RuntimeError if there is none."""
    from flask import session

    obj = session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(obj, FlaskSession):
        raise RuntimeError("there is no coatcheck session for this request")
    return obj


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
    from flask import session

    obj = session._get_current_object()  # type: ignore[attr-defined]
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
    manager = app.extensions.get(_EXTENSION)
    if not isinstance(manager, FlaskSessionManager):
        raise ConfigurationError("CSRFProtect needs coatcheck.flask.Session(app) on the same app")
    info = request_info(environ)
    csrf_request = rules.CSRFRequest.from_headers(
        method=request.method,
        path=info.path,
        secure=is_secure(info.scheme, info.forwarded_proto, manager.settings.trust_proxy),
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
    "FlaskSessionManager",
    "Session",
    "csrf_exempt",
    "current_session",
    "generate_csrf",
    "manager_for",
    "options_from_config",
]
