"""`from_url`: build a store from a URL string such as "redis://localhost/0"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigurationError
from .base import Store

Factory = Callable[[str], Any]
_FACTORIES: dict[str, Factory] = {}


def register_scheme(*schemes: str) -> Callable[[Factory], Factory]:
    """Register a factory for URL schemes (used by the built-in backends; open to third parties)."""

    def decorate(factory: Factory) -> Factory:
        for scheme in schemes:
            _FACTORIES[scheme] = factory
        return factory

    return decorate


def from_url(url: str) -> Store:
    """A store for `url`. Raises ConfigurationError for an unknown scheme, a malformed URL
    or a missing driver (naming the extra to install)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"store URL {url!r} is not a URL: use e.g. 'sqlite:///sessions.db', 'memory://' or 'redis://localhost/0'"
        )
    scheme = url.split("://", 1)[0].lower()
    factory = _FACTORIES.get(scheme)
    module = _BUILTIN_SCHEMES.get(scheme)
    if factory is None:
        if module is not None:
            _load_backend(module)  # only the backend this URL names: its driver alone is imported
        factory = _FACTORIES.get(scheme)
    if factory is None:
        if module in _MISSING:  # a built-in backend whose driver is not installed
            raise missing_extra(_MISSING[module], _EXTRAS[module])
        known = ", ".join(sorted({f"{s}://" for s in (*_FACTORIES, *_BUILTIN_SCHEMES)}))
        raise ConfigurationError(f"unknown store URL scheme {scheme + '://'!r}; known schemes: {known}")
    store: Store = factory(url)
    return store


def query_options(url: str) -> dict[str, str]:
    """The last value of each query-string option of `url`."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def missing_extra(driver: str, extra: str) -> ConfigurationError:
    """The error for a backend whose driver is not installed."""
    return ConfigurationError(f"this store needs the {driver!r} package: pip install 'coatcheck[{extra}]'")


@register_scheme("memory")
def _memory(url: str) -> Store:
    from .memory import MemoryStore

    options = query_options(url)
    try:
        max_entries = int(options.get("max_entries", "10000"))
    except ValueError:
        raise ConfigurationError(
            f"memory:// max_entries must be a whole number, got {options['max_entries']!r}"
        ) from None
    return MemoryStore(max_entries=max_entries)


@register_scheme("sqlite")
def _sqlite(url: str) -> Store:
    from .sqlite import SQLiteStore

    # sqlite:///relative.db, sqlite:////absolute/path.db (SQLAlchemy's convention)
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if not rest.startswith("/") or rest == "/":
        raise ConfigurationError(
            f"SQLite URL {url!r} needs a file: 'sqlite:///sessions.db' (relative) or 'sqlite:////var/lib/app/sessions.db'"
        )
    return SQLiteStore(rest[1:])


# Built-in backend modules by URL scheme, and the extra that installs their drivers. A
# backend is imported when a URL first names one of its schemes, never before: a process
# that uses sqlite:// never loads SQLAlchemy, redis-py or pymongo (fewer modules also make
# each full garbage collection cheaper, which shows in the latency tail).
_EXTRAS = {"redis": "redis", "sql": "sql", "mongo": "mongo", "memcached": "memcached"}
_BUILTIN_SCHEMES = {
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "redis",
    "redis+sentinel": "redis",
    "postgresql": "sql",
    "postgres": "sql",
    "postgresql+psycopg": "sql",
    "mysql": "sql",
    "mariadb": "sql",
    "mysql+asyncmy": "sql",
    "mongodb": "mongo",
    "mongodb+srv": "mongo",
    "memcached": "memcached",
    "cookie": "cookie",
}
_MISSING: dict[str, str] = {}  # backend module -> the dependency it could not import


def _load_backend(module: str) -> None:
    """Import a built-in backend, which registers its schemes; a backend whose driver is
    missing is remembered, so its URLs get an error naming the extra."""
    import importlib

    if module in _MISSING:
        return
    try:
        importlib.import_module(f"coatcheck.stores.{module}")
    except ModuleNotFoundError as exc:
        if module not in _EXTRAS or exc.name is None or exc.name.startswith("coatcheck"):
            raise
        _MISSING[module] = exc.name.split(".")[0]
