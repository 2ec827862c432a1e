"""A Starlette app in `SessionMiddleware(compat="django")` next to a real Django app: one login.

These run once `compat="django"` is wired into SessionManager (runtime.py: DjangoFormat,
django_store, raw unsigned ids, Django's key alphabet). Until then SessionMiddleware refuses
`compat="django"` with a ConfigurationError, which is the only failure the marker accepts;
`strict=True` turns the first passing run into a failure, so the marker is removed with the
wiring. (The same scenarios passed against a scratch wiring of runtime.py.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.sessions.backends.signed_cookies import SessionStore as DjangoCookieSession
from django.test import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from coatcheck import SessionMiddleware
from tests.djangoapp.project import (
    OLD_SECRET_KEY,
    SECRET_KEY,
    SQLITE_PATH,
    mysql_url,
    new_user,
    pg_url,
    use_database,
)


async def who(request: Request) -> JSONResponse:
    session = request.session
    return JSONResponse({"user": session.user_id, "cart": session.get("cart")})


async def put_cart(request: Request) -> PlainTextResponse:
    request.session["cart"] = [1, 2]
    return PlainTextResponse("ok")


async def log_out(request: Request) -> PlainTextResponse:
    request.session.logout()
    return PlainTextResponse("ok")


async def change_user(request: Request) -> PlainTextResponse:
    request.session["_auth_user_id"] = "999999999"
    return PlainTextResponse("ok")


def starlette_app(store: str) -> SessionMiddleware:
    routes = [
        Route("/who", who),
        Route("/put", put_cart),
        Route("/out", log_out),
        Route("/steal", change_user),
    ]
    return SessionMiddleware(
        Starlette(routes=routes), secret=[SECRET_KEY, OLD_SECRET_KEY], compat="django", store=store
    )


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        use_database("default")
        yield f"sqlite:///{SQLITE_PATH}"
    elif request.param == "postgresql":
        use_database(request.getfixturevalue("django_pg"))
        yield pg_url()
    else:
        use_database(request.getfixturevalue("django_mysql"))
        yield mysql_url()
    use_database("default")


def test_starlette_sees_the_django_login_and_its_changes_reach_django(database_url: str) -> None:
    user = new_user()
    django_client = Client()
    assert django_client.get(f"/login/{user.get_username()}/").content == b"ok"
    with TestClient(starlette_app(database_url)) as api:
        api.cookies.set("sessionid", django_client.cookies["sessionid"].value)
        assert api.get("/who").json() == {"user": str(user.pk), "cart": None}
        assert api.get("/put").status_code == 200
        assert django_client.get("/data/").json()["cart"] == [1, 2]
        assert django_client.get("/whoami/").content.decode() == user.get_username()
        with pytest.raises(ValueError, match="_auth_user_id"):
            api.get("/steal")
        assert django_client.get("/whoami/").content.decode() == user.get_username()
        api.get("/out")
        assert django_client.get("/whoami/").content == b"anonymous"


def test_django_logout_ends_the_session_in_starlette(database_url: str) -> None:
    user = new_user()
    django_client = Client()
    django_client.get(f"/login/{user.get_username()}/")
    with TestClient(starlette_app(database_url)) as api:
        api.cookies.set("sessionid", django_client.cookies["sessionid"].value)
        assert api.get("/who").json()["user"] == str(user.pk)
        django_client.get("/logout/")
        assert api.get("/who").json() == {"user": None, "cart": None}


def test_a_session_started_in_starlette_is_a_django_session(database_url: str) -> None:
    with TestClient(starlette_app(database_url)) as api:
        response = api.get("/put")
        key = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert len(key) == 32 and key.isalnum() and key == key.lower()
    assert "Max-Age=1209600" in response.headers["set-cookie"]  # Django's SESSION_COOKIE_AGE
    django_client = Client()
    django_client.cookies["sessionid"] = key
    assert django_client.get("/data/").json()["cart"] == [1, 2]


def test_signed_cookies_sessions_cross_both_ways() -> None:
    django_side = DjangoCookieSession()
    django_side.update({"_auth_user_id": "5", "x": 1})
    django_side.save()
    with TestClient(starlette_app("django-signed-cookies://")) as api:
        api.cookies.set("sessionid", django_side.session_key)
        assert api.get("/who").json() == {"user": "5", "cart": None}
        response = api.get("/put")
    value = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    loaded = DjangoCookieSession(value).load()
    assert (loaded["cart"], loaded["_auth_user_id"], loaded["x"]) == ([1, 2], "5", 1)
