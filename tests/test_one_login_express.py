"""One login across apps, `compat="express"`: an Express app (express-session + connect-redis)
and Flask, FastAPI and Quart apps share one Redis, one secret and one cookie (`connect.sid`).

A browser (one cookie jar for every app on the host) logs in once and every app sees the
same user; logging out in any one of them ends the session everywhere. The Express app is
tests/interop/node/server.js (started as in tests/test_express_interop.py, whose fixtures
this module reuses); the Python apps run in-process on their own coatcheck adapters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask, jsonify
from flask import session as flask_session
from quart import Quart
from quart import jsonify as quart_jsonify
from quart import session as quart_session
from quart_auth import AuthUser, current_user, login_user, logout_user

from coatcheck import SessionMiddleware
from coatcheck.flask import Session as FlaskSessions
from coatcheck.quart import Session as QuartSessions
from coatcheck.quart_auth import SessionAuth
from coatcheck.stores import RedisStore
from tests import test_express_interop as interop

# the Express app and the shared Redis prefix, as the interop tests start them
express = interop.express
prefix = interop.prefix
pytestmark = [pytest.mark.node, pytest.mark.redis]


def passport_user(session: Any) -> str | None:
    """The user as passport.js keeps it: what every app here calls "logged in"."""
    passport = session.get("passport")
    return passport.get("user") if isinstance(passport, dict) else None


def flask_app(secret: str, store: RedisStore) -> Flask:
    app = Flask("flask-express")
    app.config.update(SECRET_KEY=secret, SESSION_STORE=store, SESSION_COMPAT="express")
    FlaskSessions(app)

    @app.get("/me")
    def me() -> Any:
        return jsonify(user=passport_user(flask_session))

    @app.post("/logout")
    def logout() -> Any:
        flask_session.logout()  # type: ignore[attr-defined]
        return jsonify(user=None)

    return app


def fastapi_app(secret: str, store: RedisStore) -> SessionMiddleware:
    app = FastAPI()

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"user": passport_user(request.session)}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, Any]:
        request.session.logout()  # type: ignore[attr-defined]
        return {"user": None}

    return SessionMiddleware(app, secret=secret, store=store, compat="express")


def quart_app(secret: str, store: RedisStore) -> Quart:
    app = Quart("quart-express")
    app.config.update(SECRET_KEY=secret, SESSION_STORE=store, SESSION_COMPAT="express")
    QuartSessions(app)
    SessionAuth(app)

    @app.get("/me")
    async def me() -> Any:
        return quart_jsonify(user=passport_user(quart_session))

    @app.post("/login")
    async def login() -> Any:
        user = "alice"
        login_user(AuthUser(user))  # new id, bound to the user (coatcheck.quart_auth)
        quart_session["passport"] = {"user": user}  # what passport on the Node side reads
        return quart_jsonify(user=current_user.auth_id)

    @app.post("/logout")
    async def logout() -> Any:
        logout_user()  # destroys the shared record
        return quart_jsonify(user=None)

    return app


@dataclass
class Apps:
    """Four apps on one host, and the one cookie jar a browser keeps for it."""

    clients: dict[str, httpx.AsyncClient | httpx.Client]
    jar: dict[str, str]

    async def call(self, app: str, path: str, body: Any = None) -> dict[str, Any]:
        client = self.clients[app]
        headers = interop.cookie_header(self.jar)
        if isinstance(client, httpx.Client):  # Flask: WSGI, in this thread
            if path == "/me":
                response = client.get(path, headers=headers)
            else:
                response = client.post(path, json=body or {}, headers=headers)
        elif path == "/me":
            response = await client.get(path, headers=headers)
        else:
            response = await client.post(path, json=body or {}, headers=headers)
        return interop.remember(self.jar, response)

    async def users(self) -> dict[str, Any]:
        return {name: (await self.call(name, "/me"))["user"] for name in self.clients}


@pytest.fixture
async def apps(express: Callable[..., str], secret: str, redis_url: str, prefix: str) -> AsyncIterator[Apps]:
    node_url = express(SECRET=secret, REDIS_URL=redis_url, PREFIX=prefix)
    stores = [RedisStore(redis_url, prefix=prefix) for _ in range(3)]
    fastapi = fastapi_app(secret, stores[1])
    clients: dict[str, httpx.AsyncClient | httpx.Client] = {
        "express": interop.http_client(node_url),
        "flask": httpx.Client(
            transport=httpx.WSGITransport(app=flask_app(secret, stores[0])),
            base_url="http://testserver",
            cookies=interop.no_cookie_jar(),
        ),
        "fastapi": interop.asgi_client(fastapi),
        "quart": interop.asgi_client(quart_app(secret, stores[2])),
    }
    yield Apps(clients, {})
    for client in clients.values():
        if isinstance(client, httpx.Client):
            client.close()
        else:
            await client.aclose()
    for store in stores:
        await store.close()


@pytest.mark.parametrize("login_on", ["express", "quart"])
@pytest.mark.parametrize("logout_on", ["express", "flask", "fastapi", "quart"])
async def test_one_login_is_seen_by_every_app_and_one_logout_ends_it_everywhere(
    apps: Apps, login_on: str, logout_on: str
) -> None:
    assert await apps.users() == dict.fromkeys(apps.clients)  # nobody is logged in yet
    logged_in = await apps.call(login_on, "/login", {"user": "alice"})
    assert logged_in["user"] == "alice"
    assert set(apps.jar) == {"connect.sid"}  # one cookie, the one every app reads
    assert await apps.users() == dict.fromkeys(apps.clients, "alice")

    await apps.call(logout_on, "/destroy" if logout_on == "express" else "/logout", {})
    if logout_on != "express":  # express-session's destroy() leaves the cookie; coatcheck expires it
        assert "connect.sid" not in apps.jar
    assert await apps.users() == dict.fromkeys(apps.clients)


async def test_a_stale_cookie_after_logout_is_not_honoured_anywhere(apps: Apps) -> None:
    await apps.call("express", "/login", {"user": "alice"})
    stale = dict(apps.jar)
    await apps.call("fastapi", "/logout", {})
    apps.jar.update(stale)  # a browser (or an attacker) replays the old cookie
    assert await apps.users() == dict.fromkeys(apps.clients)
