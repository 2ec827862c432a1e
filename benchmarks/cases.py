"""The implementations under test and the routes each one serves."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Literal

ROUTES: tuple[str, ...] = ("/plain", "/read", "/incr", "/first")
# GET /incr with one session per wrk connection (round-robin over as many cookies), where
# /incr sends one cookie from every connection: writers of one session contend in the store
SPREAD = "/incr-spread"
PLAIN_ONLY: tuple[str, ...] = ("/plain",)
SESSION_ROUTES: tuple[str, ...] = ("/read", "/incr", "/first")  # anonymous cost: see coatcheck-redis

Server = Literal["uvicorn", "gunicorn", "node"]


@dataclass(frozen=True)
class Impl:
    name: str  # short id used by --only and in the tables
    label: str  # what it is, for the README/table
    framework: str  # Starlette, Litestar, Flask, Express: the "same framework /plain" baseline
    server: Server
    target: str  # "module:app" for Python servers, the mode argument for node/server.js
    routes: tuple[str, ...] = ROUTES
    store: str = "-"  # where session data lives: Redis, SQLite, cookie, -
    baseline: bool = False  # the bare framework app, no session middleware
    env: dict[str, str] = field(default_factory=dict)

    def case_ids(self) -> list[str]:
        return [f"{self.name}{route}" for route in self.routes]


APPS = "benchmarks.apps"

IMPLS: tuple[Impl, ...] = (
    # --- Starlette on uvicorn -------------------------------------------------------------
    Impl("starlette-bare", "Starlette, no middleware", "Starlette", "uvicorn",
         f"{APPS}.starlette_bare:app", PLAIN_ONLY, baseline=True),
    Impl("coatcheck-redis", "coatcheck SessionMiddleware, store redis://", "Starlette",
         "uvicorn", f"{APPS}.coatcheck_asgi:app", (*ROUTES, SPREAD), store="Redis",
         env={"BENCH_COATCHECK_STORE": "redis"}),
    Impl("coatcheck-redis-pool", "coatcheck, store redis://...?connection=pool (redis-py pool)",
         "Starlette", "uvicorn", f"{APPS}.coatcheck_asgi:app", SESSION_ROUTES, store="Redis",
         env={"BENCH_COATCHECK_STORE": "redis-pool"}),
    Impl("coatcheck-sqlite", "coatcheck SessionMiddleware, SQLiteStore", "Starlette",
         "uvicorn", f"{APPS}.coatcheck_asgi:app", (*SESSION_ROUTES, SPREAD), store="SQLite",
         env={"BENCH_COATCHECK_STORE": "sqlite"}),
    Impl("coatcheck-postgresql", "coatcheck SessionMiddleware, store postgresql://",
         "Starlette", "uvicorn", f"{APPS}.coatcheck_asgi:app", (*ROUTES, SPREAD), store="PostgreSQL",
         env={"BENCH_COATCHECK_STORE": "postgresql"}),
    Impl("coatcheck-mariadb", "coatcheck SessionMiddleware, store mariadb://", "Starlette",
         "uvicorn", f"{APPS}.coatcheck_asgi:app", (*ROUTES, SPREAD), store="MariaDB",
         env={"BENCH_COATCHECK_STORE": "mariadb"}),
    Impl("coatcheck-cookie", "coatcheck SessionMiddleware, store cookie://", "Starlette",
         "uvicorn", f"{APPS}.coatcheck_asgi:app", SESSION_ROUTES, store="cookie",
         env={"BENCH_COATCHECK_STORE": "cookie"}),
    Impl("coatcheck-cookie-signed", "coatcheck, store cookie://?mode=signed (signed, not sealed)",
         "Starlette", "uvicorn", f"{APPS}.coatcheck_asgi:app", ("/read", "/first"),
         store="cookie", env={"BENCH_COATCHECK_STORE": "cookie-signed"}),
    Impl("starlette-cookie", "Starlette SessionMiddleware (signed cookie)", "Starlette",
         "uvicorn", f"{APPS}.starlette_cookie:app", store="cookie"),
    Impl("starsessions-redis", "starsessions + RedisStore", "Starlette", "uvicorn",
         f"{APPS}.starsessions_redis:app", store="Redis"),
    # --- Litestar on uvicorn --------------------------------------------------------------
    Impl("litestar-bare", "Litestar, no middleware", "Litestar", "uvicorn",
         f"{APPS}.litestar_bare:app", PLAIN_ONLY, baseline=True),
    Impl("litestar-redis", "Litestar server-side sessions + RedisStore", "Litestar",
         "uvicorn", f"{APPS}.litestar_redis:app", store="Redis"),
    # --- Flask on gunicorn ----------------------------------------------------------------
    Impl("flask-bare", "Flask, no session use", "Flask", "gunicorn",
         f"{APPS}.flask_bare:app", PLAIN_ONLY, baseline=True),
    Impl("coatcheck-flask", "coatcheck.flask Session, store redis://", "Flask", "gunicorn",
         f"{APPS}.coatcheck_flask:app", store="Redis"),
    Impl("flask-session-redis", "Flask-Session, SESSION_TYPE=redis", "Flask", "gunicorn",
         f"{APPS}.flask_session_redis:app", store="Redis"),
    Impl("flask-cookie", "Flask default session (signed cookie)", "Flask", "gunicorn",
         f"{APPS}.flask_cookie:app", store="cookie"),
    # --- Express on Node ------------------------------------------------------------------
    Impl("express-bare", "Express, no middleware", "Express", "node", "bare", PLAIN_ONLY,
         baseline=True),
    Impl("express-session-redis", "express-session + connect-redis", "Express", "node",
         "express-session", store="Redis"),
    Impl("cookie-session", "cookie-session on Express", "Express", "node", "cookie-session",
         store="cookie"),
)  # fmt: skip


def select(patterns: list[str]) -> list[tuple[Impl, tuple[str, ...]]]:
    """Implementations and the routes of each that match any ``--only`` glob.

    A pattern matches an implementation name (``starsessions-*``) or a case id
    (``*/read``, ``coatcheck-redis/incr``). No patterns: everything.
    """
    chosen: list[tuple[Impl, tuple[str, ...]]] = []
    for impl in IMPLS:
        if not patterns:
            chosen.append((impl, impl.routes))
            continue
        if any(fnmatch.fnmatchcase(impl.name, p) for p in patterns):
            chosen.append((impl, impl.routes))
            continue
        routes = tuple(
            route
            for route in impl.routes
            if any(fnmatch.fnmatchcase(f"{impl.name}{route}", p) for p in patterns)
        )
        if routes:
            chosen.append((impl, routes))
    return chosen


def baseline_for(framework: str) -> Impl | None:
    return next((i for i in IMPLS if i.baseline and i.framework == framework), None)
