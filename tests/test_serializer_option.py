"""`serializer="tagged"` reaches the store, whichever store: values come back with their types."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coatcheck import SessionMiddleware
from coatcheck.stores import MemoryStore, SQLiteStore
from tests.helpers import client

VALUE = {
    "pair": (1, 2),
    "raw": b"\xff\x00",
    "when": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    "id": uuid.UUID(int=7),
}


def app_with(store: Any, secret: str) -> Starlette:
    async def put(request: Request) -> JSONResponse:
        request.session.update(VALUE)
        return JSONResponse({})

    async def check(request: Request) -> JSONResponse:
        same = {
            key: request.session[key] == value and type(request.session[key]) is type(value)
            for key, value in VALUE.items()
        }
        return JSONResponse(same)

    app = Starlette(routes=[Route("/put", put), Route("/check", check)])
    app.add_middleware(SessionMiddleware, secret=secret, store=store, serializer="tagged")
    return app


@pytest.mark.parametrize("kind", ["memory-url", "memory-object", "sqlite-url", "sqlite-object", "redis-url"])
async def test_tagged_values_keep_their_types_through_every_store(
    kind: str, secret: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    stores: dict[str, Any] = {
        "memory-url": lambda: "memory://",
        "memory-object": MemoryStore,
        "sqlite-url": lambda: f"sqlite:///{tmp_path}/s.db",
        "sqlite-object": lambda: SQLiteStore(tmp_path / "o.db"),
        "redis-url": lambda: (
            request.getfixturevalue("redis_url") + "?prefix=coatcheck-serializer-test-" + secret[:8] + ":"
        ),
    }
    async with client(app_with(stores[kind](), secret)) as c:
        await c.get("/put")
        assert (await c.get("/check")).json() == dict.fromkeys(VALUE, True)
