"""Starlette handlers shared by the Starlette-based cases (bare, cookie, starsessions, coatcheck).

``loader`` is awaited before a handler touches the session; starsessions needs it
(``load_session``), the others pass ``None``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from benchmarks.apps.common import COUNTER, FIRST_KEY, FIRST_VALUE

Loader = Callable[[Request], Awaitable[None]] | None


def routes(loader: Loader = None) -> list[Route]:
    """The four benchmark routes; /plain never touches the session."""

    async def plain(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def read(request: Request) -> Response:
        if loader is not None:
            await loader(request)
        return PlainTextResponse(str(request.session.get(COUNTER, 0)))

    async def incr(request: Request) -> Response:
        if loader is not None:
            await loader(request)
        value = int(request.session.get(COUNTER, 0)) + 1
        request.session[COUNTER] = value
        return PlainTextResponse(str(value))

    async def first(request: Request) -> Response:
        if loader is not None:
            await loader(request)
        request.session[FIRST_KEY] = FIRST_VALUE
        return PlainTextResponse("ok")

    return [
        Route("/plain", plain),
        Route("/read", read),
        Route("/incr", incr),
        Route("/first", first),
    ]


def plain_only() -> list[Route]:
    """Only /plain: the bare-framework baseline."""
    return [r for r in routes() if r.path == "/plain"]
