"""Session stores. Optional backends load on first use, so their drivers stay optional."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import Browsing, FlashClaiming, Inventory, PatchingStore, SessionTally, Store, UserIndex
from .memory import MemoryStore
from .sqlite import SQLiteStore
from .url import from_url

if TYPE_CHECKING:  # optional backends, loaded on first use by __getattr__
    from .cookie import CookieStore
    from .django_cookies import DjangoSignedCookieStore
    from .django_sql import DjangoSQLStore
    from .django_sqlite import DjangoSQLiteStore
    from .memcached import MemcachedStore
    from .mongo import MongoStore
    from .redis import RedisStore
    from .sql import SQLStore

_LAZY = {
    "RedisStore": "redis",
    "SQLStore": "sql",
    "MongoStore": "mongo",
    "MemcachedStore": "memcached",
    "CookieStore": "cookie",
    "DjangoSQLiteStore": "django_sqlite",  # compat="django": a Django project's tables and cookies
    "DjangoSQLStore": "django_sql",
    "DjangoSignedCookieStore": "django_cookies",
}

__all__ = [
    "Browsing",
    "CookieStore",
    "DjangoSQLStore",
    "DjangoSQLiteStore",
    "DjangoSignedCookieStore",
    "FlashClaiming",
    "Inventory",
    "MemcachedStore",
    "MemoryStore",
    "MongoStore",
    "PatchingStore",
    "RedisStore",
    "SQLStore",
    "SQLiteStore",
    "SessionTally",
    "Store",
    "UserIndex",
    "from_url",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'coatcheck.stores' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
