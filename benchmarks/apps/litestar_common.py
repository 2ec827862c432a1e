"""Litestar handlers shared by the bare and server-side-session cases."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, get

from benchmarks.apps.common import COUNTER, FIRST_KEY, FIRST_VALUE

Req = Request[Any, Any, Any]


@get("/plain", media_type=MediaType.TEXT)
async def plain() -> str:
    return "ok"


@get("/read", media_type=MediaType.TEXT)
async def read(request: Req) -> str:
    return str(request.session.get(COUNTER, 0))


@get("/incr", media_type=MediaType.TEXT)
async def incr(request: Req) -> str:
    value = int(request.session.get(COUNTER, 0)) + 1
    request.session[COUNTER] = value
    return str(value)


@get("/first", media_type=MediaType.TEXT)
async def first(request: Req) -> str:
    request.session[FIRST_KEY] = FIRST_VALUE
    return "ok"


HANDLERS = [plain, read, incr, first]
