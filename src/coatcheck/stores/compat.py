"""`SessionMiddleware(compat="express")` on a store: the base store's express-layout twin.

The express layouts (`express_redis`, `express_mongo`) are built on the base stores through
their public accessors; the base stores know nothing of them. This module is the one place
that pairs each base store with its twin, so nothing else special-cases the layouts.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import ConfigurationError
from .base import ClientSideStore

if TYPE_CHECKING:
    from ..express import ExpressFormat
    from .base import Store


@runtime_checkable
class FormatAwareStore(Protocol):
    """A store that can keep another program's record layout (for third-party stores)."""

    def with_format(self, record_format: ExpressFormat) -> Store:
        """A store over the same server that reads and writes `record_format`'s layout."""


def adopt_store(store: object, record_format: ExpressFormat) -> Store:
    """The store the middleware uses in compat mode: connect-redis's layout for a RedisStore,
    connect-mongo's for a MongoStore, `with_format` for a third-party `FormatAwareStore`;
    otherwise a ConfigurationError saying what to use."""
    if isinstance(store, ClientSideStore):
        raise ConfigurationError(
            "compat='express' shares server-side sessions with express-session; for Express's "
            "cookie-session use store=CookieStore(mode='cookie-session') without compat"
        )
    # A RedisStore or MongoStore exists only if its module was imported: look there rather
    # than import a backend (and its driver) the application does not use.
    redis = sys.modules.get(f"{__package__}.redis")
    if redis is not None and isinstance(store, redis.RedisStore):
        from .express_redis import ExpressRedisStore

        return ExpressRedisStore(store).with_format(record_format)
    mongo = sys.modules.get(f"{__package__}.mongo")
    if mongo is not None and isinstance(store, mongo.MongoStore):
        from .express_mongo import ExpressMongoStore

        return ExpressMongoStore(store).with_format(record_format)
    if isinstance(store, FormatAwareStore):
        return store.with_format(record_format)
    raise ConfigurationError(
        f"compat='express' needs a store Node can share: RedisStore (connect-redis) or "
        f"MongoStore (connect-mongo), got {type(store).__name__}"
    )
