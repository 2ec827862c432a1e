"""A tiny ASGI app for tests that run several app processes against one shared store.

Run it with uvicorn (`uvicorn tests.apps.counter_app:app`); it reads
COATCHECK_TEST_STORE_URL (the shared store), COATCHECK_TEST_SECRET (the same for every
instance) and COATCHECK_TEST_INSTANCE (a name it reports, so a test knows who answered).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coatcheck import SessionMiddleware

INSTANCE = os.environ.get("COATCHECK_TEST_INSTANCE", str(os.getpid()))


def _state(request: Request) -> JSONResponse:
    session = request.session
    marks = {k.removeprefix("mark-"): v for k, v in session.items() if k.startswith("mark-")}
    return JSONResponse(
        {
            "instance": INSTANCE,
            "new": session.is_new,
            "n": session.get("n", 0),
            "seen_by": session.get("seen_by", []),
            "marks": marks,
        }
    )


async def read(request: Request) -> JSONResponse:
    """The session as this instance sees it; changes nothing."""
    return _state(request)


async def incr(request: Request) -> JSONResponse:
    """Count a visit and note which instance served it."""
    session = request.session
    session["n"] = session.get("n", 0) + 1
    session.setdefault("seen_by", []).append(INSTANCE)
    return _state(request)


async def mark(request: Request) -> JSONResponse:
    """Set one key of its own (concurrent marks on different keys must all survive)."""
    request.session[f"mark-{request.path_params['name']}"] = INSTANCE
    return _state(request)


app = SessionMiddleware(
    Starlette(routes=[Route("/read", read), Route("/incr", incr), Route("/mark/{name}", mark)]),
    secret=os.environ["COATCHECK_TEST_SECRET"],
    store=os.environ["COATCHECK_TEST_STORE_URL"],
)
