"""coatcheck.litestar: the plugin, Litestar's own session calls, and CSRF in Litestar's shape."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, fields
from typing import Annotated, Any

import pytest
import redis
from litestar import Litestar, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.testing import TestClient

from coatcheck import Session, SessionMiddleware
from coatcheck.config import Settings, option_names
from coatcheck.csrf import csrf_exempt, get_token
from coatcheck.errors import ConfigurationError
from coatcheck.litestar import CSRFConfig, SessionPlugin
from coatcheck.stores import MemoryStore, RedisStore

ORIGIN = "http://testserver.local"


@dataclass
class Profile:
    name: str
    theme: str


@get("/incr")
async def incr(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.session["n"] = request.session.get("n", 0) + 1
    return {"n": request.session["n"], "ours": isinstance(request.session, Session)}


@get("/read")
async def read(request: Request[Any, Any, Any]) -> dict[str, Any]:
    session = request.session
    assert isinstance(session, Session)
    return {"data": session.to_dict(), "user": session.user_id, "host": id(session.host)}


@post("/login", status_code=200)
async def login(request: Request[Any, Any, Any]) -> dict[str, Any]:
    session = request.session
    assert isinstance(session, Session)
    session.login("ada")
    return {"user": session.user_id}


@post("/replace", status_code=200)
async def replace(request: Request[Any, Any, Any]) -> dict[str, str]:
    request.set_session({"replaced": True})
    return {"ok": "yes"}


@post("/replace-model", status_code=200)
async def replace_model(request: Request[Any, Any, Any]) -> dict[str, str]:
    request.set_session(Profile(name="ada", theme="dark"))  # type: ignore[arg-type]
    return {"ok": "yes"}


@post("/clear", status_code=200)
async def clear(request: Request[Any, Any, Any]) -> dict[str, str]:
    request.clear_session()
    return {"ok": "yes"}


@get("/token")
async def token(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {"token": get_token(request.session)}


@post("/form", status_code=200)
async def form(
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> dict[str, str]:
    return {"comment": data["comment"]}


@post("/hook", status_code=200, opt={"exclude_from_csrf": True})
async def hook() -> dict[str, str]:
    return {"ok": "hook"}


@csrf_exempt
@post("/decorated", status_code=200)
async def decorated() -> dict[str, str]:
    return {"ok": "decorated"}


@post("/public/ping", status_code=200)
async def ping() -> dict[str, str]:
    return {"ok": "ping"}


HANDLERS = [incr, read, login, replace, replace_model, clear, token, form, hook, decorated, ping]


def litestar_app(plugin: SessionPlugin) -> Litestar:
    return Litestar(route_handlers=HANDLERS, plugins=[plugin])


@pytest.fixture
def client(secret: str) -> Iterator[tuple[TestClient[Litestar], SessionPlugin]]:
    plugin = SessionPlugin(secret=secret, store=MemoryStore())
    with TestClient(litestar_app(plugin)) as test_client:
        yield test_client, plugin


def test_request_session_is_coatchecks_and_persists(
    client: tuple[TestClient[Litestar], SessionPlugin],
) -> None:
    test_client, _ = client
    assert test_client.get("/incr").json() == {"n": 1, "ours": True}
    response = test_client.get("/incr")
    assert response.json() == {"n": 2, "ours": True}
    assert response.headers["vary"] == "Cookie"


def test_every_route_shares_one_runtime(client: tuple[TestClient[Litestar], SessionPlugin]) -> None:
    test_client, plugin = client
    test_client.get("/incr")
    assert test_client.get("/read").json()["host"] == id(plugin.runtime)


def test_set_session_replaces_the_data(client: tuple[TestClient[Litestar], SessionPlugin]) -> None:
    test_client, _ = client
    test_client.get("/incr")
    test_client.post("/replace")
    assert test_client.get("/read").json()["data"] == {"replaced": True}
    test_client.post("/replace-model")
    assert test_client.get("/read").json()["data"] == {"name": "ada", "theme": "dark"}


async def test_clear_session_destroys_the_record_and_expires_the_cookie(secret: str) -> None:
    store = MemoryStore()
    with TestClient(litestar_app(SessionPlugin(secret=secret, store=store))) as test_client:
        test_client.post("/login")
        assert test_client.get("/read").json()["user"] == "ada"
        assert await store.count() == 1
        response = test_client.post("/clear")
        assert "Max-Age=0" in response.headers["set-cookie"] or "1970" in response.headers["set-cookie"]
        assert await store.count() == 0
        after = test_client.get("/read").json()
        assert (after["data"], after["user"]) == ({}, None)


@pytest.mark.redis
def test_plugin_on_redis_under_a_prefix(secret: str, redis_url: str) -> None:
    prefix = f"cctest-litestar-{secrets.token_hex(4)}:"
    plugin = SessionPlugin(secret=secret, store=RedisStore(redis_url, prefix=prefix))
    raw = redis.Redis.from_url(redis_url)
    try:
        with TestClient(litestar_app(plugin)) as test_client:
            test_client.get("/incr")
            test_client.post("/login")
            assert test_client.get("/incr").json()["n"] == 2
            assert len(list(raw.scan_iter(match=prefix + "s:*"))) == 1
    finally:
        keys = list(raw.scan_iter(match=prefix + "*"))
        if keys:
            raw.delete(*keys)
        raw.close()


def test_middleware_by_hand_with_define_middleware(secret: str) -> None:
    plugin = SessionPlugin(secret=secret, store=MemoryStore())
    app = Litestar(route_handlers=HANDLERS, middleware=plugin.middleware, on_shutdown=[plugin.close])
    with TestClient(app) as test_client:
        test_client.get("/incr")
        assert test_client.get("/incr").json() == {"n": 2, "ours": True}


def test_wrapping_the_whole_app_works_too(secret: str) -> None:
    app = SessionMiddleware(Litestar(route_handlers=HANDLERS), secret=secret, store=MemoryStore())
    with TestClient(app) as test_client:  # type: ignore[arg-type]
        test_client.get("/incr")
        assert test_client.get("/incr").json() == {"n": 2, "ours": True}


# ---- CSRF --------------------------------------------------------------------------------------
@pytest.fixture
def guarded(secret: str) -> Iterator[TestClient[Litestar]]:
    plugin = SessionPlugin(
        secret=secret,
        store=MemoryStore(),
        csrf=CSRFConfig(trusted_origins=[ORIGIN], exclude=["/public/*"]),
    )
    with TestClient(litestar_app(plugin), base_url=ORIGIN) as test_client:
        yield test_client


def test_unsafe_request_without_a_token_is_refused(guarded: TestClient[Litestar]) -> None:
    guarded.get("/incr")
    response = guarded.post("/login", headers={"origin": ORIGIN})
    assert response.status_code == 403
    assert response.headers["x-csrf-failure"] == "token-missing"
    assert "CSRF" in response.text


def test_header_token_passes(guarded: TestClient[Litestar]) -> None:
    token = guarded.get("/token").json()["token"]
    response = guarded.post("/login", headers={"origin": ORIGIN, "x-csrf-token": token})
    assert response.status_code == 200
    assert response.json() == {"user": "ada"}


def test_form_token_passes_and_the_handler_still_reads_the_form(guarded: TestClient[Litestar]) -> None:
    token = guarded.get("/token").json()["token"]
    response = guarded.post(
        "/form", data={"csrf_token": token, "comment": "hello"}, headers={"origin": ORIGIN}
    )
    assert response.status_code == 200
    assert response.json() == {"comment": "hello"}


def test_untrusted_origin_is_refused_even_with_a_token(guarded: TestClient[Litestar]) -> None:
    token = guarded.get("/token").json()["token"]
    response = guarded.post("/login", headers={"origin": "https://evil.example", "x-csrf-token": token})
    assert response.status_code == 403
    assert response.headers["x-csrf-failure"] == "origin-untrusted"


@pytest.mark.parametrize("path", ["/hook", "/decorated", "/public/ping"])
def test_litestar_exemptions(guarded: TestClient[Litestar], path: str) -> None:
    response = guarded.post(path, headers={"origin": "https://evil.example"})
    assert response.status_code == 200, response.text


def test_bad_csrf_config_fails_at_start_up(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="field_name"):
        SessionPlugin(
            secret=secret, store=MemoryStore(), csrf=CSRFConfig(trusted_origins=[ORIGIN], field_name="a b")
        )
    with pytest.raises(ConfigurationError):
        SessionPlugin(secret="short", store=MemoryStore())


def test_plugin_takes_every_option_with_its_default() -> None:
    params = inspect.signature(SessionPlugin.__init__).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    keyword = {n: p for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert set(keyword) - {"csrf"} == set(option_names())
    for f in fields(Settings):
        if f.init:
            expected = inspect.Parameter.empty if f.default is MISSING else f.default
            assert keyword[f.name].default == expected, f.name
