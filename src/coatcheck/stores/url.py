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
    _load_builtin_backends()
    factory = _FACTORIES.get(scheme)
    if factory is None:
        module = _builtin_module(scheme)
        if module in _MISSING:  # a built-in backend whose driver is not installed
            raise missing_extra(_MISSING[module], _EXTRAS[module])
        known = ", ".join(sorted(f"{s}://" for s in _FACTORIES))
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


# Built-in backend modules, the extra that installs their drivers, and the schemes they
# serve (so a scheme whose module cannot be imported still gets a "pip install" hint).
_BACKENDS = ("redis", "sql", "mongo", "memcached", "cookie")
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
}
_MISSING: dict[str, str] = {}  # backend module -> the dependency it could not import


def _builtin_module(scheme: str) -> str | None:
    return _BUILTIN_SCHEMES.get(scheme)


def _load_builtin_backends() -> None:
    """Optional backends register their schemes when their module is imported; a backend
    whose driver is missing is remembered, so its URLs get an error naming the extra."""
    import importlib

    for module in _BACKENDS:
        if module in _MISSING:
            continue
        try:
            importlib.import_module(f"coatcheck.stores.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"coatcheck.stores.{module}":
                continue  # backend not written yet
            if module not in _EXTRAS or exc.name is None or exc.name.startswith("coatcheck"):
                raise
            _MISSING[module] = exc.name.split(".")[0]
