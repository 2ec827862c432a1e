"""The README's "Migrating from ..." examples run as written and log nobody out."""

from __future__ import annotations

import re
import secrets
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from flask import Flask, session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

README = Path(__file__).resolve().parent.parent / "README.md"
JAR_DOMAIN = "testserver.local"  # where httpx's cookie jar files cookies for http://testserver


def run_example(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Any:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (source,) = [b for b in blocks if b.startswith(f"# example: {name}\n")]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # sessions.db lands here
    module = types.ModuleType(name.replace("-", "_"))
    exec(compile(source, f"README.md:{name}", "exec"), module.__dict__)
    return module.app


def old_flask_app(secret: str, **config: Any) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret
    app.config.update(config)

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return "ok"

    return app


def test_migrating_from_flasks_cookie_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(32)
    old = old_flask_app(secret).test_client()
    old.get("/login")
    legacy = old.get_cookie("session")
    assert legacy is not None
    app = run_example("migrate-flask-cookie", monkeypatch, tmp_path, SECRET_KEY=secret)
    client = app.test_client()
    client.set_cookie("session", legacy.value)
    assert client.get("/").json == {"user": "ada"}
    assert client.get_cookie("session").value != legacy.value  # type: ignore[union-attr]
    assert client.get("/").json == {"user": "ada"}
    forged = app.test_client()
    forged.set_cookie("session", legacy.value[:-2] + "xx")
    assert forged.get("/").json == {"user": None}


@pytest.fixture
def prefix() -> str:
    return f"cc-readme-{secrets.token_hex(6)}:"


@pytest.fixture
def sync_redis(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def test_migrating_from_flask_session(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, sync_redis: redis.Redis, prefix: str
) -> None:
    from flask_session import Session as FlaskSession

    secret = secrets.token_urlsafe(32)
    old_app = old_flask_app(secret, SESSION_TYPE="redis", SESSION_REDIS=sync_redis, SESSION_KEY_PREFIX=prefix)
    FlaskSession(old_app)
    old = old_app.test_client()
    old.get("/login")
    legacy = old.get_cookie("session")
    assert legacy is not None and sync_redis.exists(prefix + legacy.value)

    app = run_example("migrate-flask-session", monkeypatch, tmp_path, SECRET_KEY=secret, REDIS_URL=redis_url)
    app.config["SESSION_KEY_PREFIX"] = prefix  # this test's keys on the shared Redis
    client = app.test_client()
    client.set_cookie("session", legacy.value)
    assert client.get("/").json == {"user": "ada"}
    assert not sync_redis.exists(prefix + legacy.value)
    assert client.get("/").json == {"user": "ada"}


async def test_migrating_from_starlettes_cookie_session(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old_secret = secrets.token_urlsafe(32)

    async def login(request: Request) -> Response:
        request.session["user"] = "ada"
        return PlainTextResponse("ok")

    old = Starlette(
        routes=[Route("/login", login)], middleware=[Middleware(StarletteSessions, secret_key=old_secret)]
    )
    with TestClient(old) as old_client:
        legacy = str(old_client.get("/login").cookies["session"])

    app = run_example(
        "migrate-starlette",
        monkeypatch,
        tmp_path,
        SESSION_SECRET=secrets.token_urlsafe(32),
        OLD_SECRET_KEY=old_secret,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        c.cookies.set("session", legacy, domain=JAR_DOMAIN)
        assert (await c.get("/")).json() == {"user": "ada"}
        assert c.cookies.get("session") != legacy
        assert (await c.get("/")).json() == {"user": "ada"}
    assert (tmp_path / "sessions.db").exists()
