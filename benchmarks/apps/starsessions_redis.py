"""starsessions with its RedisStore (redis-py asyncio), sessions loaded explicitly per handler."""

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starsessions import SessionMiddleware, load_session
from starsessions.stores.redis import RedisStore

from benchmarks.apps.common import redis_url
from benchmarks.apps.starlette_common import routes

store = RedisStore(connection=Redis.from_url(redis_url()))

app = Starlette(
    routes=routes(loader=load_session),
    middleware=[
        Middleware(SessionMiddleware, store=store, cookie_https_only=False),
    ],
)
