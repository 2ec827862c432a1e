"""`django_store`: the store `SessionMiddleware(compat="django", store=...)` uses.

``store`` is the Django project's database URL (the database session backend's
``django_session`` table), ``django-signed-cookies://`` (the signed_cookies backend), or a
store built here (`DjangoSQLiteStore`, `DjangoSQLStore`, `DjangoSignedCookieStore`). Django's
cache backends are refused: they keep sessions pickled by default, and coatcheck never
unpickles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..django_format import DjangoFormat
from ..errors import ConfigurationError
from .url import query_options

if TYPE_CHECKING:
    from .base import ClientSideStore, Store

_SQL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "mysql", "mariadb", "mysql+asyncmy")
_CACHE_SCHEMES = ("redis", "rediss", "memcached", "pymemcache", "django-cache", "django-cached-db", "file")
_OPTIONS = ("table", "timeout")
CACHE_REFUSED = (
    "compat='django' cannot share Django's cache session backends (cache, cached_db through the "
    "cache, file): they keep sessions pickled by default (Django's cache framework pickles every "
    "value), and coatcheck never unpickles, because a forged pickle runs code. Switch Django to "
    "SESSION_ENGINE = 'django.contrib.sessions.backends.db' (or cached_db, and give coatcheck the "
    "database) and use store='postgresql://...', 'mysql://...' or 'sqlite:///db.sqlite3'; or "
    "'django.contrib.sessions.backends.signed_cookies' with store='django-signed-cookies://'"
)


def _url_options(url: str) -> dict[str, Any]:
    options = query_options(url)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} in the Django store URL; known: {', '.join(_OPTIONS)}"
        )
    out: dict[str, Any] = {}
    if "table" in options:
        out["table"] = options["table"]
    if "timeout" in options:
        try:
            out["timeout"] = float(options["timeout"])
        except ValueError:
            raise ConfigurationError(f"timeout must be seconds, got {options['timeout']!r}") from None
    return out


def _from_url(url: str) -> Any:
    scheme = url.split("://", 1)[0].lower()
    if scheme == "django-signed-cookies":
        from .django_cookies import DjangoSignedCookieStore

        if url.split("://", 1)[1] not in ("", "/"):
            raise ConfigurationError(f"django-signed-cookies:// takes no host, path or options, got {url!r}")
        return DjangoSignedCookieStore()
    if scheme == "sqlite":
        from .django_sqlite import DjangoSQLiteStore

        rest = url.split("://", 1)[1].split("?", 1)[0]
        if not rest.startswith("/") or rest == "/":
            raise ConfigurationError(
                f"SQLite URL {url!r} needs the Django database file: 'sqlite:///db.sqlite3' (relative) "
                "or 'sqlite:////srv/app/db.sqlite3' (absolute)"
            )
        options = _url_options(url)
        options.pop("timeout", None)
        return DjangoSQLiteStore(rest[1:], **options)
    if scheme in _SQL_SCHEMES:
        from .django_sql import DjangoSQLStore

        base, _, _query = url.partition("?")
        return DjangoSQLStore(base, **_url_options(url))
    if scheme in _CACHE_SCHEMES:
        raise ConfigurationError(CACHE_REFUSED)
    raise ConfigurationError(
        f"compat='django' shares Django's database or signed_cookies sessions; {scheme + '://'!r} is "
        "neither: use the Django database's URL ('postgresql://...', 'mysql://...', "
        "'sqlite:///db.sqlite3') or 'django-signed-cookies://'"
    )


def django_store(store: object, record_format: DjangoFormat) -> Store | ClientSideStore:
    """The store for `compat="django"`, adopting `record_format`; a ConfigurationError says what
    to use instead for anything Django and coatcheck cannot share."""
    from .django_cookies import DjangoSignedCookieStore
    from .django_sqlite import DjangoSQLiteStore

    if isinstance(store, str):
        store = _from_url(store)
    if isinstance(store, DjangoSQLiteStore | DjangoSignedCookieStore):
        return store.with_format(record_format)
    try:
        from .django_sql import DjangoSQLStore
    except ModuleNotFoundError as exc:  # SQLAlchemy missing: only the SQL store needs it
        if exc.name is None or exc.name.startswith("coatcheck"):
            raise
    else:
        if isinstance(store, DjangoSQLStore):
            return store.with_format(record_format)
    raise ConfigurationError(
        f"compat='django' needs a store that keeps Django's sessions (a database URL, "
        f"'django-signed-cookies://', or DjangoSQLiteStore/DjangoSQLStore/DjangoSignedCookieStore), "
        f"got {type(store).__name__}"
    )
