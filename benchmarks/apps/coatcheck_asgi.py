"""coatcheck's ASGI middleware on Starlette; the store is picked by ``BENCH_COATCHECK_STORE``.

``redis`` -> ``"redis://127.0.0.1:PORT/0"`` (URL string), ``sqlite`` -> ``SQLiteStore(path)``,
``cookie`` -> ``"cookie://"`` (client-side, sealed cookie), ``cookie-signed`` ->
``"cookie://?mode=signed"``, ``redis-pool`` -> the Redis URL with ``?connection=pool``
(redis-py's asyncio pool instead of the pipelined connection), ``postgresql`` and ``mariadb``
-> the shared servers' URLs (``BENCH_POSTGRES_URL``, ``BENCH_MYSQL_URL``) with a table of
the benchmark's own. Only the public API of
DESIGN.md section 2 is used.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware

from benchmarks.apps.common import SECRET, redis_url, sqlite_path
from benchmarks.apps.starlette_common import routes
from coatcheck import SessionMiddleware
from coatcheck.stores import SQLiteStore


def _store() -> object:
    kind = os.environ.get("BENCH_COATCHECK_STORE", "redis")
    if kind == "redis":
        return redis_url()
    if kind == "sqlite":
        return SQLiteStore(sqlite_path())
    if kind == "redis-pool":
        return redis_url() + "?connection=pool"
    if kind == "cookie":
        return "cookie://"
    if kind == "postgresql":
        return (
            os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
            + "?table=cc_bench&timeout=60"
        )
    if kind == "mariadb":
        return os.environ.get("BENCH_MYSQL_URL", "mariadb://root@127.0.0.1:3306/test") + "?table=cc_bench"
    if kind == "cookie-signed":
        return "cookie://?mode=signed"
    raise ValueError(f"unknown BENCH_COATCHECK_STORE {kind!r}")


app = Starlette(
    routes=routes(),
    # mypy (strict) rejects coatcheck's SessionMiddleware as a Starlette _MiddlewareFactory
    # at the time of writing; the runtime form is the documented one.
    middleware=[Middleware(SessionMiddleware, secret=SECRET, store=_store())],  # type: ignore[arg-type]
)
