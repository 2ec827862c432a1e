"""Every example of docs/frameworks.md runs as written, and does what the page says.

Each block is executed as a module (SESSION_SECRET set, SESSION_STORE left to its SQLite
default in a temporary directory) and driven through its framework's own test client or
test server. The "one login across apps" block runs against the shared Redis under a key
prefix of its own, once as written (compat="express") and once with `compat` removed
(coatcheck's own format), and every framework must see the login and the logout.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient as AiohttpClient
from aiohttp.test_utils import TestServer
from fastapi import Request as FastAPIRequest
from flask import jsonify
from flask import session as flask_session
from litestar import Litestar, Request, get, post
from litestar.testing import TestClient as LitestarClient
from quart import jsonify as quart_jsonify
from quart import session as quart_session

from coatcheck.aiohttp import get_session

DOC = Path(__file__).resolve().parent.parent / "docs" / "frameworks.md"


def doc_block(first_line: str) -> str:
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"docs/frameworks.md has no python block starting with {first_line!r}")


@pytest.fixture
def run_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str) -> Iterator[Any]:
    """`run_example(first_line, source=None)`: the block executed as a fresh module."""
    monkeypatch.setenv("SESSION_SECRET", secret)
    monkeypatch.delenv("SESSION_STORE", raising=False)
    monkeypatch.chdir(tmp_path)  # the examples' SQLite file lands here

    def run(first_line: str, source: str | None = None) -> types.ModuleType:
        code = source if source is not None else doc_block(first_line)
        name = f"frameworks_doc_{secrets.token_hex(4)}"
        module = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, module)
        exec(compile(code, f"docs/frameworks.md:{first_line}", "exec"), module.__dict__)
        return module

    yield run


async def test_the_fastapi_example(run_example: Any, tmp_path: Path) -> None:
    module = run_example("# fastapi_app.py")
    transport = httpx.ASGITransport(app=module.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/")).json() == {"visits": 1, "user": None}
        assert (await client.post("/login")).json() == {"user": "ada"}
        assert (await client.get("/")).json() == {"visits": 2, "user": "ada"}
    assert (tmp_path / "sessions.db").exists()


def test_the_flask_example(run_example: Any) -> None:
    module = run_example("# flask_app.py")
    transport = httpx.WSGITransport(app=module.app)
    with httpx.Client(transport=transport, base_url="http://testserver") as client:
        assert client.get("/").json() == {"visits": 1}
        assert client.get("/").json() == {"visits": 2}


async def test_the_quart_example(run_example: Any) -> None:
    client = run_example("# quart_app.py").app.test_client()
    assert (await client.get("/")).status_code == 401
    assert (await client.post("/login", form={"user": "ada"})).status_code == 302
    first = await (await client.get("/")).get_json()
    assert first == {"user": "ada", "visits": 1, "flashes": ["Welcome, ada"]}
    assert (await (await client.get("/")).get_json())["visits"] == 2
    await client.post("/logout")
    assert (await client.get("/")).status_code == 401


def test_the_litestar_example(run_example: Any) -> None:
    module = run_example("# litestar_app.py")
    origin = "http://127.0.0.1:8000"
    with LitestarClient(module.app, base_url=origin) as client:
        token = client.get("/").json()["csrf_token"]
        added = client.post(
            "/cart", json={"item": "apple"}, headers={"origin": origin, "x-csrf-token": token}
        )
        assert added.status_code == 201 and added.json() == ["apple"]
        refused = client.post("/cart", json={"item": "pear"}, headers={"origin": origin})
        assert refused.status_code == 403 and refused.headers["x-csrf-failure"] == "token-missing"
        assert client.get("/").json()["visits"] == 2
        token = client.get("/").json()["csrf_token"]
        assert client.post("/logout", headers={"origin": origin, "x-csrf-token": token}).status_code == 200
        assert client.get("/").json()["visits"] == 1  # a new session


async def test_the_aiohttp_example(run_example: Any) -> None:
    module = run_example("# aiohttp_app.py")
    async with AiohttpClient(TestServer(module.app, host="127.0.0.1")) as client:
        assert await (await client.get("/")).json() == {"visits": 1, "user": None}
        landed = await client.post("/login")  # follows the redirect, with the new cookie
        assert await landed.json() == {"visits": 2, "user": "ada"}


# ---- one login across apps ---------------------------------------------------------------------
class Browser:
    """One cookie jar for the five apps (one host)."""

    def __init__(self) -> None:
        self.jar: dict[str, str] = {}

    def header(self) -> dict[str, str]:
        return {"cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())} if self.jar else {}

    def remember(self, response: httpx.Response) -> Any:
        assert response.status_code == 200, response.text
        for header in response.headers.get_list("set-cookie"):
            first, *attributes = (part.strip() for part in header.split(";"))
            name, _, value = first.partition("=")
            if any(a.lower() == "max-age=0" for a in attributes):
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return response.json()


def add_routes(module: types.ModuleType) -> Litestar:
    """/me on every app of the example, /login on FastAPI, /logout on Litestar."""

    @module.fastapi_app.get("/me")
    async def fastapi_me(request: FastAPIRequest) -> dict[str, Any]:
        return {"user": request.session.user_id}  # type: ignore[attr-defined]

    @module.fastapi_app.post("/login")
    async def fastapi_login(request: FastAPIRequest) -> dict[str, Any]:
        request.session.login("ada")  # type: ignore[attr-defined]
        return {"user": "ada"}

    @module.flask_app.get("/me")
    def flask_me() -> Any:
        return jsonify(user=flask_session.user_id)  # type: ignore[attr-defined]

    @module.quart_app.get("/me")
    async def quart_me() -> Any:
        return quart_jsonify(user=quart_session.user_id)  # type: ignore[attr-defined]

    async def aiohttp_me(request: Any) -> Any:
        return web.json_response({"user": (await get_session(request)).user_id})

    module.aiohttp_app.router.add_get("/me", aiohttp_me)

    @get("/me")
    async def litestar_me(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return {"user": request.session.user_id}

    @post("/logout", status_code=200)
    async def litestar_logout(request: Request[Any, Any, Any]) -> dict[str, Any]:
        request.clear_session()
        return {"user": None}

    return Litestar(route_handlers=[litestar_me, litestar_logout], plugins=[module.litestar_sessions])


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    value = f"cctest-doc-{secrets.token_hex(4)}:"
    yield value
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=value + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["express", "own"])
async def test_one_login_across_every_framework(
    run_example: Any, monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_prefix: str, mode: str
) -> None:
    monkeypatch.setenv("REDIS_URL", f"{redis_url}?prefix={redis_prefix}")
    source = doc_block("# shared.py")
    if mode == "own":  # the same apps without compat: coatcheck's own cookie and records
        source = source.replace(', compat="express"', "").replace(', SESSION_COMPAT="express"', "")
        assert "express" not in source.split("# every app")[1]
    module = run_example("# shared.py", source)
    litestar_app = add_routes(module)
    cookie = "connect.sid" if mode == "express" else "session"
    browser = Browser()
    raw = redis.Redis.from_url(redis_url)

    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=module.fastapi_asgi), base_url="http://h"
        ) as fastapi,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=module.quart_app), base_url="http://h") as quart,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=litestar_app), base_url="http://h") as litestar,
        AiohttpClient(TestServer(module.aiohttp_app, host="127.0.0.1")) as aio,
    ):
        flask = httpx.Client(transport=httpx.WSGITransport(app=module.flask_app), base_url="http://h")

        async def users() -> dict[str, Any]:
            seen = {
                "fastapi": browser.remember(await fastapi.get("/me", headers=browser.header())),
                "quart": browser.remember(await quart.get("/me", headers=browser.header())),
                "litestar": browser.remember(await litestar.get("/me", headers=browser.header())),
                "flask": browser.remember(flask.get("/me", headers=browser.header())),
            }
            aio.session.cookie_jar.clear()
            response = await aio.get("/me", headers=browser.header())
            seen["aiohttp"] = await response.json()
            return {name: value["user"] for name, value in seen.items()}

        browser.remember(await fastapi.post("/login", headers=browser.header()))
        assert set(browser.jar) == {cookie}
        assert await users() == dict.fromkeys(["fastapi", "quart", "litestar", "flask", "aiohttp"], "ada")
        if mode == "express":  # connect-redis's record: the raw id under the prefix, JSON with "cookie"
            session_id = browser.jar[cookie].replace("%3A", ":").split(":", 1)[1].rsplit(".", 1)[0]
            assert "cookie" in json.loads(raw.get(redis_prefix + session_id))

        browser.remember(await litestar.post("/logout", headers=browser.header()))
        assert cookie not in browser.jar
        assert await users() == dict.fromkeys(["fastapi", "quart", "litestar", "flask", "aiohttp"])
        flask.close()
    raw.close()
