"""Litestar server-side sessions (ServerSideSessionConfig) on its RedisStore, default settings."""

from litestar import Litestar
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.redis import RedisStore

from benchmarks.apps.common import redis_url
from benchmarks.apps.litestar_common import HANDLERS

app = Litestar(
    route_handlers=HANDLERS,
    middleware=[ServerSideSessionConfig(secure=False).middleware],
    stores={"sessions": RedisStore.with_client(url=redis_url())},
    logging_config=None,
)
