"""compat="express": sessions shared with real Express apps.

The interop tests start the Express app in tests/interop/node (express-session with
connect-redis, and cookie-session under /cs; packages from its package-lock.json, installed
by `npm ci` in .ci/run) on a free loopback port, next to a coatcheck Starlette app, both on
the shared Redis under a key prefix of their own. One "browser" (a cookie jar) visits both,
as a real browser would visit two apps on one host. The codec tests below them need no server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coatcheck import Cookie, SessionMiddleware
from coatcheck.crypto import Keyring, storage_key
from coatcheck.errors import ConfigurationError, SessionStoreError
from coatcheck.express import (
    EXPRESS_ATTRIBUTES,
    META_FIELD,
    ExpressFormat,
    bson_session,
    js_date,
    mongo_fields,
    mongo_session,
    new_id,
)
from coatcheck.record import Meta, Record
from coatcheck.stores import CookieStore, MemoryStore, RedisStore
from coatcheck.stores.express_redis import ExpressRedisStore
from tests.helpers import Clock, make_settings
from tests.services import (
    MONGODB_URL,
    REDIS_URL,
    delete_prefixed,
    free_port,
    redis_server,
    unavailable,
    wait_for_port,
)

NODE_DIR = Path(__file__).resolve().parent / "interop" / "node"
NODE_PACKAGES = ("express", "express-session", "connect-redis", "redis", "cookie-session")
ID = re.compile(r"^[A-Za-z0-9_-]{32}$")  # uid-safe(24)


# ---- the two apps and the browser that visits both ---------------------------------------------
def python_app(secret: str, store: Any, **options: Any) -> SessionMiddleware:
    """The coatcheck side: the same routes as tests/interop/node/server.js."""

    def view(request: Request) -> JSONResponse:
        s = request.session
        passport = s.get("passport")
        return JSONResponse(
            {
                "user": passport.get("user") if isinstance(passport, dict) else None,
                "id": None if s.is_new and not s.modified else s.id,  # None: no session
                "user_id": s.user_id,
                "data": s.to_dict(),
            }
        )

    async def me(request: Request) -> JSONResponse:
        return view(request)

    async def login(request: Request) -> JSONResponse:
        body = await request.json()
        s = request.session
        s.login(body["user"])  # new id, bound to the user
        s["passport"] = {"user": body["user"]}  # what passport on the Node side reads
        if "max_age" in body:
            s.cookie.max_age = body["max_age"]
        return view(request)

    async def put(request: Request) -> JSONResponse:
        request.session.update(await request.json())
        return view(request)

    async def unset(request: Request) -> JSONResponse:
        for key in (await request.json())["keys"]:
            request.session.pop(key, None)
        return view(request)

    async def regenerate(request: Request) -> JSONResponse:
        request.session.regenerate()
        request.session.update(await request.json())
        return view(request)

    async def destroy(request: Request) -> JSONResponse:
        request.session.destroy()
        return JSONResponse({"destroyed": True})

    routes = [
        Route("/me", me),
        Route("/login", login, methods=["POST"]),
        Route("/set", put, methods=["POST"]),
        Route("/unset", unset, methods=["POST"]),
        Route("/regenerate", regenerate, methods=["POST"]),
        Route("/destroy", destroy, methods=["POST"]),
    ]
    return SessionMiddleware(Starlette(routes=routes), secret=secret, store=store, **options)


class Browser:
    """One cookie jar for both apps (cookies are per host, not per port)."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    async def call(
        self, client: httpx.AsyncClient, path: str, body: Any = None, *, cookies: dict[str, str] | None = None
    ) -> dict[str, Any]:
        jar = self.cookies if cookies is None else cookies
        if body is None:
            response = await client.get(path, headers=cookie_header(jar))
        else:
            response = await client.post(path, json=body, headers=cookie_header(jar))
        return remember(jar, response)

    def call_sync(self, client: httpx.Client, path: str, body: Any = None) -> dict[str, Any]:
        """`call` for WSGI apps (and a Node app seen from the same synchronous test)."""
        if body is None:
            response = client.get(path, headers=cookie_header(self.cookies))
        else:
            response = client.post(path, json=body, headers=cookie_header(self.cookies))
        return remember(self.cookies, response)


def cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}


def remember(jar: dict[str, str], response: httpx.Response) -> dict[str, Any]:
    """Apply the response's Set-Cookie headers to `jar`; the JSON body of a 200."""
    assert response.status_code == 200, response.text
    for header in response.headers.get_list("set-cookie"):
        name, value, gone = parse_set_cookie(header)
        if gone:
            jar.pop(name, None)
        else:
            jar[name] = value
    return response.json()  # type: ignore[no-any-return]


def parse_set_cookie(header: str) -> tuple[str, str, bool]:
    """(name, value, True if the header deletes the cookie)."""
    first, *attributes = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    gone = False
    for attribute in attributes:
        key, _, arg = attribute.partition("=")
        if key.lower() == "max-age" and int(arg) <= 0:
            gone = True
        elif key.lower() == "expires":
            when = datetime.strptime(arg, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
            gone = gone or when <= datetime.now(UTC)
    return name, value, gone


def no_cookie_jar() -> CookieJar:
    """httpx clients keep cookies of their own; the Browser is the only jar here."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", cookies=no_cookie_jar()
    )


def http_client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, cookies=no_cookie_jar())


async def poll(condition: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until `condition()` holds (TimeoutError after `timeout`)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await condition():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise TimeoutError(f"condition not met within {timeout}s")


# ---- fixtures: the shared Redis under a prefix, the Node app ----------------------------------
@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis (connect-redis's `prefix`), cleaned up."""
    value = f"cctest-express-{secrets.token_hex(4)}:"
    yield value
    delete_prefixed(redis_url, value)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client, to look at what each side stored."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("Node.js", "the node binary is not installed (apt-get install nodejs npm)")
    missing = [p for p in NODE_PACKAGES if not (NODE_DIR / "node_modules" / p / "package.json").is_file()]
    if missing:
        unavailable(
            "the Express test app's npm packages",
            f"{', '.join(missing)} missing: run `npm ci` in tests/interop/node (.ci/run does)",
        )
    return node


StartExpress = Callable[..., str]


@pytest.fixture
def express(tmp_path: Path) -> Iterator[StartExpress]:
    """Start tests/interop/node/server.js with the given environment; returns its base URL."""
    node = node_binary()
    processes: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> str:
        port = free_port()
        log = tmp_path / f"express-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [node, "server.js"],
                cwd=NODE_DIR,
                env={**os.environ, "PORT": str(port), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        processes.append(proc)
        try:
            wait_for_port("127.0.0.1", port, timeout=20)
        except TimeoutError:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"the Express app did not start:\n{log.read_text(errors='replace')}")
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in processes:
        proc.terminate()
        proc.wait(timeout=10)


class Pair:
    """An Express app and a coatcheck app sharing one Redis and one secret, and a browser."""

    def __init__(self, node: httpx.AsyncClient, python: httpx.AsyncClient, app: SessionMiddleware) -> None:
        self.node = node
        self.python = python
        self.app = app
        self.browser = Browser()

    async def on_node(self, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        return await self.browser.call(self.node, path, body, **kw)

    async def on_python(self, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        return await self.browser.call(self.python, path, body, **kw)


PairFactory = Callable[..., Awaitable[Pair]]


@pytest.fixture
async def pair(express: StartExpress, secret: str, redis_url: str, prefix: str) -> AsyncIterator[PairFactory]:
    """`await pair(node_env={...}, **python_options)`: both apps on one Redis and secret."""
    opened: list[tuple[httpx.AsyncClient, httpx.AsyncClient, SessionMiddleware]] = []

    async def make(node_env: dict[str, str] | None = None, **options: Any) -> Pair:
        url = express(SECRET=secret, REDIS_URL=redis_url, PREFIX=prefix, **(node_env or {}))
        store = RedisStore(redis_url, prefix=prefix)
        app = python_app(secret, store, compat="express", **options)
        node, python = http_client(url), asgi_client(app)
        opened.append((node, python, app))
        return Pair(node, python, app)

    yield make
    for node, python, app in opened:
        await node.aclose()
        await python.aclose()
        await app.manager.close()


# ---- interop: express-session + connect-redis <-> coatcheck ------------------------------------
@pytest.mark.node
@pytest.mark.redis
async def test_login_on_express_is_seen_by_python(
    pair: PairFactory, secret: str, prefix: str, raw: redis.Redis
) -> None:
    p = await pair()
    on_node = await p.on_node("/login", {"user": "alice"})
    assert ID.match(on_node["id"])
    # the cookie express-session set is byte for byte coatcheck's signature of that id
    assert p.browser.cookies["connect.sid"] == Keyring(secret).sign_id(on_node["id"])
    # connect-redis's key: the prefix and the raw id, a JSON string with a TTL
    stored = json.loads(raw.get(prefix + on_node["id"]))
    assert stored["passport"] == {"user": "alice"}
    assert 0 < raw.ttl(prefix + on_node["id"]) <= 86400

    on_python = await p.on_python("/me")
    assert on_python["user"] == "alice"
    assert on_python["id"] == on_node["id"]
    assert on_python["data"] == {"passport": {"user": "alice"}}  # no "cookie", no metadata field


@pytest.mark.node
@pytest.mark.redis
async def test_python_changes_reach_express_and_node_fields_round_trip_untouched(
    pair: PairFactory, prefix: str, raw: redis.Redis
) -> None:
    p = await pair()
    node_fields = {
        "flash": [],  # Redis's cjson would turn this into {}
        "empty": {},
        "big": 1e20,  # and round this to 14 digits
        "precise": 0.1 + 0.2,
        "text": 'Zoë ☃ "quoted" </script>',
        "nested": {"a": [1, {"b": None}], "c.d": True, "$e": False},
    }
    sid = (await p.on_node("/login", {"user": "alice"}))["id"]
    await p.on_node("/set", node_fields)
    before = json.loads(raw.get(prefix + sid))

    seen = await p.on_python("/me")
    assert seen["data"] == {"passport": {"user": "alice"}, **node_fields}
    await p.on_python("/set", {"cart": [1, 2, 3]})
    await p.on_python("/unset", {"keys": ["empty"]})

    after = json.loads(raw.get(prefix + sid))
    assert after["cart"] == [1, 2, 3]
    assert "empty" not in after
    for key, value in before.items():
        if key not in ("empty", "cookie"):
            assert after[key] == value, key
    # express-session's cookie object is kept: its attributes as Node wrote them
    assert {k: v for k, v in after["cookie"].items() if k != "expires"} == {
        k: v for k, v in before["cookie"].items() if k != "expires"
    }

    on_node = await p.on_node("/me")
    session = on_node["session"]
    assert on_node["user"] == "alice"
    assert session["cart"] == [1, 2, 3]
    assert "empty" not in session
    for key in ("flash", "big", "precise", "text", "nested"):
        assert session[key] == node_fields[key], key
    assert session["cookie"]["originalMaxAge"] is None and session["cookie"]["httpOnly"] is True


@pytest.mark.node
@pytest.mark.redis
async def test_login_on_python_is_seen_by_express(pair: PairFactory, prefix: str, raw: redis.Redis) -> None:
    p = await pair()
    on_python = await p.on_python("/login", {"user": "bob"})
    sid = on_python["id"]
    assert ID.match(sid)  # uid-safe's 24 bytes, like express-session's own ids
    stored = json.loads(raw.get(prefix + sid))
    assert stored["cookie"] == {
        "originalMaxAge": None,
        "expires": None,
        "secure": False,
        "httpOnly": True,
        "path": "/",
        "sameSite": "lax",
    }

    on_node = await p.on_node("/me")
    assert on_node["user"] == "bob"
    assert on_node["id"] == sid
    # Node changes the session; coatcheck's metadata (the user binding) rides along untouched
    await p.on_node("/set", {"theme": "dark"})
    assert META_FIELD in json.loads(raw.get(prefix + sid))
    again = await p.on_python("/me")
    assert again["user_id"] == "bob"
    assert again["data"] == {"passport": {"user": "bob"}, "theme": "dark"}


@pytest.mark.node
@pytest.mark.redis
async def test_regenerate_on_express_is_honoured_by_python(
    pair: PairFactory, raw: redis.Redis, prefix: str
) -> None:
    p = await pair()
    old_id = (await p.on_node("/login", {"user": "alice"}))["id"]
    old_cookies = dict(p.browser.cookies)
    assert (await p.on_python("/me"))["user"] == "alice"

    new = await p.on_node("/regenerate", {"step": 2})
    assert new["id"] != old_id and not raw.exists(prefix + old_id)
    # the old cookie opens nothing on the Python side, and its id is never adopted
    stale = await p.browser.call(p.python, "/set", {"probe": 1}, cookies=old_cookies)
    assert stale["user"] is None and stale["id"] not in (None, old_id)
    assert not raw.exists(prefix + old_id)
    # the new cookie opens the new session
    assert (await p.on_python("/me"))["data"] == {"step": 2}


@pytest.mark.node
@pytest.mark.redis
async def test_regenerate_on_python_is_honoured_by_express(
    pair: PairFactory, raw: redis.Redis, prefix: str
) -> None:
    p = await pair()
    old_id = (await p.on_node("/login", {"user": "alice"}))["id"]
    old_cookies = dict(p.browser.cookies)

    new = await p.on_python("/regenerate", {"step": 2})
    assert new["id"] != old_id and not raw.exists(prefix + old_id)
    assert (await p.browser.call(p.node, "/me", cookies=old_cookies))["session"].get("passport") is None
    on_node = await p.on_node("/me")
    assert on_node["id"] == new["id"]
    assert on_node["session"]["step"] == 2 and "passport" not in on_node["session"]


@pytest.mark.node
@pytest.mark.redis
async def test_destroy_on_either_side_is_honoured_by_the_other(
    pair: PairFactory, raw: redis.Redis, prefix: str
) -> None:
    p = await pair()
    sid = (await p.on_node("/login", {"user": "alice"}))["id"]
    await p.on_node("/destroy", {})
    assert not raw.exists(prefix + sid)
    seen = await p.on_python("/me")  # express-session leaves the cookie; the record is gone
    assert seen["user"] is None and seen["id"] is None

    sid = (await p.on_python("/login", {"user": "bob"}))["id"]
    assert (await p.on_node("/me"))["user"] == "bob"
    await p.on_python("/destroy", {})
    assert not raw.exists(prefix + sid)
    assert "connect.sid" not in p.browser.cookies  # coatcheck expired the cookie
    old_cookie = {"connect.sid": p.app.manager.keyring.sign_id(sid)}
    assert (await p.browser.call(p.node, "/me", cookies=old_cookie))["user"] is None


@pytest.mark.node
@pytest.mark.redis
async def test_cookie_expiry_written_by_express_is_enforced_by_python(
    pair: PairFactory, raw: redis.Redis, prefix: str
) -> None:
    p = await pair()
    sid = (await p.on_node("/login", {"user": "alice", "maxAge": 1500}))["id"]
    assert 0 < raw.pttl(prefix + sid) <= 2000  # connect-redis: EX from cookie.expires, rounded up
    seen = await p.on_python("/me")
    assert seen["user"] == "alice"
    logged_in = p.browser.cookies.copy()

    async def python_lost_it() -> bool:
        return (await p.browser.call(p.python, "/me", cookies=dict(logged_in)))["user"] is None

    waited = await poll(python_lost_it, timeout=10)
    assert waited > 0.5  # expired by the deadline Node wrote, not at once
    assert not raw.exists(prefix + sid)


@pytest.mark.node
@pytest.mark.redis
async def test_cookie_expiry_written_by_python_is_enforced_by_express(
    pair: PairFactory, raw: redis.Redis, prefix: str
) -> None:
    p = await pair()
    on_python = await p.on_python("/login", {"user": "bob", "max_age": 1.5})
    sid = on_python["id"]
    assert 0 < raw.pttl(prefix + sid) <= 1500
    stored = json.loads(raw.get(prefix + sid))
    assert stored["cookie"]["originalMaxAge"] == 1500
    expires = datetime.fromisoformat(stored["cookie"]["expires"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (time.time() + raw.pttl(prefix + sid) / 1000)) < 1.0

    # Node reads it; its touch slides the deadline by originalMaxAge, as express-session does
    # on every request, so the wait starts from there and makes no request.
    on_node = await p.on_node("/me")
    assert on_node["user"] == "bob"
    assert on_node["session"]["cookie"]["originalMaxAge"] == 1500  # Node keeps coatcheck's max-age

    async def gone() -> bool:
        return not raw.exists(prefix + sid)

    assert await poll(gone, timeout=10) > 1.0
    assert (await p.on_node("/me"))["user"] is None


@pytest.mark.node
@pytest.mark.redis
@pytest.mark.slow
async def test_activity_on_either_side_keeps_the_session_alive_for_the_other(
    pair: PairFactory, raw: redis.Redis, prefix: str
) -> None:
    """Browser-session cookies: the record lives `ttl` (Node) / `idle_timeout` (coatcheck) after
    the last activity, and each side's touch slides the deadline the other one reads."""
    p = await pair(node_env={"TTL": "2"}, idle_timeout=2, touch_after=0)
    sid = (await p.on_node("/login", {"user": "alice"}))["id"]
    start = time.monotonic()
    while time.monotonic() - start < 3.5:  # past Node's 2 s, kept alive by Python traffic only
        assert (await p.on_python("/me"))["user"] == "alice"
        assert 0 < raw.pttl(prefix + sid) <= 2000
        await asyncio.sleep(0.3)  # the user's pace, not a synchronisation
    assert (await p.on_node("/me"))["user"] == "alice"

    sid = (await p.on_python("/login", {"user": "bob"}))["id"]
    start = time.monotonic()
    while time.monotonic() - start < 3.5:  # past coatcheck's 2 s, kept alive by Node traffic only
        assert (await p.on_node("/me"))["user"] == "bob"
        await asyncio.sleep(0.3)
    assert (await p.on_python("/me"))["user_id"] == "bob"

    async def gone() -> bool:  # no requests now: any of them would keep it alive
        return not raw.exists(prefix + sid)

    assert await poll(gone, timeout=10) > 1.0  # idle for the ttl, then gone
    assert (await p.on_python("/me"))["user"] is None
    assert (await p.on_node("/me"))["user"] is None


@pytest.mark.node
@pytest.mark.redis
async def test_concurrent_python_commits_on_a_node_session_all_survive(
    pair: PairFactory, prefix: str, raw: redis.Redis
) -> None:
    p = await pair()
    sid = (await p.on_node("/login", {"user": "alice"}))["id"]
    await p.on_node("/set", {"nodeOnly": {"keep": [1, 2]}})
    cookies = dict(p.browser.cookies)
    await asyncio.gather(
        *(p.browser.call(p.python, "/set", {f"k{i}": i}, cookies=dict(cookies)) for i in range(40))
    )
    stored = json.loads(raw.get(prefix + sid))
    assert {f"k{i}" for i in range(40)} <= set(stored)
    assert stored["nodeOnly"] == {"keep": [1, 2]} and stored["passport"] == {"user": "alice"}
    session = (await p.on_node("/me"))["session"]
    assert all(session[f"k{i}"] == i for i in range(40))


@pytest.mark.node
async def test_cookie_session_cookies_open_on_both_sides(express: StartExpress, secret: str) -> None:
    """Express's cookie-session and CookieStore(mode="cookie-session"), in the same fixture."""
    url = express(SECRET=secret, REDIS_URL=REDIS_URL, PREFIX="unused:")
    app = python_app(secret, CookieStore(mode="cookie-session"))
    browser = Browser()
    data = {"message": "hi", "snow": "Zoë ☃", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}}
    async with http_client(url) as node, asgi_client(app) as python:
        assert await browser.call(node, "/cs/put", data) == data
        assert set(browser.cookies) == {"session", "session.sig"}
        node_cookies = dict(browser.cookies)
        assert (await browser.call(python, "/me"))["data"] == data
        await browser.call(python, "/set", {"from": "python"})
        assert browser.cookies != node_cookies  # coatcheck re-signed a new value
        assert await browser.call(node, "/cs/") == {**data, "from": "python"}
        # a cookie coatcheck wrote from scratch opens in Node too
        fresh = Browser()
        await fresh.call(python, "/set", {"only": "python"})
        assert await fresh.call(node, "/cs/") == {"only": "python"}


# ---- coatcheck's own guarantees in compat mode (real Redis, no Node) ----------------------------
@pytest.mark.redis
async def test_absolute_timeout_is_enforced_by_coatcheck(
    secret: str, redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    clock = Clock(time.time())
    store = RedisStore(redis_url, prefix=prefix, clock=clock)
    app = python_app(secret, store, compat="express", absolute_timeout=600, idle_timeout=300, clock=clock)
    browser = Browser()
    async with asgi_client(app) as python:
        sid = (await browser.call(python, "/login", {"user": "bob"}))["id"]
        clock.now += 601  # Redis still holds the record (its TTL is real time), coatcheck refuses it
        assert raw.exists(prefix + sid)
        seen = await browser.call(python, "/me")
        assert seen["user"] is None and seen["id"] is None
    await app.manager.close()


@pytest.mark.redis
async def test_delta_commit_never_resurrects_a_destroyed_session(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    store = ExpressRedisStore(RedisStore(redis_url, prefix=prefix)).with_format(
        ExpressFormat(make_settings())
    )
    now = time.time()
    meta = Meta(created=now, last_seen=now)
    sid = new_id()
    await store.set(sid, Record(data={"a": 1}, meta=meta))
    assert await store.patch(sid, {"b": 2}, (), meta) is True
    await store.destroy(sid)
    assert await store.patch(sid, {"c": 3}, (), meta) is False
    await store.touch(sid, meta)
    assert not raw.exists(prefix + sid)
    await store.close()


@pytest.mark.redis
async def test_corrupt_record_is_a_store_error(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    store = ExpressRedisStore(RedisStore(redis_url, prefix=prefix)).with_format(
        ExpressFormat(make_settings())
    )
    raw.set(prefix + "x" * 32, b"[1, 2]")
    with pytest.raises(SessionStoreError, match="not a JSON object"):
        await store.get("x" * 32)
    await store.close()


async def test_reserved_key_is_refused_with_a_clear_error(secret: str, redis_url: str, prefix: str) -> None:
    app = python_app(secret, RedisStore(redis_url, prefix=prefix), compat="express")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as python:
        with pytest.raises(ValueError, match="'cookie' cannot be stored with compat='express'"):
            await python.post("/set", json={"cookie": 1})
    await app.manager.close()


# ---- configuration -----------------------------------------------------------------------------
def test_compat_names_the_cookie_connect_sid_unless_told_otherwise(secret: str) -> None:
    store = RedisStore("redis://127.0.0.1:6379/0")
    assert (
        SessionMiddleware(None, secret=secret, store=store, compat="express").manager.settings.cookie_name
        == "connect.sid"
    )  # type: ignore[arg-type]
    named = SessionMiddleware(None, secret=secret, store=store, compat="express", name="sid")  # type: ignore[arg-type]
    assert named.manager.settings.cookie_name == "sid"
    assert (
        SessionMiddleware(None, secret=secret, store=MemoryStore()).manager.settings.cookie_name == "session"
    )  # type: ignore[arg-type]


def test_compat_store_layouts(secret: str) -> None:
    redis_store = SessionMiddleware(
        None, secret=secret, store="redis://127.0.0.1:6379/0", compat="express"
    ).store  # type: ignore[arg-type]
    assert isinstance(redis_store, ExpressRedisStore) and redis_store.prefix == "sess:"
    custom = SessionMiddleware(
        None, secret=secret, store=RedisStore(prefix="app:sess:"), compat="express"
    ).store  # type: ignore[arg-type]
    assert custom.prefix == "app:sess:"


@pytest.mark.parametrize(
    ("store", "message"),
    [
        (MemoryStore(), "needs a store Node can share: RedisStore .* or MongoStore"),
        (CookieStore(mode="cookie-session"), "CookieStore\\(mode='cookie-session'\\) without compat"),
    ],
)
def test_compat_refuses_stores_node_cannot_share(secret: str, store: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SessionMiddleware(None, secret=secret, store=store, compat="express")  # type: ignore[arg-type]


def test_unknown_compat_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="compat must be one of"):
        SessionMiddleware(None, secret=secret, store=MemoryStore(), compat="rails")  # type: ignore[arg-type]


def test_ids_are_uid_safe_in_compat_mode(secret: str) -> None:
    express_manager = SessionMiddleware(None, secret=secret, store=RedisStore(), compat="express").manager  # type: ignore[arg-type]
    default_manager = SessionMiddleware(None, secret=secret, store=MemoryStore()).manager  # type: ignore[arg-type]
    ids = {
        express_manager.session_class(
            settings=express_manager.settings, serializer=express_manager.serializer, now=0
        ).id
        for _ in range(200)
    }
    assert len(ids) == 200 and all(ID.match(i) for i in ids)
    plain = default_manager.session_class(
        settings=default_manager.settings, serializer=default_manager.serializer, now=0
    )
    assert len(plain.id) == 43
    assert ID.match(new_id())


def test_flask_session_compat_config(secret: str) -> None:
    from coatcheck.flask import options_from_config

    options = options_from_config(
        {"SECRET_KEY": secret, "SESSION_COOKIE_NAME": "session", "SESSION_COMPAT": "express"}
    )
    assert options["compat"] == "express" and options["name"] is None
    named = options_from_config(
        {"SECRET_KEY": secret, "SESSION_COOKIE_NAME": "sid", "SESSION_COMPAT": "express"}
    )
    assert named["name"] == "sid"


def test_mongo_store_takes_connect_mongos_collection(secret: str) -> None:
    from coatcheck.stores import MongoStore
    from coatcheck.stores.express_mongo import ExpressMongoStore

    store = SessionMiddleware(
        None, secret=secret, store=MongoStore("mongodb://127.0.0.1:1/app"), compat="express"
    ).store  # type: ignore[arg-type]
    assert isinstance(store, ExpressMongoStore)
    assert (store.mongo.database_name, store.collection_name, store.stringify) == ("app", "sessions", True)
    named = MongoStore("mongodb://127.0.0.1:1/app", collection="web_sessions")
    assert (
        SessionMiddleware(None, secret=secret, store=named, compat="express").store.collection_name
        == "web_sessions"
    )  # type: ignore[arg-type]


@pytest.mark.node
@pytest.mark.redis
def test_a_flask_app_shares_sessions_with_express(
    express: StartExpress, secret: str, redis_url: str, prefix: str
) -> None:
    from flask import Flask, jsonify, request, session

    from coatcheck.flask import Session

    flask_app = Flask(__name__)
    flask_app.config.update(
        SECRET_KEY=secret, SESSION_STORE=RedisStore(redis_url, prefix=prefix), SESSION_COMPAT="express"
    )
    Session(flask_app)

    @flask_app.get("/me")
    def me() -> Any:
        return jsonify(user=(session.get("passport") or {}).get("user"), data=dict(session))

    @flask_app.post("/set")
    def put() -> Any:
        session.update(request.get_json())
        return jsonify(data=dict(session))

    node_url = express(SECRET=secret, REDIS_URL=redis_url, PREFIX=prefix)
    browser = Browser()
    with (
        httpx.Client(base_url=node_url, cookies=no_cookie_jar()) as node,
        httpx.Client(
            transport=httpx.WSGITransport(app=flask_app),
            base_url="http://testserver",
            cookies=no_cookie_jar(),
        ) as flask,
    ):
        browser.call_sync(node, "/login", {"user": "carol"})
        assert set(browser.cookies) == {"connect.sid"}
        assert browser.call_sync(flask, "/me")["user"] == "carol"
        browser.call_sync(flask, "/set", {"from": "flask"})
        seen = browser.call_sync(node, "/me")["session"]
        assert seen["from"] == "flask" and seen["passport"] == {"user": "carol"}


def test_wsgi_middleware_takes_compat(secret: str) -> None:
    from coatcheck.wsgi import SessionMiddleware as WSGISessionMiddleware

    wsgi = WSGISessionMiddleware(None, secret=secret, store="redis://127.0.0.1:6379/0", compat="express")  # type: ignore[arg-type]
    assert isinstance(wsgi.store, ExpressRedisStore)
    assert wsgi.manager.settings.cookie_name == "connect.sid"
    before = wsgi.store
    wsgi.manager.renew_store()  # type: ignore[attr-defined]  # what a forked gunicorn worker does
    assert wsgi.store is not before
    assert isinstance(wsgi.store, ExpressRedisStore)


# ---- the codec (pure) ---------------------------------------------------------------------------
NOW = 1_800_000_000.0


def fmt(**options: Any) -> ExpressFormat:
    return ExpressFormat(make_settings(name="connect.sid", **options))


def test_js_date_is_javascripts_date_to_json() -> None:
    assert js_date(0) == "1970-01-01T00:00:00.000Z"
    assert js_date(1_700_000_000.1239) == "2023-11-14T22:13:20.123Z"  # new Date(1700000000123).toJSON()


def node_session(**data: Any) -> dict[str, Any]:
    """What express-session + connect-redis store for a persistent-cookie session."""
    return {
        "cookie": {
            "originalMaxAge": 3_600_000,
            "expires": js_date(NOW + 3000),
            "secure": True,
            "httpOnly": True,
            "path": "/",
            "sameSite": "strict",
            "priority": "high",
        },
        **data,
    }


def test_a_node_record_reads_as_data_plus_meta() -> None:
    record = fmt().record(node_session(passport={"user": "7"}, n=1), now=NOW, expires_at=NOW + 3000)
    assert record.data == {"passport": {"user": "7"}, "n": 1}
    meta = record.meta
    assert meta.cookie["max_age"] == 3600.0
    assert meta.cookie[EXPRESS_ATTRIBUTES] == {
        "secure": True,
        "httpOnly": True,
        "path": "/",
        "sameSite": "strict",
        "priority": "high",
    }
    assert meta.idle_deadline == NOW + 3000
    assert meta.last_seen == NOW + 3000 - 3600  # recovered from the store's expiry
    assert meta.created == NOW and meta.absolute_deadline == NOW + 30 * 86400
    assert meta.user_id is None


def test_writing_back_keeps_node_cookie_attributes_and_unknown_fields() -> None:
    f = fmt()
    stored = node_session(passport={"user": "7"}, keep=[])
    record = f.record(stored, now=NOW, expires_at=NOW + 3000)
    meta = Meta(created=record.meta.created, last_seen=NOW, user_id="7", cookie=record.meta.cookie)
    merged = f.merge(stored, {"n": 2}, {"missing"}, meta)
    assert merged["keep"] == [] and merged["passport"] == {"user": "7"} and merged["n"] == 2
    assert merged["cookie"] == {**stored["cookie"], "expires": js_date(NOW + 3600)}
    assert merged[META_FIELD] == {"created": NOW, "user_id": "7"}
    # and coatcheck reads its own metadata back
    again = f.record(merged, now=NOW, expires_at=NOW + 3600)
    assert again.meta.user_id == "7" and again.meta.created == NOW and META_FIELD not in again.data


def test_a_python_session_is_written_as_express_session_would() -> None:
    f = fmt(cookie=Cookie(max_age=timedelta(hours=1), same_site="auto", domain="example.com"))
    meta = Meta(created=NOW, last_seen=NOW, cookie={EXPRESS_ATTRIBUTES: f.default_attributes(True)})
    obj = f.session_object({"cart": [1]}, meta)
    assert obj == {
        "cookie": {
            "originalMaxAge": 3_600_000,
            "expires": js_date(NOW + 3600),
            "secure": True,
            "httpOnly": True,
            "domain": "example.com",
            "path": "/",
            "sameSite": "none",
        },
        "cart": [1],
        META_FIELD: {"created": NOW},
    }


@pytest.mark.parametrize(
    ("options", "cookie", "deadline"),
    [
        ({}, {}, NOW + 86400),  # browser-session cookie: idle_timeout plays connect-redis's ttl
        ({"idle_timeout": None}, {}, NOW - 100 + 30 * 86400),  # only the absolute deadline
        ({"idle_timeout": None, "absolute_timeout": None}, {}, None),
        ({"cookie": Cookie(max_age=7200)}, {}, NOW + 7200),  # persistent: the cookie's expiry
        ({}, {"max_age": 60.0}, NOW + 60),  # session.cookie.max_age ("remember me")
        ({"absolute_timeout": 3600, "idle_timeout": 600}, {"max_age": 86400.0}, NOW - 100 + 3600),
    ],
)
def test_deadline_follows_express(
    options: dict[str, Any], cookie: dict[str, Any], deadline: float | None
) -> None:
    f = fmt(**options)
    meta = Meta(created=NOW - 100, last_seen=NOW, cookie=cookie)
    meta.absolute_deadline = (
        None if f.settings.absolute_seconds is None else meta.created + f.settings.absolute_seconds
    )
    assert f.deadline(meta) == deadline


@pytest.mark.parametrize("key", ["cookie", "id", "save", "regenerate", META_FIELD])
def test_reserved_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match=f"session key '{re.escape(key)}' cannot be stored"):
        fmt().session_object({key: 1}, Meta(created=NOW, last_seen=NOW))
    with pytest.raises(ValueError, match="cannot be stored"):
        fmt().merge({}, {key: 1}, (), Meta(created=NOW, last_seen=NOW))


def test_connect_mongo_documents_both_forms() -> None:
    f = fmt(cookie=Cookie(max_age=60))
    meta = Meta(created=NOW, last_seen=NOW)
    obj = f.session_object({"a": 1}, meta)
    as_string = mongo_fields(obj, NOW + 60, stringify=True)
    assert json.loads(as_string["session"]) == obj
    assert as_string["expires"] == datetime.fromtimestamp(NOW + 60, UTC)
    as_document = mongo_fields(obj, NOW + 60, stringify=False)
    assert as_document["session"]["cookie"]["expires"] == datetime.fromtimestamp(NOW + 60, UTC)
    assert "expires" not in mongo_fields(obj, None, stringify=True)  # connect-mongo: missing = live
    # read back, from either form; pymongo's naive UTC dates included
    naive = datetime.fromtimestamp(NOW + 60, UTC).replace(tzinfo=None)
    for stored in (as_string["session"], as_document["session"]):
        record = mongo_session(stored, f, now=NOW, expires=naive)
        assert record.data == {"a": 1}
        assert record.meta.idle_deadline == NOW + 60 and record.meta.cookie["max_age"] == 60.0
    assert bson_session({"cookie": {"expires": "not a date"}}) == {"cookie": {"expires": "not a date"}}


def test_connect_mongo_document_written_by_node_with_stringify_false() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, 678000)  # what pymongo hands out for a BSON date
    stored = {
        "cookie": {"originalMaxAge": None, "expires": None, "httpOnly": True, "path": "/"},
        "passport": {"user": "u1"},
        "visitedAt": when,
    }
    record = mongo_session(stored, fmt(), now=NOW, expires=when)
    assert record.data == {"passport": {"user": "u1"}, "visitedAt": "2030-01-02T03:04:05.678Z"}
    assert record.meta.cookie["max_age"] is None
    with pytest.raises(SessionStoreError):
        mongo_session("[]", fmt(), now=NOW, expires=None)


# ---- MongoDB (connect-mongo): only where a MongoDB server is given ------------------------------
def mongodb_url() -> str:
    if not MONGODB_URL:
        pytest.skip(
            "MongoDB is not packaged on this machine: set COATCHECK_MONGODB_URL to run the connect-mongo tests"
        )
    return MONGODB_URL


@pytest.mark.mongodb
@pytest.mark.node
@pytest.mark.parametrize("stringify", [True, False])
async def test_sessions_are_shared_with_express_over_connect_mongo(
    express: StartExpress, secret: str, stringify: bool
) -> None:
    from pymongo import AsyncMongoClient

    from coatcheck.stores import MongoStore
    from coatcheck.stores.express_mongo import ExpressMongoStore

    url = mongodb_url()
    database, collection = "coatcheck_test", f"express_{secrets.token_hex(4)}"
    node_url = express(
        SECRET=secret,
        STORE="mongo",
        MONGODB_URL=url,
        MONGO_DB=database,
        MONGO_COLLECTION=collection,
        MONGO_STRINGIFY="1" if stringify else "0",
    )
    store = ExpressMongoStore(MongoStore(url, database=database), collection=collection, stringify=stringify)
    app = python_app(secret, store, compat="express")
    assert app.store is store
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        async with http_client(node_url) as node, asgi_client(app) as python:
            p = Pair(node, python, app)
            sid = (await p.on_node("/login", {"user": "alice"}))["id"]
            doc = await client[database][collection].find_one({"_id": sid})
            assert doc is not None and isinstance(doc["session"], str) is stringify and "expires" in doc
            assert (await p.on_python("/me"))["user"] == "alice"
            await p.on_node("/set", {"flash": [], "nested": {"a": [1]}})
            await p.on_python("/set", {"cart": [1, 2]})
            session = (await p.on_node("/me"))["session"]
            assert session["cart"] == [1, 2] and session["flash"] == [] and session["nested"] == {"a": [1]}
            bob = await p.on_python("/login", {"user": "bob"})
            assert (await p.on_node("/me"))["user"] == "bob"
            await p.on_node("/destroy", {})
            assert await client[database][collection].find_one({"_id": bob["id"]}) is None
            assert (await p.on_python("/me"))["user"] is None
    finally:
        await client[database].drop_collection(collection)
        await client.close()
        await app.manager.close()


# ---- the docs' examples run as written --------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def python_block(path: Path, first_line: str) -> str:
    for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"{path.name} has no python block starting with {first_line!r}")


@pytest.mark.redis
async def test_the_readme_example_shares_connect_redis_records(
    secret: str, redis_url: str, raw: redis.Redis
) -> None:
    source = python_block(ROOT / "README.md", "# compat: both apps on one Redis")

    async def put(request: Request) -> JSONResponse:
        request.session["cart"] = [1]
        return JSONResponse({"id": request.session.id})

    namespace: dict[str, Any] = {"app": Starlette(routes=[Route("/", put)]), "SESSION_SECRET": secret}
    exec(compile(source, "README.md", "exec"), namespace)
    browser = Browser()
    async with asgi_client(namespace["app"]) as python:
        sid = (await browser.call(python, "/"))["id"]
    try:
        assert ID.match(sid) and set(browser.cookies) == {"connect.sid"}
        assert json.loads(raw.get("sess:" + sid))["cart"] == [1]
    finally:
        raw.delete("sess:" + sid)


@pytest.mark.node
@pytest.mark.redis
async def test_switching_compat_off_keeps_everyone_logged_in(express: StartExpress, secret: str) -> None:
    """The guide's migration script, on a Redis of its own (it moves every sess:* key)."""
    source = python_block(ROOT / "docs" / "express-migration.md", "# migrate_sessions.py")
    namespace: dict[str, Any] = {"__name__": "migrate_sessions"}
    exec(compile(source, "docs/express-migration.md", "exec"), namespace)
    with redis_server() as (port, _):
        url = f"redis://127.0.0.1:{port}/0"
        node_url = express(SECRET=secret, REDIS_URL=url, PREFIX="sess:")
        compat_app = python_app(secret, RedisStore(url), compat="express")
        browser = Browser()
        async with http_client(node_url) as node, asgi_client(compat_app) as python:
            alice = (await browser.call(node, "/login", {"user": "alice", "maxAge": 3_600_000}))["id"]
            bob_jar: dict[str, str] = {}
            bob = (await browser.call(python, "/login", {"user": "bob"}, cookies=bob_jar))["id"]
        await compat_app.manager.close()

        settings = make_settings(name="connect.sid")
        assert await namespace["migrate"](url, settings) == 2

        native_app = python_app(secret, RedisStore(url), name="connect.sid")  # compat off
        client = redis.Redis.from_url(url)
        try:
            assert not client.keys("sess:*")
            async with asgi_client(native_app) as python:
                seen = await browser.call(python, "/me")
                assert seen["user"] == "alice" and seen["id"] == alice
                seen = await browser.call(python, "/me", cookies=bob_jar)
                assert seen["user_id"] == "bob" and seen["id"] == bob
                # a session keeps its max-age and deadline through the move
                assert 3500 < client.ttl("coatcheck:s:" + storage_key(alice)) <= 3600
        finally:
            client.close()
            await native_app.manager.close()
