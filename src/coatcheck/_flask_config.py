"""The Flask integration's configuration: Flask's own keys, coatcheck's `SESSION_<OPTION>`
keys and Flask-Session's keys, read into `coatcheck.config.Settings` options (docs/flask.md).

Flask reads its configuration at every request, so the integration does too: `config_key`
is what the runtime was built from, and a different key means building it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .codec import Serializer, serializer_for
from .config import Cookie, option_names, seconds
from .errors import ConfigurationError

logger = logging.getLogger("coatcheck")

PERMANENT_LIFETIME = timedelta(days=31)  # Flask's PERMANENT_SESSION_LIFETIME default
FLASK_NAMED = frozenset({"secret", "name", "cookie"})  # options read from Flask's own keys

# Flask-Session's keys: mapped (store, prefix, serializer, permanence) or without equivalent.
FLASK_SESSION_MAPPED = (
    "SESSION_TYPE",
    "SESSION_REDIS",
    "SESSION_KEY_PREFIX",
    "SESSION_USE_SIGNER",
    "SESSION_SERIALIZATION_FORMAT",
)
FLASK_SESSION_UNMAPPED = {
    "SESSION_ID_LENGTH": "session ids are always 256 random bits",
    "SESSION_CLEANUP_N_REQUESTS": "expired records are dropped by the store's TTL or `coatcheck sessions purge`",
    "SESSION_MEMCACHED": "use SESSION_STORE='memcached://host:port'",
    "SESSION_FILE_DIR": "use SESSION_STORE='sqlite:///sessions.db'",
    "SESSION_FILE_THRESHOLD": "use SESSION_STORE='sqlite:///sessions.db'",
    "SESSION_FILE_MODE": "use SESSION_STORE='sqlite:///sessions.db'",
    "SESSION_CACHELIB": "use SESSION_STORE with a URL",
    "SESSION_MONGODB": "use SESSION_STORE='mongodb://host/db'",
    "SESSION_MONGODB_DB": "use SESSION_STORE='mongodb://host/db'",
    "SESSION_MONGODB_COLLECT": "use SESSION_STORE='mongodb://host/db?collection=...'",
    "SESSION_SQLALCHEMY": "use SESSION_STORE='postgresql://...' or 'mysql://...'",
    "SESSION_SQLALCHEMY_TABLE": "use SESSION_STORE with a SQL URL",
    "SESSION_SQLALCHEMY_SEQUENCE": "use SESSION_STORE with a SQL URL",
    "SESSION_SQLALCHEMY_SCHEMA": "use SESSION_STORE with a SQL URL",
    "SESSION_SQLALCHEMY_BIND_KEY": "use SESSION_STORE with a SQL URL",
    "SESSION_DYNAMODB": "no DynamoDB store: use SESSION_STORE with another backend",
    "SESSION_DYNAMODB_TABLE": "no DynamoDB store",
    "SESSION_DYNAMODB_TABLE_EXISTS": "no DynamoDB store",
}
FLASK_KEYS = (
    "SECRET_KEY_FALLBACKS",
    "SESSION_COOKIE_NAME",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_SAMESITE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_PATH",
    "SESSION_COOKIE_DOMAIN",
    "SESSION_COOKIE_PARTITIONED",
    "SESSION_COOKIE_PRIORITY",
    "APPLICATION_ROOT",
    "PERMANENT_SESSION_LIFETIME",
    "SESSION_PERMANENT",
    "SESSION_REFRESH_EACH_REQUEST",
)
WATCHED = (
    *FLASK_KEYS,
    *FLASK_SESSION_MAPPED,
    *FLASK_SESSION_UNMAPPED,
    *(f"SESSION_{name.upper()}" for name in option_names() if name not in FLASK_NAMED),
)


def config_key(config: Mapping[str, Any], secret_key: Any) -> tuple[Any, ...]:
    """Everything the sessions are built from; compared with == at every request."""
    return (secret_key, *map(config.get, WATCHED))  # map: no Python-level loop per request


VERSION = "_coatcheck_version"  # on a watched config: bumped by every change made through it


class _Watched:
    """Mixed into the app's config class: every change made through the config (item
    assignment, `update`, `from_*`, `ConfigAttribute` setters such as `app.secret_key`) bumps
    its version, so a request compares one integer instead of every watched key."""

    _coatcheck_version = 0

    def _changed(self) -> None:
        self._coatcheck_version += 1

    def __setitem__(self, key: Any, value: Any) -> None:
        self._changed()
        super().__setitem__(key, value)  # type: ignore[misc]

    def __delitem__(self, key: Any) -> None:
        self._changed()
        super().__delitem__(key)  # type: ignore[misc]

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._changed()
        super().update(*args, **kwargs)  # type: ignore[misc]

    def setdefault(self, *args: Any) -> Any:
        self._changed()
        return super().setdefault(*args)  # type: ignore[misc]

    def pop(self, *args: Any) -> Any:
        self._changed()
        return super().pop(*args)  # type: ignore[misc]

    def popitem(self) -> Any:
        self._changed()
        return super().popitem()  # type: ignore[misc]

    def clear(self) -> None:
        self._changed()
        super().clear()  # type: ignore[misc]

    def __ior__(self, other: Any) -> Any:
        self._changed()
        return super().__ior__(other)  # type: ignore[misc]


_watched_classes: dict[type, type] = {}


def watch(config: dict[str, Any]) -> bool:
    """Make `config` count its changes (see `_Watched`); False if its class cannot be swapped,
    in which case every request compares the watched keys."""
    cls = type(config)
    if isinstance(config, _Watched):
        return True
    watched = _watched_classes.get(cls)
    if watched is None:
        watched = _watched_classes[cls] = type(
            f"Watched{cls.__name__}", (_Watched, cls), {"__module__": __name__}
        )
    try:
        config.__class__ = watched
    except TypeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class FlaskSide:
    """What Flask's session semantics need besides the Settings."""

    permanent_lifetime: float  # PERMANENT_SESSION_LIFETIME, seconds
    refresh_each_request: bool  # SESSION_REFRESH_EACH_REQUEST


def options_from_config(
    config: Mapping[str, Any],
    *,
    need_secret: bool = True,
    secret_key: Any = None,
    given: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`coatcheck.config.Settings` options from a Flask config: `SESSION_<OPTION>` for every
    option, Flask's own SECRET_KEY (or `secret_key`, the app's `secret_key` attribute),
    SESSION_COOKIE_*, PERMANENT_SESSION_LIFETIME, and Flask-Session's SESSION_TYPE="redis"
    keys. Raises ConfigurationError naming the key. `need_secret=False`: the secret is given
    otherwise (`Session(app, secret=...)`); `given`: the options passed to `Session(...)`,
    which win. The secret is None when none is set."""
    given = given or {}
    options: dict[str, Any] = {}
    if need_secret:
        options["secret"] = secret_from(config, secret_key)
    for option in option_names():
        key = f"SESSION_{option.upper()}"
        if option not in FLASK_NAMED and config.get(key) is not None:
            options[option] = config[key]
    options["name"] = config.get("SESSION_COOKIE_NAME") or "session"
    if config.get("SESSION_COMPAT") and options["name"] == "session":
        options["name"] = None  # Flask's default name: let compat pick its own (connect.sid)
    lifetime = flask_side(config).permanent_lifetime
    # Flask keeps a session as long as it is used within PERMANENT_SESSION_LIFETIME and has no
    # absolute limit: the server-side deadlines follow, unless set explicitly.
    options.setdefault("idle_timeout", lifetime)
    options.setdefault("absolute_timeout", None)
    options["cookie"] = _cookie(config, lifetime)
    options.update(given)
    if "serializer" not in options:
        # Tagged JSON keeps Flask's types; a session shared with Express or Django stays plain JSON.
        plain = config.get("SESSION_SERIALIZATION_FORMAT") == "json" or options.get("compat") is not None
        options["serializer"] = "json" if plain else "tagged"
    flask_session_options(config, options, flask_secret(config, secret_key))
    return options


def flask_side(config: Mapping[str, Any]) -> FlaskSide:
    value = config.get("PERMANENT_SESSION_LIFETIME", PERMANENT_LIFETIME)
    lifetime = seconds(value, "PERMANENT_SESSION_LIFETIME")
    if not lifetime:
        raise ConfigurationError(
            "PERMANENT_SESSION_LIFETIME must be a positive timedelta or number of seconds"
        )
    return FlaskSide(lifetime, bool(config.get("SESSION_REFRESH_EACH_REQUEST", True)))


def _cookie(config: Mapping[str, Any], lifetime: float) -> Cookie:
    secure = config.get("SESSION_COOKIE_SECURE", False)
    same_site = config.get("SESSION_COOKIE_SAMESITE")
    # Flask-Session makes sessions permanent unless told otherwise; Flask does not.
    permanent = config.get("SESSION_PERMANENT", "SESSION_TYPE" in config)
    return Cookie(
        max_age=lifetime if permanent else None,
        # Flask's defaults (False, None) mean "not configured": coatcheck's safe defaults apply.
        # SameSite=None is only accepted by browsers with Secure: it gets Secure on HTTPS.
        secure=True if secure is True else "auto",
        same_site="lax" if same_site is None else str(same_site).lower(),  # type: ignore[arg-type]
        http_only=bool(config.get("SESSION_COOKIE_HTTPONLY", True)),
        path=config.get("SESSION_COOKIE_PATH") or config.get("APPLICATION_ROOT") or "/",
        domain=config.get("SESSION_COOKIE_DOMAIN") or None,
        partitioned=bool(config.get("SESSION_COOKIE_PARTITIONED", False)),
        priority=config.get("SESSION_COOKIE_PRIORITY"),
    )


def secret_from(config: Mapping[str, Any], secret_key: Any = None) -> Any:
    """SESSION_SECRET, else the app's secret key followed by SECRET_KEY_FALLBACKS (Flask >= 3.1:
    the first signs, all verify); None when no secret is set at all."""
    explicit = config.get("SESSION_SECRET")
    return explicit if explicit else flask_secret(config, secret_key)


def flask_secret(config: Mapping[str, Any], secret_key: Any = None) -> list[Any] | None:
    """The app's own secret key (attribute or SECRET_KEY) and SECRET_KEY_FALLBACKS, or None."""
    key = secret_key if secret_key is not None else config.get("SECRET_KEY")
    if not key:
        return None
    return [key, *(config.get("SECRET_KEY_FALLBACKS") or [])]


# ---- Flask-Session's configuration ------------------------------------------------------------
def flask_session_options(
    config: Mapping[str, Any], options: dict[str, Any], secret: list[Any] | None
) -> None:
    """Map Flask-Session's SESSION_TYPE="redis" configuration onto `options` (in place): the
    store, and a reader that adopts the sessions Flask-Session left (zero-logout switch).
    `secret`: the app's own keys, which signed Flask-Session's cookies (SESSION_USE_SIGNER)."""
    kind = config.get("SESSION_TYPE")
    if kind is None or "store" in options:
        return
    if kind != "redis":
        raise ConfigurationError(
            f"SESSION_TYPE={kind!r} is Flask-Session's setting: coatcheck maps only 'redis'. Set "
            "SESSION_STORE to a URL ('sqlite:///sessions.db', 'postgresql://...', 'mongodb://host/db', "
            "'memcached://host:11211') or a store object"
        )
    serializer = serializer_for(options.get("serializer", "tagged"))
    options["serializer"] = serializer
    options["store"] = _redis_store(config, serializer)
    if "migrate_from" not in options:
        reader = _flask_session_reader(config, secret)
        if reader is not None:
            options["migrate_from"] = [reader]


def _redis_client(config: Mapping[str, Any]) -> Any:
    client = config.get("SESSION_REDIS")
    return "redis://127.0.0.1:6379/0" if client is None else client  # Flask-Session's default: Redis()


def _redis_store(config: Mapping[str, Any], serializer: Serializer) -> Any:
    from .migrate.flask_session import async_redis_client
    from .stores.redis import RedisStore

    client = _redis_client(config)
    prefix = config.get("SESSION_KEY_PREFIX", "session:")
    if isinstance(client, str):
        return RedisStore(client, prefix=prefix, serializer=serializer)
    return RedisStore(client=async_redis_client(client), prefix=prefix, serializer=serializer)


def _flask_session_reader(config: Mapping[str, Any], secret: list[Any] | None) -> Any:
    """A FlaskSessionRedis reader for the sessions Flask-Session wrote, or None (logged) when
    it cannot be built (the migrate extra is not installed, or no secret for a signer)."""
    try:
        from .migrate import FlaskSessionRedis

        return FlaskSessionRedis(
            _redis_client(config),
            key_prefix=config.get("SESSION_KEY_PREFIX", "session:"),
            cookie_name=config.get("SESSION_COOKIE_NAME") or "session",
            use_signer=bool(config.get("SESSION_USE_SIGNER", False)),
            secret_key=secret,
        )
    except ConfigurationError as exc:
        logger.warning(
            "coatcheck.flask: Flask-Session's sessions will not be adopted (%s); users will log in again", exc
        )
        return None


def unmapped_keys(config: Mapping[str, Any]) -> list[str]:
    """The Flask-Session keys set in `config` that have no coatcheck equivalent."""
    return [key for key in FLASK_SESSION_UNMAPPED if config.get(key) is not None]


def unmapped_warning(keys: list[str]) -> str:
    reasons = "; ".join(f"{key} ({FLASK_SESSION_UNMAPPED[key]})" for key in keys)
    return f"coatcheck.flask: these Flask-Session settings have no coatcheck equivalent and are ignored: {reasons}"
