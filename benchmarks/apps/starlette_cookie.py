"""Starlette's own SessionMiddleware (signed cookie, itsdangerous), default settings."""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware

from benchmarks.apps.common import SECRET
from benchmarks.apps.starlette_common import routes

app = Starlette(
    routes=routes(),
    middleware=[Middleware(SessionMiddleware, secret_key=SECRET)],
)
