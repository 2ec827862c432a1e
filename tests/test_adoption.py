"""migrate_from=[...] through the ASGI middleware: legacy sessions written by the real
libraries are adopted under a new coatcheck id, the legacy record is deleted and the legacy
cookie expired; forged legacy cookies give a fresh, empty session."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
from flask import Flask, session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from coatcheck import SessionMiddleware
from coatcheck.codec import serializer_for
from coatcheck.crypto import storage_key
from coatcheck.errors import ConfigurationError
from coatcheck.migrate import FlaskCookie, FlaskSessionRedis, StarletteCookie
from coatcheck.stores import CookieStore, MemoryStore
from tests.helpers import CountingStore, make_settings, set_cookies

LEGACY = {"user_id": "ada", "cart": [1, 2, 3]}
JAR_DOMAIN = "testserver.local"  # where httpx's cookie jar files cookies for http://testserver


# ---- legacy sessions, written by the real libraries -----------------------------------------
def starlette_cookie(secret: str, data: dict[str, Any], name: str = "session") -> str:
    async def login(request: Request) -> Response:
        request.session.update(data)
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/login", login)],
        middleware=[Middleware(StarletteSessions, secret_key=secret, session_cookie=name)],
    )
    with TestClient(app) as client:
        return str(client.get("/login").cookies[name])


def flask_app(secret: str, data: dict[str, Any], **config: Any) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret
    app.config.update(config)

    @app.get("/login")
    def login() -> str:
        session.update(data)
        session.permanent = True
        return "ok"

    return app


def flask_cookie(app: Flask) -> str:
    client = app.test_client()
    client.get("/login")
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return cookie.value


def flask_session_sid(secret: str, client: redis.Redis, prefix: str, data: dict[str, Any]) -> str:
    from flask_session import Session

    app = flask_app(secret, data, SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX=prefix)
    Session(app)
    return flask_cookie(app)


# ---- the app switching to coatcheck ---------------------------------------------------------
async def whoami(request: Request) -> Response:
    return JSONResponse(dict(request.session))


async def logout(request: Request) -> Response:
    request.session.logout()
    return JSONResponse({})


def coatcheck_app(**options: Any) -> Starlette:
    app = Starlette(routes=[Route("/whoami", whoami), Route("/logout", logout)])
    app.add_middleware(SessionMiddleware, **options)
    return app


def client(app: Any, cookies: dict[str, str]) -> httpx.AsyncClient:
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    for name, value in cookies.items():
        c.cookies.set(name, value, domain=JAR_DOMAIN)  # as the old app's responses left it
    return c


def signed_id(set_cookie: str) -> str:
    """The session id inside coatcheck's `session=s%3A<id>.<mac>` Set-Cookie value."""
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    assert value.startswith("s%3A")
    return value[4:].rsplit(".", 1)[0]


@pytest.fixture
def store() -> CountingStore:
    return CountingStore(MemoryStore())


# ---- Starlette's cookie ---------------------------------------------------------------------
async def test_starlette_user_keeps_their_session_under_a_new_coatcheck_id(
    secret: str, store: CountingStore
) -> None:
    legacy = starlette_cookie("old-" + secret, LEGACY)
    app = coatcheck_app(secret=secret, store=store, migrate_from=[StarletteCookie("old-" + secret)])
    async with client(app, {"session": legacy}) as c:
        first = await c.get("/whoami")
        assert first.json() == LEGACY  # not logged out
        (cookie,) = set_cookies(first)  # same name: ours replaces the legacy cookie, no extra expiry
        new_id = signed_id(cookie)
        assert legacy not in cookie
        assert await store.inner.get(storage_key(new_id)) is not None  # saved at commit
        assert (await c.get("/whoami")).json() == LEGACY  # now from coatcheck's own cookie
    assert store.calls["set"] == 1


async def test_a_legacy_cookie_with_another_name_is_expired(secret: str, store: CountingStore) -> None:
    legacy = starlette_cookie(secret, LEGACY, name="old_session")
    reader = StarletteCookie(secret, cookie_name="old_session")
    app = coatcheck_app(secret=secret, store=store, migrate_from=[reader])
    async with client(app, {"old_session": legacy}) as c:
        response = await c.get("/whoami")
        assert response.json() == LEGACY
        ours, expiry = set_cookies(response)
        assert ours.startswith("session=s%3A")
        assert expiry.startswith("old_session=;") and "Max-Age=0" in expiry and "Path=/" in expiry
        assert "old_session" not in c.cookies
        assert (await c.get("/whoami")).json() == LEGACY
    assert store.calls["set"] == 1


async def test_a_forged_legacy_cookie_gives_a_fresh_empty_session(secret: str, store: CountingStore) -> None:
    forged = starlette_cookie("not-the-old-secret-" + secret, LEGACY)
    app = coatcheck_app(secret=secret, store=store, migrate_from=[StarletteCookie(secret)])
    async with client(app, {"session": forged}) as c:
        response = await c.get("/whoami")
    assert response.json() == {}
    assert set_cookies(response) == [] and store.calls["set"] == 0


async def test_a_live_coatcheck_session_wins_over_a_legacy_cookie(secret: str, store: CountingStore) -> None:
    reader = StarletteCookie(secret, cookie_name="old_session")
    app = coatcheck_app(secret=secret, store=store, migrate_from=[reader])
    async with client(app, {"old_session": starlette_cookie(secret, LEGACY, name="old_session")}) as c:
        await c.get("/whoami")  # adopted
        mallory = starlette_cookie(secret, {"user_id": "mallory"}, name="old_session")
        c.cookies.set("old_session", mallory, domain=JAR_DOMAIN)
        response = await c.get("/whoami")
    assert response.json() == LEGACY and set_cookies(response) == []
    assert store.calls["set"] == 1


async def test_adopted_into_a_client_side_session(secret: str) -> None:
    legacy = starlette_cookie(secret, LEGACY)
    app = coatcheck_app(secret=secret, store=CookieStore(), migrate_from=[StarletteCookie(secret)])
    async with client(app, {"session": legacy}) as c:
        response = await c.get("/whoami")
        assert response.json() == LEGACY
        (sealed,) = set_cookies(response)
        assert sealed.startswith("session=") and legacy not in sealed
        assert (await c.get("/whoami")).json() == LEGACY


# ---- Flask's cookie, tagged values ----------------------------------------------------------
async def test_flask_cookie_values_keep_their_types_with_the_tagged_serializer(secret: str) -> None:
    from datetime import UTC, datetime

    data = {"pair": (1, 2), "raw": b"\xff", "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}
    legacy = flask_cookie(flask_app(secret, data))
    seen: dict[str, Any] = {}

    async def types(request: Request) -> Response:
        seen.update(request.session)
        return PlainTextResponse("ok")

    tagged = serializer_for("tagged")
    store = CountingStore(MemoryStore(serializer=tagged))  # a store object keeps its own serializer
    app = Starlette(routes=[Route("/types", types)])
    app.add_middleware(
        SessionMiddleware, secret=secret, store=store, serializer=tagged, migrate_from=[FlaskCookie(secret)]
    )
    async with client(app, {"session": legacy}) as c:
        await c.get("/types")
        await c.get("/types")  # the second time from coatcheck's store
    assert seen == {**data, "_permanent": True}
    assert store.calls["set"] == 1


# ---- Flask-Session's Redis record -------------------------------------------------------------
@pytest.fixture
def prefix() -> str:
    return f"cc-adopt-{secrets.token_hex(6)}:"


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(match="cc-adopt-*"):
        client.delete(key)
    client.close()


@pytest.fixture
async def reader(redis_url: str, prefix: str) -> AsyncIterator[FlaskSessionRedis]:
    reader = FlaskSessionRedis(redis_url, key_prefix=prefix)
    yield reader
    await reader.aclose()


async def test_flask_session_record_is_adopted_and_deleted(
    secret: str, sync_redis: redis.Redis, prefix: str, reader: FlaskSessionRedis, store: CountingStore
) -> None:
    sid = flask_session_sid(secret, sync_redis, prefix, LEGACY)
    app = coatcheck_app(secret=secret, store=store, migrate_from=[reader])
    async with client(app, {"session": sid}) as c:
        response = await c.get("/whoami")
        assert response.json() == {**LEGACY, "_permanent": True}
        (cookie,) = set_cookies(response)
        new_id = signed_id(cookie)
        assert new_id != sid
        assert not sync_redis.exists(prefix + sid)  # the legacy record is gone
        assert (await c.get("/whoami")).json() == {**LEGACY, "_permanent": True}
    assert store.calls["get"] == 1  # only for the new id, on the second request
    assert await store.inner.get(storage_key(sid)) is None and await store.inner.get(storage_key(new_id))


async def test_logging_out_in_the_first_request_deletes_the_legacy_record_too(
    secret: str, sync_redis: redis.Redis, prefix: str, reader: FlaskSessionRedis, store: CountingStore
) -> None:
    sid = flask_session_sid(secret, sync_redis, prefix, LEGACY)
    app = coatcheck_app(secret=secret, store=store, migrate_from=[reader])
    async with client(app, {"session": sid}) as c:
        response = await c.get("/logout")
        assert "Max-Age=0" in set_cookies(response)[0]
        assert not sync_redis.exists(prefix + sid)
        c.cookies.set("session", sid, domain=JAR_DOMAIN)  # replaying the legacy cookie adopts nothing now
        assert (await c.get("/whoami")).json() == {}


async def test_a_forged_flask_session_id_reads_nothing(
    secret: str, sync_redis: redis.Redis, prefix: str, reader: FlaskSessionRedis, store: CountingStore
) -> None:
    flask_session_sid(secret, sync_redis, prefix, LEGACY)
    app = coatcheck_app(secret=secret, store=store, migrate_from=[reader])
    async with client(app, {"session": secrets.token_urlsafe(32)}) as c:
        response = await c.get("/whoami")
    assert response.json() == {} and set_cookies(response) == [] and store.total == 0


# ---- configuration ----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [[object()], "session", [StarletteCookie]])
def test_migrate_from_accepts_only_a_list_of_readers(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="migrate_from"):
        make_settings(migrate_from=bad)


def test_readers_are_bound_to_the_middlewares_serializer(secret: str) -> None:
    reader = StarletteCookie(secret)
    app = SessionMiddleware(coatcheck_app, secret=secret, serializer="tagged", migrate_from=[reader])
    assert reader.serializer is app.manager.serializer


# ---- the WSGI middleware ----------------------------------------------------------------------
def test_wsgi_middleware_adopts_a_legacy_session(secret: str, store: CountingStore) -> None:
    import json

    from werkzeug.test import Client

    from coatcheck.wsgi import ENVIRON_KEY
    from coatcheck.wsgi import SessionMiddleware as WSGISessionMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(dict(environ[ENVIRON_KEY])).encode()]

    reader = StarletteCookie(secret, cookie_name="old_session")
    wsgi = WSGISessionMiddleware(app, secret=secret, store=store, migrate_from=[reader])
    c = Client(wsgi)
    c.set_cookie("old_session", starlette_cookie(secret, LEGACY, name="old_session"))
    response = c.get("/")
    assert response.json == LEGACY
    ours, expiry = response.headers.getlist("Set-Cookie")
    assert ours.startswith("session=s%3A") and expiry.startswith("old_session=;")
    assert c.get("/").json == LEGACY and c.get_cookie("old_session") is None
    assert store.calls["set"] == 1
