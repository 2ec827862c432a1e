"""coatcheck.aiohttp: sessions for aiohttp.web, served by aiohttp's test server on loopback."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from coatcheck import Cookie
from coatcheck.aiohttp import AiohttpSession, SessionMiddleware, get_session, new_session
from coatcheck.errors import ConfigurationError
from coatcheck.stores import MemoryStore, RedisStore
from tests.helpers import CountingStore
from tests.services import redis_server


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/plain")
    async def plain(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    @table.get("/incr")
    async def incr(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["n"] = session.get("n", 0) + 1
        return web.json_response({"n": session["n"], "new": session.new})

    @table.get("/read")
    async def read(request: web.Request) -> web.Response:
        session = await get_session(request)
        return web.json_response({"n": session.get("n"), "user": session.user_id, "new": session.new})

    @table.post("/login")
    async def login(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.login((await request.json())["user"])
        session.flash("Welcome back")
        raise web.HTTPFound("/whoami")

    @table.get("/whoami")
    async def whoami(request: web.Request) -> web.Response:
        session = await get_session(request)
        return web.json_response({"user": session.user_id, "flashes": [f.message for f in session.flashes()]})

    @table.post("/logout")
    async def logout(request: web.Request) -> web.Response:
        (await get_session(request)).invalidate()
        return web.json_response({"ok": True})

    @table.post("/fresh")
    async def fresh(request: web.Request) -> web.Response:
        session = await new_session(request)
        session["fresh"] = True
        return web.json_response({"keys": sorted(session)})

    @table.get("/append")
    async def append(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.setdefault("cart", []).append(request.query.get("item", "x"))  # nested: no changed() needed
        return web.json_response(session["cart"])

    @table.get("/changed")
    async def changed(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.changed()  # aiohttp-session's "save it anyway"
        return web.json_response({"created": session.created, "new": session.new})

    @table.get("/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        session = await get_session(request)
        session["streamed"] = True
        response = web.StreamResponse()
        await response.prepare(request)  # headers go out here: the session is committed first
        await response.write(b"chunk")
        return response

    @table.get("/remember")
    async def remember(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.max_age = 3600
        session["remembered"] = True
        return web.json_response({"max_age": session.max_age})

    return table


ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def serve() -> AsyncIterator[ClientFactory]:
    """`await serve(**options)`: an app with the test routes behind aiohttp's test server."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(**options: Any) -> TestClient[web.Request, web.Application]:
        app = web.Application()
        app.add_routes(routes())
        SessionMiddleware(app, **options)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def prefix(redis_url: str) -> AsyncIterator[str]:
    value = f"cctest-aiohttp-{secrets.token_hex(4)}:"
    yield value  # type: ignore[misc]
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=value + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.redis
async def test_session_persists_in_redis_across_requests(
    serve: ClientFactory, secret: str, redis_url: str, prefix: str
) -> None:
    client = await serve(secret=secret, store=RedisStore(redis_url, prefix=prefix))
    first = await client.get("/incr")
    assert await first.json() == {"n": 1, "new": True}
    assert first.headers["Vary"] == "Cookie" and "private" in first.headers["Cache-Control"]
    second = await client.get("/incr")
    assert await second.json() == {"n": 2, "new": False}
    raw = redis.Redis.from_url(redis_url)
    try:
        assert len(list(raw.scan_iter(match=prefix + "s:*"))) == 1
    finally:
        raw.close()


async def test_a_request_that_never_asks_for_the_session_costs_nothing(
    serve: ClientFactory, secret: str
) -> None:
    store = CountingStore()
    client = await serve(secret=secret, store=store)
    await client.get("/incr")
    calls = store.total
    response = await client.get("/plain")
    assert response.status == 200
    assert store.total == calls  # the cookie was sent, but nobody asked: no load, no save
    assert "Set-Cookie" not in response.headers and "Vary" not in response.headers


async def test_aiohttp_session_names_created_and_changed(serve: ClientFactory, secret: str) -> None:
    store = CountingStore()
    client = await serve(secret=secret, store=store)
    await client.get("/incr")
    saves = store.calls["set"] + store.calls["patch"]
    body = await (await client.get("/changed")).json()
    assert body["new"] is False
    assert abs(body["created"] - time.time()) < 60
    assert store.calls["set"] + store.calls["patch"] == saves + 1  # nothing changed, saved anyway


async def test_login_redirect_carries_the_new_cookie_and_the_flash(serve: ClientFactory, secret: str) -> None:
    store = MemoryStore()
    client = await serve(secret=secret, store=store)
    await client.get("/incr")
    before = client.session.cookie_jar.filter_cookies(client.make_url("/"))["session"].value
    response = await client.post("/login", json={"user": "ada"}, allow_redirects=False)
    assert response.status == 302
    assert "session=" in response.headers["Set-Cookie"]  # HTTPFound is a response: it carries the cookie
    after = client.session.cookie_jar.filter_cookies(client.make_url("/"))["session"].value
    assert after != before  # login() issued a new id
    landed = await client.get("/whoami")
    assert await landed.json() == {"user": "ada", "flashes": ["Welcome back"]}
    again = await client.get("/whoami")
    assert await again.json() == {"user": "ada", "flashes": []}
    assert await store.count() == 1  # the pre-login record was deleted


async def test_invalidate_logs_out_and_expires_the_cookie(serve: ClientFactory, secret: str) -> None:
    store = MemoryStore()
    client = await serve(secret=secret, store=store)
    await client.post("/login", json={"user": "ada"})
    response = await client.post("/logout")
    assert (
        "Max-Age=0" in response.headers["Set-Cookie"]
        or "expires=Thu, 01 Jan 1970" in response.headers["Set-Cookie"]
    )
    assert await store.count() == 0
    assert (await (await client.get("/read")).json())["user"] is None


async def test_new_session_drops_data_and_changes_id(serve: ClientFactory, secret: str) -> None:
    store = MemoryStore()
    client = await serve(secret=secret, store=store)
    await client.get("/incr")
    response = await client.post("/fresh")
    assert await response.json() == {"keys": ["fresh"]}
    assert (await (await client.get("/read")).json())["n"] is None
    assert await store.count() == 1


async def test_nested_mutation_is_saved(serve: ClientFactory, secret: str) -> None:
    client = await serve(secret=secret, store=MemoryStore())
    await client.get("/append", params={"item": "a"})
    response = await client.get("/append", params={"item": "b"})
    assert await response.json() == ["a", "b"]


async def test_a_response_the_handler_prepares_itself_is_committed_before_its_headers(
    serve: ClientFactory, secret: str
) -> None:
    store = MemoryStore()
    client = await serve(secret=secret, store=store)
    response = await client.get("/stream")
    assert await response.read() == b"chunk"
    assert "session=" in response.headers["Set-Cookie"]
    assert response.headers["Vary"] == "Cookie"
    assert await store.count() == 1


async def test_max_age_makes_a_persistent_cookie(serve: ClientFactory, secret: str) -> None:
    client = await serve(secret=secret, store=MemoryStore())
    response = await client.get("/remember")
    assert await response.json() == {"max_age": 3600.0}
    assert "Max-Age=3600" in response.headers["Set-Cookie"]


async def test_get_session_outside_the_cookie_path_is_an_error(secret: str) -> None:
    app = web.Application()

    async def probe(request: web.Request) -> web.Response:
        try:
            await get_session(request)
        except RuntimeError as exc:
            return web.Response(text=str(exc))
        return web.Response(text="a session")

    app.router.add_get("/outside", probe)
    app.router.add_get("/app/inside", probe)
    SessionMiddleware(app, secret=secret, store=MemoryStore(), cookie=Cookie(path="/app"))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        outside = await client.get("/outside")
        assert "no session for this request" in await outside.text()
        assert "Set-Cookie" not in outside.headers
        assert await (await client.get("/app/inside")).text() == "a session"


@pytest.mark.redis
async def test_store_down_is_a_503_on_load_and_on_save(serve: ClientFactory, secret: str) -> None:
    with redis_server() as (port, _):
        client = await serve(secret=secret, store=RedisStore(f"redis://127.0.0.1:{port}/0"), store_timeout=2)
        assert (await (await client.get("/incr")).json())["n"] == 1
    # the server is gone now (the context stopped it)
    loading = await client.get("/read")  # has a cookie: the load fails
    assert loading.status == 503
    assert loading.headers["Retry-After"] == "5"
    assert "session store" in await loading.text()
    client.session.cookie_jar.clear()
    saving = await client.get("/incr")  # no cookie: nothing to load, the save fails
    assert saving.status == 503
    assert "Set-Cookie" not in saving.headers


async def test_the_session_is_coatchecks(serve: ClientFactory, secret: str) -> None:
    seen: list[object] = []
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        seen.append(await get_session(request))
        return web.Response(text="ok")

    app.router.add_get("/", handler)
    middleware = SessionMiddleware(app, secret=secret, store=MemoryStore())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await client.get("/")
    assert isinstance(seen[0], AiohttpSession)
    assert isinstance(middleware.store, MemoryStore)


def test_misconfiguration_fails_at_setup(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="secret"):
        SessionMiddleware(web.Application(), secret="")
    app = web.Application()
    SessionMiddleware(app, secret=secret, store=MemoryStore())
    with pytest.raises(RuntimeError, match="already set up"):
        SessionMiddleware(app, secret=secret, store=MemoryStore())
    with pytest.raises(TypeError, match=r"aiohttp\.web\.Application"):
        SessionMiddleware(object(), secret=secret, store=MemoryStore())
