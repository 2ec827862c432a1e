"""coatcheck.starlette.SessionMiddleware: Starlette's constructor and cookie semantics, on real
Starlette apps (httpx's ASGITransport and Starlette's TestClient), under asyncio and trio."""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from coatcheck import Session
from coatcheck import SessionMiddleware as CoatcheckMiddleware
from coatcheck.errors import ConfigurationError
from coatcheck.starlette import SessionMiddleware, starlette_spelling
from coatcheck.stores import CookieStore, MemoryStore, SQLiteStore

FOURTEEN_DAYS = 14 * 24 * 3600


async def write(request: Request) -> JSONResponse:
    request.session.update(await request.json())
    return JSONResponse({"ok": True})


async def read(request: Request) -> JSONResponse:
    return JSONResponse(request.session)


async def as_dict(request: Request) -> JSONResponse:
    session = request.session
    return JSONResponse(
        {
            "is_dict": isinstance(session, dict),
            "is_ours": isinstance(session, Session),
            "dumps": json.loads(json.dumps(session)),
            "copy": dict(session),
        }
    )


async def clear(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse(request.session)


async def with_app_cookie(request: Request) -> Response:
    request.session["seen"] = True
    response = Response("ok")
    response.set_cookie("theme", "dark", path="/", httponly=True, samesite="lax")
    return response


ROUTES = [
    Route("/write", write, methods=["POST"]),
    Route("/read", read),
    Route("/as_dict", as_dict),
    Route("/app_cookie", with_app_cookie),
    Route("/clear", clear, methods=["POST"]),
]


def starlette_app(secret: str, **options: Any) -> Starlette:
    return Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, secret_key=secret, **options)])


def set_cookie_headers(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


STORES = {
    "cookie": lambda tmp: None,  # the default
    "memory": lambda tmp: MemoryStore(),
    "sqlite": lambda tmp: SQLiteStore(tmp / "sessions.db"),
}


# ---- the constructor -------------------------------------------------------------------------
def test_constructor_takes_starlettes_parameters_with_starlettes_defaults() -> None:
    theirs = inspect.signature(StarletteSessionMiddleware).parameters
    ours = inspect.signature(SessionMiddleware).parameters
    for name, parameter in theirs.items():
        assert name in ours, name
        assert ours[name].kind == parameter.kind, name
        assert ours[name].default == parameter.default, name
    assert list(ours)[: len(theirs)] == list(theirs)  # positional order kept


def test_weak_secret_is_refused_unless_insecure_dev_secret(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigurationError, match="insecure_dev_secret"):
        SessionMiddleware(Starlette(), secret_key="example")
    with caplog.at_level(logging.WARNING, logger="coatcheck"):
        SessionMiddleware(Starlette(), secret_key="example", insecure_dev_secret=True)
    assert "weak" in caplog.text


def test_starlette_secret_wrapper_is_accepted(secret: str) -> None:
    from starlette.datastructures import Secret

    with TestClient(starlette_app(Secret(secret))) as c:  # type: ignore[arg-type]
        c.post("/write", json={"a": 1})
        assert c.get("/read").json() == {"a": 1}


def test_options_map_to_starlettes_lifetime(secret: str) -> None:
    settings = SessionMiddleware(Starlette(), secret, max_age=3600).manager.settings
    assert settings.cookie_max_age == 3600 and settings.idle_seconds == 3600
    assert settings.absolute_seconds is None  # Starlette has no absolute limit
    browser = SessionMiddleware(Starlette(), secret, max_age=None).manager.settings
    assert browser.cookie_max_age is None and browser.idle_seconds == FOURTEEN_DAYS
    assert isinstance(SessionMiddleware(Starlette(), secret).store, CookieStore)
    secure = SessionMiddleware(Starlette(), secret, https_only=True, same_site="none").manager.settings
    assert secure.cookie.secure is True and secure.cookie.same_site == "none"


# ---- the session is a dict -------------------------------------------------------------------
@pytest.mark.parametrize("middleware", ["coatcheck.starlette", "coatcheck"])
async def test_session_serializes_and_type_checks_as_a_dict_over_asgi_transport(
    secret: str, middleware: str
) -> None:
    app = (
        starlette_app(secret)
        if middleware == "coatcheck.starlette"
        else CoatcheckMiddleware(Starlette(routes=ROUTES), secret=secret, store=MemoryStore())
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        await c.post("/write", json={"user": "ada", "cart": [1, 2]})
        body = (await c.get("/as_dict")).json()
        assert (await c.get("/read")).json() == {"user": "ada", "cart": [1, 2]}  # JSONResponse(session)
    assert body == {
        "is_dict": True,
        "is_ours": True,
        "dumps": {"user": "ada", "cart": [1, 2]},
        "copy": {"user": "ada", "cart": [1, 2]},
    }


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_session_serializes_as_a_dict_through_test_client(secret: str, backend: str) -> None:
    with TestClient(starlette_app(secret, store=MemoryStore()), backend=backend) as c:
        c.post("/write", json={"n": 1})
        assert c.get("/read").json() == {"n": 1}
        assert c.get("/as_dict").json()["copy"] == {"n": 1}


# ---- Starlette's cookie semantics ------------------------------------------------------------
@pytest.mark.parametrize("store", STORES)
def test_cookie_has_max_age_on_write_and_is_not_resent_on_read(
    secret: str, store: str, tmp_path: Path
) -> None:
    with TestClient(starlette_app(secret, store=STORES[store](tmp_path))) as c:
        (written,) = set_cookie_headers(c.post("/write", json={"a": 1}))
        read_response = c.get("/read")
    assert f"; Max-Age={FOURTEEN_DAYS};" in written
    assert read_response.json() == {"a": 1}
    assert set_cookie_headers(read_response) == []
    assert "cookie" in read_response.headers["vary"].lower()


def test_max_age_none_makes_a_browser_session_cookie(secret: str) -> None:
    with TestClient(starlette_app(secret, max_age=None)) as c:
        (written,) = set_cookie_headers(c.post("/write", json={"a": 1}))
        assert "Max-Age" not in written and "Expires" not in written
        assert c.get("/read").json() == {"a": 1}


def test_non_positive_max_age_expires_the_cookie_at_once_and_never_loads_it(secret: str) -> None:
    app = starlette_app(secret, max_age=-1, store=MemoryStore())
    with TestClient(app) as c:
        (written,) = set_cookie_headers(c.post("/write", json={"a": 1}))
    assert "; Max-Age=0;" in written
    value = re.match(r"session=([^;]*);", written)
    assert value is not None
    with TestClient(app, cookies={"session": value[1]}) as replay:
        assert replay.get("/read").json() == {}


def test_cookie_attributes_are_spelled_like_starlettes(secret: str) -> None:
    app = starlette_app(secret, path="/", domain="example.com", https_only=True, partitioned=True)
    with TestClient(app, base_url="https://example.com") as c:
        response = c.get("/app_cookie")
    session_cookie, app_cookie = sorted(
        set_cookie_headers(response), key=lambda h: not h.startswith("session=")
    )
    attributes = session_cookie.split("; ")
    for expected in ("path=/", "domain=example.com", "secure", "httponly", "samesite=lax", "partitioned"):
        assert expected in attributes
    assert app_cookie.startswith("theme=dark")  # the app's own cookie is left as Starlette wrote it
    assert (
        starlette_spelling(b"a=b; Path=/x; SameSite=Strict; Max-Age=5")
        == b"a=b; path=/x; samesite=strict; Max-Age=5"
    )


def test_clearing_a_session_destroys_its_record_and_expires_the_cookie(secret: str) -> None:
    store = MemoryStore()
    with TestClient(starlette_app(secret, store=store)) as c:
        c.post("/write", json={"a": 1})
        assert trio.run(store.count) == 1
        response = c.post("/clear")
        (expired,) = set_cookie_headers(response)
        assert expired.startswith("session=; Max-Age=0;")
        assert trio.run(store.count) == 0
        assert c.get("/read").json() == {}


def test_requests_outside_the_cookie_path_get_an_empty_session_that_is_never_saved(secret: str) -> None:
    store = MemoryStore()
    with TestClient(starlette_app(secret, path="/admin", store=store)) as c:
        response = c.post("/write", json={"a": 1})
        assert response.status_code == 200
        assert set_cookie_headers(response) == []
        assert c.get("/read").json() == {}
    assert trio.run(store.count) == 0


def test_https_only_cookie_is_never_set_on_plain_http(secret: str) -> None:
    with TestClient(starlette_app(secret, https_only=True, store=MemoryStore())) as c:
        assert set_cookie_headers(c.post("/write", json={"a": 1})) == []
        assert c.get("/read").json() == {}


# ---- switching logs nobody out ---------------------------------------------------------------
def starlette_cookie(secret: str, data: dict[str, Any]) -> str:
    """A cookie written by Starlette's own SessionMiddleware."""
    app = Starlette(routes=ROUTES, middleware=[Middleware(StarletteSessionMiddleware, secret_key=secret)])
    with TestClient(app) as c:
        c.post("/write", json=data)
        return c.cookies["session"]


@pytest.mark.parametrize("store", STORES)
def test_a_starlette_session_is_adopted_on_its_first_request(secret: str, store: str, tmp_path: Path) -> None:
    legacy = starlette_cookie(secret, {"user": "ada"})
    with TestClient(starlette_app(secret, store=STORES[store](tmp_path))) as c:
        first = c.get("/read", headers={"cookie": f"session={legacy}"})
        assert first.json() == {"user": "ada"}
        (replacement,) = set_cookie_headers(first)
        assert replacement.startswith("session=") and legacy not in replacement
        assert c.get("/read").json() == {"user": "ada"}  # now from coatcheck's own cookie


def test_a_forged_starlette_cookie_is_not_adopted(secret: str) -> None:
    forged = starlette_cookie("another-" + secret, {"user": "mallory"})
    with TestClient(starlette_app(secret)) as c:
        response = c.get("/read", headers={"cookie": f"session={forged}"})
    assert response.json() == {}
    assert set_cookie_headers(response) == []


def test_adoption_can_be_turned_off(secret: str) -> None:
    legacy = starlette_cookie(secret, {"user": "ada"})
    with TestClient(starlette_app(secret, adopt_starlette_cookie=False)) as c:
        assert c.get("/read", headers={"cookie": f"session={legacy}"}).json() == {}


# ---- trio --------------------------------------------------------------------------------------
@pytest.mark.parametrize("store", STORES)
def test_stores_work_under_trio_through_test_client(secret: str, store: str, tmp_path: Path) -> None:
    app = starlette_app(secret, store=STORES[store](tmp_path))
    with TestClient(app, backend="trio") as c:
        c.post("/write", json={"a": 1})
        c.post("/write", json={"b": 2})
        assert c.get("/read").json() == {"a": 1, "b": 2}


@pytest.mark.parametrize("store", STORES)
def test_stores_work_under_trio_run_with_asgi_transport(secret: str, store: str, tmp_path: Path) -> None:
    app = starlette_app(secret, store=STORES[store](tmp_path))

    async def scenario() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            await c.post("/write", json={"a": [1, 2]})
            return (await c.get("/read")).json()

    assert trio.run(scenario) == {"a": [1, 2]}


def test_sqlite_store_round_trips_under_trio(tmp_path: Path) -> None:
    from coatcheck.record import Meta, Record

    store = SQLiteStore(tmp_path / "direct.db")
    record = Record(data={"a": 1}, meta=Meta(created=1.0, last_seen=1.0))

    async def scenario() -> Any:
        await store.set("key", record)
        found = await store.get("key")
        await store.close()
        return found

    found = trio.run(scenario)
    assert found is not None and found.data == {"a": 1}


class NeverAnswers(MemoryStore):
    async def get(self, key: str) -> Any:
        await trio.sleep_forever()


def test_store_timeout_is_enforced_under_trio(secret: str, caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette(routes=ROUTES)
    wrapped = CoatcheckMiddleware(app, secret=secret, store=NeverAnswers(), store_timeout=0.05)
    with TestClient(signing_app(secret), backend="trio") as writer:
        writer.post("/write", json={"a": 1})
        cookie = writer.cookies["session"]
    with caplog.at_level(logging.ERROR, logger="coatcheck"), TestClient(wrapped, backend="trio") as c:
        c.cookies["session"] = cookie
        response = c.get("/read")
    assert response.status_code == 503
    assert "timed out after 0.05s" in caplog.text


def signing_app(secret: str) -> CoatcheckMiddleware:
    """An app on the same secret that issues a signed session cookie (any store will do)."""
    return CoatcheckMiddleware(Starlette(routes=ROUTES), secret=secret, store=MemoryStore())


SERVER_STORES = [
    "redis://127.0.0.1:6379/0",
    "postgresql://postgres@127.0.0.1:5432/test",
    "memcached://127.0.0.1:11211",
    "mongodb://127.0.0.1:27017/test",
]


@pytest.mark.parametrize("url", SERVER_STORES, ids=lambda u: u.split(":", 1)[0])
def test_server_stores_say_they_need_asyncio_under_trio(
    secret: str, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(signing_app(secret)) as writer:
        writer.post("/write", json={"a": 1})
        cookie = writer.cookies["session"]
    app = CoatcheckMiddleware(Starlette(routes=ROUTES), secret=secret, store=url)
    c = TestClient(app, backend="trio")  # no lifespan: the store is never opened
    c.cookies["session"] = cookie
    with caplog.at_level(logging.ERROR, logger="coatcheck"):
        response = c.get("/read")
    assert response.status_code == 503
    assert "needs asyncio, but this app runs under trio" in caplog.text
    assert "MemoryStore, SQLiteStore or CookieStore" in caplog.text
