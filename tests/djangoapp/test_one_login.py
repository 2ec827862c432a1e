"""One login across apps, `compat="django"`: a Django app (django.contrib.auth, the db session
backend) and FastAPI and Flask apps share one PostgreSQL database (made for this run by
tests/djangoapp/project.py, migrated with Django's migrations, dropped at the end), one
`SECRET_KEY` and one cookie (`sessionid`).

A browser (one cookie jar for the host) logs in once, on Django, which owns login, and every
app sees the same user; logging out in any one of them ends the session everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from django.test import Client
from fastapi import FastAPI, Request
from flask import Flask, jsonify
from flask import session as flask_session
from starlette.testclient import TestClient

from coatcheck import SessionMiddleware
from coatcheck.flask import Session as FlaskSessions
from tests.djangoapp.project import OLD_SECRET_KEY, SECRET_KEY, new_user, pg_url, use_database

pytestmark = pytest.mark.postgresql


def fastapi_app(database_url: str) -> SessionMiddleware:
    app = FastAPI()

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"user": request.session.user_id}  # type: ignore[attr-defined]

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, Any]:
        request.session.logout()  # type: ignore[attr-defined]
        return {"user": None}

    return SessionMiddleware(app, secret=[SECRET_KEY, OLD_SECRET_KEY], compat="django", store=database_url)


def flask_app(database_url: str) -> Flask:
    app = Flask("flask-django")
    app.config.update(
        SECRET_KEY=SECRET_KEY,
        SECRET_KEY_FALLBACKS=[OLD_SECRET_KEY],
        SESSION_STORE=database_url,
        SESSION_COMPAT="django",
    )
    FlaskSessions(app)

    @app.get("/me")
    def me() -> Any:
        return jsonify(user=flask_session.user_id)  # type: ignore[attr-defined]

    @app.post("/logout")
    def logout() -> Any:
        flask_session.logout()  # type: ignore[attr-defined]
        return jsonify(user=None)

    return app


@dataclass
class Apps:
    """Django, FastAPI and Flask on one host, and the one cookie jar a browser keeps for it."""

    django: Client
    fastapi: TestClient
    flask: httpx.Client
    jar: dict[str, str]

    def django_get(self, path: str) -> str:
        self.django.cookies = SimpleCookie()
        for name, value in self.jar.items():
            self.django.cookies[name] = value
        response = self.django.get(path)
        assert response.status_code == 200, response.content
        for name, morsel in response.cookies.items():
            if morsel.value == "" or morsel["max-age"] == 0 or str(morsel["max-age"]) == "0":
                self.jar.pop(name, None)
            else:
                self.jar[name] = morsel.value
        return response.content.decode()

    def python(self, app: str, method: str, path: str) -> Any:
        client: httpx.Client = self.fastapi if app == "fastapi" else self.flask
        client.cookies.clear()  # the jar below is the only one
        cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        response = client.request(method, path, headers={"cookie": cookie} if cookie else {})
        assert response.status_code == 200, response.text
        for header in response.headers.get_list("set-cookie"):
            first, *attributes = (part.strip() for part in header.split(";"))
            name, _, value = first.partition("=")
            expired = any(a.lower() == "max-age=0" for a in attributes)
            if expired or not value or value == '""':
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return response.json()

    def users(self, user: Any) -> dict[str, Any]:
        """What each app says about who is logged in (None: nobody)."""
        name = self.django_get("/whoami/")
        return {
            "django": None if name == "anonymous" else (user.pk if name == user.get_username() else name),
            "fastapi": _pk(self.python("fastapi", "GET", "/me")["user"]),
            "flask": _pk(self.python("flask", "GET", "/me")["user"]),
        }


def _pk(value: str | None) -> int | None:
    return None if value is None else int(value)


@pytest.fixture
def apps(django_pg: str) -> Iterator[Apps]:
    use_database(django_pg)
    url = pg_url()
    flask_client = httpx.Client(
        transport=httpx.WSGITransport(app=flask_app(url)), base_url="http://testserver"
    )
    try:
        with TestClient(fastapi_app(url)) as fastapi_client:
            yield Apps(Client(), fastapi_client, flask_client, {})
    finally:
        flask_client.close()
        use_database("default")


@pytest.mark.parametrize("logout_on", ["django", "fastapi", "flask"])
def test_one_django_login_is_seen_by_every_app_and_one_logout_ends_it_everywhere(
    apps: Apps, logout_on: str
) -> None:
    user = new_user("one-login")
    nobody = {"django": None, "fastapi": None, "flask": None}
    assert apps.users(user) == nobody
    assert apps.django_get(f"/login/{user.get_username()}/") == "ok"
    assert set(apps.jar) == {"sessionid"}  # one cookie, the one every app reads
    assert apps.users(user) == {"django": user.pk, "fastapi": user.pk, "flask": user.pk}

    if logout_on == "django":
        apps.django_get("/logout/")
    else:
        apps.python(logout_on, "POST", "/logout")
    assert "sessionid" not in apps.jar  # every side expires the cookie at logout
    assert apps.users(user) == nobody


def test_a_stale_cookie_after_logout_is_not_honoured_anywhere(apps: Apps) -> None:
    user = new_user("one-login")
    apps.django_get(f"/login/{user.get_username()}/")
    stale = dict(apps.jar)
    apps.python("flask", "POST", "/logout")
    apps.jar.update(stale)  # a browser (or an attacker) replays the old cookie
    assert apps.users(user) == {"django": None, "fastapi": None, "flask": None}
