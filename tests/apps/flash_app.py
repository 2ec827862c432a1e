"""An ASGI app for the cross-process flash test: run two of these with uvicorn against one
store (COATCHECK_TEST_STORE_URL, COATCHECK_TEST_SECRET, COATCHECK_TEST_BARRIER_URL).

`/show` and `/show-async` first wait at a barrier (a Redis list: every party announces
itself, the last one releases them all), so every request of a round has loaded the session,
message included, before any of them takes it: the interleaving "exactly once" is about.
"""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coatcheck import SessionMiddleware

BARRIER = aioredis.Redis.from_url(os.environ.get("COATCHECK_TEST_BARRIER_URL", "redis://127.0.0.1:6379/0"))


async def wait_at_barrier(gate: str, parties: int) -> None:
    arrived = await BARRIER.incr(f"{gate}:arrived")
    if arrived == parties:
        await BARRIER.rpush(f"{gate}:release", *([b"go"] * parties))
    await BARRIER.blpop([f"{gate}:release"], timeout=30)


async def add(request: Request) -> JSONResponse:
    for text in request.query_params.getlist("m"):
        request.session.flash(text)
    return JSONResponse({"ok": True})


async def show(request: Request) -> JSONResponse:
    """The sync `flashes()` (as a Jinja template calls it), after the barrier (the middleware
    loaded the session, messages included, before the handler ran)."""
    await wait_at_barrier(request.query_params["gate"], int(request.query_params["parties"]))
    return JSONResponse([str(f) for f in request.session.flashes()])


async def show_async(request: Request) -> JSONResponse:
    await wait_at_barrier(request.query_params["gate"], int(request.query_params["parties"]))
    return JSONResponse([str(f) for f in await request.session.take_flashes()])


async def pending(request: Request) -> JSONResponse:
    return JSONResponse(sorted(k for k in request.session if k.startswith("_flash")))


app = Starlette(
    routes=[
        Route("/add", add),
        Route("/show", show),
        Route("/show-async", show_async),
        Route("/pending", pending),
    ]
)
app.add_middleware(
    SessionMiddleware,
    secret=os.environ["COATCHECK_TEST_SECRET"],
    store=os.environ["COATCHECK_TEST_STORE_URL"],
)
