"""Choosing the runtime strategy once, at construction: the store decides."""

from __future__ import annotations

from .client_side import ClientSideRuntime
from .config import Settings
from .errors import ConfigurationError
from .express import ExpressFormat
from .runtime import Runtime
from .server_side import ServerSideRuntime
from .session import Session
from .stores.base import ClientSideStore, Store
from .stores.compat import adopt_store
from .stores.sqlite import SQLiteStore
from .stores.url import from_url

DEFAULT_STORE_FILE = "sessions.db"


def resolve_store(option: Store | ClientSideStore | str | None) -> Store | ClientSideStore:
    """The `store` option as an object: a URL is opened, None is the embedded SQLite default."""
    if option is None:
        return SQLiteStore(DEFAULT_STORE_FILE)
    store = from_url(option) if isinstance(option, str) else option
    if not isinstance(store, ClientSideStore | Store):
        raise ConfigurationError(
            f"store must be a Store (get/set/touch/destroy/close) or a URL string, got {type(store).__name__}"
        )
    return store


def build_runtime(settings: Settings, session_class: type[Session] = Session) -> Runtime:
    """Client-side sessions for a CookieStore (the cookie is the store), server-side otherwise."""
    store = resolve_store(settings.store)
    if isinstance(store, ClientSideStore):
        if settings.compat == "express":
            adopt_store(store, ExpressFormat(settings))  # raises: it names what to use instead
        return ClientSideRuntime(settings, store, session_class)
    return ServerSideRuntime(settings, store, session_class)
