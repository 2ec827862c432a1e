"""The layout of cookies and records: coatcheck's own, or that of the program `compat` shares
sessions with (express-session, Django)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .crypto import as_secret_list, storage_key
from .errors import ConfigurationError
from .express import ExpressFormat
from .stores.base import ClientSideStore, Store
from .stores.compat import adopt_store
from .stores.sqlite import SQLiteStore
from .stores.url import from_url

DEFAULT_STORE_FILE = "sessions.db"
AnyStore = Store | ClientSideStore


def resolve_store(option: Any) -> AnyStore:
    """The `store` option as an object: a URL is opened, None is the embedded SQLite default."""
    if option is None:
        return SQLiteStore(DEFAULT_STORE_FILE)
    store = from_url(option) if isinstance(option, str) else option
    if not isinstance(store, ClientSideStore | Store):
        raise ConfigurationError(
            f"store must be a Store (get/set/touch/destroy/close) or a URL string, got {type(store).__name__}"
        )
    return store


@dataclass(frozen=True, slots=True)
class Layout:
    """How the cookie and the records look: coatcheck's own, or another program's (`compat`).

    `open_store` turns the `store` option into the store (again after fork()); `key` maps an
    id to its storage key; `sign`/`verify` are the cookie's value codec (None: the keyring's
    signed ids); `cookie_defaults` are the per-session cookie metadata a format pins at
    creation, for plain HTTP and for HTTPS.
    """

    open_store: Callable[[Any], AnyStore] = resolve_store
    key: Callable[[str], str] = storage_key
    sign: Callable[[str], str] | None = None
    verify: Callable[[bytes], tuple[str, bool] | None] | None = None
    cookie_defaults: tuple[dict[str, Any], dict[str, Any]] = field(default=({}, {}))
    record_format: Any = None


def layout_for(settings: Settings) -> Layout:
    if settings.compat == "express":
        express = ExpressFormat(settings)
        return Layout(
            open_store=lambda option: _express_store(option, express),
            key=express.storage_key,
            cookie_defaults=(express.cookie_defaults(False), express.cookie_defaults(True)),
            record_format=express,
        )
    if settings.compat == "django":
        from .django_format import DjangoFormat
        from .stores.django_compat import django_store

        django = DjangoFormat(
            settings, keys=as_secret_list(settings.secret), cookie_age=settings.cookie_max_age or 1209600.0
        )

        def verify(value: bytes) -> tuple[str, bool] | None:
            session_key = django.id_from_cookie(value)
            return None if session_key is None else (session_key, True)

        return Layout(
            open_store=lambda option: django_store(_required(option), django),
            key=django.storage_key,
            sign=django.cookie_value,
            verify=verify,
            record_format=django,
        )
    return Layout()


def _express_store(option: Any, express: ExpressFormat) -> Store:
    store = resolve_store(option)
    return adopt_store(store, express)  # a CookieStore is refused here, naming what to use instead


def _required(option: Any) -> Any:
    if option is None:
        raise ConfigurationError(
            "compat='django' needs store=<the Django database's URL> (e.g. 'postgresql://...', "
            "'sqlite:///db.sqlite3') or 'django-signed-cookies://'"
        )
    return option
