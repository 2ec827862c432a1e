"""The stores' atomic flash claim (`FlashClaiming`), on real SQLite and Redis, and how
`flashes()` / `take_flashes()` use it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coatcheck import SessionMiddleware
from coatcheck.record import Meta, Record
from coatcheck.stores import FlashClaiming, MemoryStore, RedisStore, SQLiteStore, SQLStore
from tests.helpers import TEST_SECRET, client
from tests.services import free_port
from tests.test_sql_store import _drop


@pytest.fixture(params=["sqlite", "redis", "postgresql", "mariadb"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    if request.param == "sqlite":
        yield lambda: SQLiteStore(tmp_path / "claims.db")
        return
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = f"coatcheck-claim-test:{time.time_ns()}:"
        yield lambda: RedisStore(url, prefix=prefix)
        return
    url = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mysql_url")
    table = f"cc_claim_{secrets.token_hex(6)}"
    yield lambda: SQLStore(url, table=table)
    _drop(url, table)


def record(**data: Any) -> Record:
    now = time.time()
    return Record(data=data, meta=Meta(created=now, last_seen=now, idle_deadline=now + 600))


async def test_concurrent_claims_hand_each_key_to_exactly_one_caller(make_store: Callable[[], Any]) -> None:
    store, other = make_store(), make_store()  # two store objects: two connections, like two processes
    try:
        assert isinstance(store, FlashClaiming)
        names = [f"_flash.{i:04d}" for i in range(20)]
        await store.set("k" * 64, record(keep=1, **{key: ["info", "x"] for key in names}))
        results = await asyncio.gather(*(s.claim("k" * 64, names) for s in [store, other] * 4))
        claimed = [name for result in results for name in result]
        assert sorted(claimed) == names  # every key once, none twice
        left = await store.get("k" * 64)
        assert left is not None and left.data == {"keep": 1}
    finally:
        await store.close()
        await other.close()


async def test_a_claim_on_a_missing_record_takes_nothing_and_creates_nothing(
    make_store: Callable[[], Any],
) -> None:
    store = make_store()
    try:
        assert await store.claim("m" * 64, ["_flash.1"]) == frozenset()
        assert await store.get("m" * 64) is None
    finally:
        await store.close()


async def show(request: Request) -> Response:
    request.session.flash("queued now")
    return JSONResponse([str(f) for f in request.session.flashes()])


async def add(request: Request) -> Response:
    request.session.flash("hello")
    return JSONResponse({"ok": True})


async def show_stored(request: Request) -> Response:
    return JSONResponse([str(f) for f in await request.session.take_flashes()])


ROUTES = [Route("/show", show), Route("/add", add), Route("/show-stored", show_stored)]


async def test_a_message_flashed_in_this_request_is_shown_without_a_claim(
    make_store: Callable[[], Any],
) -> None:
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=make_store())
    async with client(app) as c:
        assert (await c.get("/show")).json() == ["queued now"]
        assert (await c.get("/add")).status_code == 200
        assert (await c.get("/show-stored")).json() == ["hello"]
        assert (await c.get("/show-stored")).json() == []


async def test_a_failed_claim_shows_nothing_and_keeps_the_message_queued() -> None:
    from coatcheck.stores import RedisStore as Redis

    # A store that loads from a live Redis but claims against one that is down: a real failure.
    down = Redis(f"redis://127.0.0.1:{free_port()}/0")

    class FailingClaims(MemoryStore):
        async def claim(self, key: str, names: Any) -> frozenset[str]:
            return await down.claim(key, names)

    store = FailingClaims()
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=store, store_timeout=2)
    async with client(app) as c:
        await c.get("/add")
        assert (await c.get("/show-stored")).json() == []
    (info,) = await store.list_sessions()
    kept = await store.get(info.storage_key)
    assert kept is not None and [v for k, v in kept.data.items() if k.startswith("_flash.")] == [
        ["info", "hello"]
    ]


async def test_a_store_on_the_apps_own_engine_claims_through_sqlalchemy(postgres_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    table = f"cc_claim_{secrets.token_hex(6)}"
    store, other = SQLStore(engine, table=table), SQLStore(engine, table=table)
    try:
        names = [f"_flash.{i:04d}" for i in range(10)]
        await store.set("e" * 64, record(keep=1, **{key: ["info", "x"] for key in names}))
        results = await asyncio.gather(*(s.claim("e" * 64, names) for s in [store, other] * 3))
        assert sorted(name for result in results for name in result) == names
        assert await store.claim("e" * 64, names) == frozenset()
    finally:
        await store.drop_table()
        await engine.dispose()
