"""The login flow over HTTP: login(), logout(), fixation, log out everywhere, and the README's
Starlette and FastAPI examples run as they are written."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coatcheck import SessionMiddleware
from coatcheck.crypto import Keyring, storage_key
from coatcheck.masking import tokens_match
from coatcheck.session import CSRF_KEY
from coatcheck.stores import MemoryStore, SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
JAR_DOMAIN = "testserver.local"  # where httpx's cookie jar files cookies for http://testserver


# ---- stores -----------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Real server-side stores with a user index (sessions_for / destroy_user)."""
    if request.param == "memory":
        made: Any = MemoryStore()
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "sessions.db")
    else:
        url = request.getfixturevalue("redis_url")
        from coatcheck.stores import RedisStore

        made = RedisStore(url, prefix=f"coatcheck-login-test:{time.time_ns()}:")
    yield made
    await made.close()


# ---- an app with the login flow ---------------------------------------------------------------------
async def visit(request: Request) -> Response:
    request.session["cart"] = [*request.session.get("cart", []), request.query_params.get("item", "x")]
    return JSONResponse({"cart": request.session["cart"]})


async def whoami(request: Request) -> Response:
    s = request.session
    return JSONResponse({"user": s.user_id, "new": s.is_new, "cart": s.get("cart"), "csrf": s.get(CSRF_KEY)})


async def token(request: Request) -> Response:
    return JSONResponse({"token": request.session.csrf_token})


async def login(request: Request) -> Response:
    request.session.login(request.query_params.get("user", "alice"))
    return JSONResponse({"user": request.session.user_id})


async def logout(request: Request) -> Response:
    request.session.logout()
    return JSONResponse({"ok": True})


async def logout_other_devices(request: Request) -> Response:
    """The pattern from docs/login-flow.md: end every session of the user, log in again here."""
    user_id = request.session.user_id
    assert user_id is not None
    ended = await request.app.state.store.destroy_user(user_id)
    request.session.login(user_id)
    return JSONResponse({"ended": ended})


def make_app(store: Any, secret: str) -> Starlette:
    app = Starlette(
        routes=[
            Route("/visit", visit),
            Route("/whoami", whoami),
            Route("/token", token),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/logout-other-devices", logout_other_devices, methods=["POST"]),
        ]
    )
    app.state.store = store
    app.add_middleware(SessionMiddleware, secret=secret, store=store)
    return app


def client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def session_cookie(response: httpx.Response) -> str:
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith("session=")]
    return header.split(";", 1)[0].split("=", 1)[1]


def session_id(cookie_value: str, secret: str) -> str:
    unsigned = Keyring(secret).unsign_id(cookie_value.encode())
    assert unsigned is not None
    return unsigned


# ---- login() --------------------------------------------------------------------------------------
async def test_login_issues_a_new_id_keeps_data_binds_user_and_rotates_csrf(store: Any, secret: str) -> None:
    async with client(make_app(store, secret)) as c:
        before = session_cookie(await c.get("/visit", params={"item": "book"}))
        old_token = (await c.get("/token")).json()["token"]
        response = await c.post("/login", params={"user": "alice"})
        after = session_cookie(response)
        assert session_id(after, secret) != session_id(before, secret)
        state = (await c.get("/whoami")).json()
    assert state == {"user": "alice", "new": False, "cart": ["book"], "csrf": None}  # token dropped
    infos = await store.sessions_for("alice")
    assert [info.user_id for info in infos] == ["alice"]
    assert infos[0].id_hint == storage_key(session_id(after, secret))[:12]
    assert old_token  # a token existed before the login and is gone after it


async def test_session_id_planted_before_login_is_dead_after_login(store: Any, secret: str) -> None:
    """Session fixation: the attacker gets a valid id, plants it in the victim's browser, and
    waits for the victim to log in. The login must move the victim to an id the attacker lacks."""
    app = make_app(store, secret)
    async with client(app) as attacker, client(app) as victim:
        planted = session_cookie(await attacker.get("/visit", params={"item": "bait"}))
        victim.cookies.set("session", planted, domain=JAR_DOMAIN)
        assert (await victim.get("/whoami")).json()["cart"] == ["bait"]  # the victim uses the planted id
        fresh = session_cookie(await victim.post("/login", params={"user": "victim"}))
        assert fresh != planted
        assert (await victim.get("/whoami")).json()["user"] == "victim"

        attacker.cookies.clear()
        attacker.cookies.set("session", planted, domain=JAR_DOMAIN)
        seen = (await attacker.get("/whoami")).json()
    assert seen == {"user": None, "new": True, "cart": None, "csrf": None}
    assert await store.get(storage_key(session_id(planted, secret))) is None


async def test_logout_destroys_the_record_and_expires_the_cookie(store: Any, secret: str) -> None:
    async with client(make_app(store, secret)) as c:
        cookie = session_cookie(await c.post("/login", params={"user": "alice"}))
        response = await c.post("/logout")
        (expired,) = response.headers.get_list("set-cookie")
        assert expired.startswith("session=;") and "Max-Age=0" in expired
        assert (await c.get("/whoami")).json()["user"] is None
        c.cookies.set(
            "session", cookie, domain=JAR_DOMAIN
        )  # replaying the old cookie does not bring the login back
        assert (await c.get("/whoami")).json() == {"user": None, "new": True, "cart": None, "csrf": None}
    assert await store.get(storage_key(session_id(cookie, secret))) is None
    assert await store.sessions_for("alice") == []


async def test_log_out_everywhere_ends_every_session_of_that_user_only(store: Any, secret: str) -> None:
    app = make_app(store, secret)
    async with client(app) as laptop, client(app) as phone, client(app) as other:
        await laptop.post("/login", params={"user": "alice"})
        await phone.post("/login", params={"user": "alice"})
        await other.post("/login", params={"user": "bob"})
        assert len(await store.sessions_for("alice")) == 2

        assert await store.destroy_user("alice") == 2

        assert (await laptop.get("/whoami")).json()["user"] is None
        assert (await phone.get("/whoami")).json()["user"] is None
        assert (await other.get("/whoami")).json()["user"] == "bob"
    assert await store.sessions_for("alice") == []
    assert len(await store.sessions_for("bob")) == 1


async def test_log_out_other_devices_keeps_this_session_and_its_data(store: Any, secret: str) -> None:
    app = make_app(store, secret)
    async with client(app) as laptop, client(app) as phone:
        await laptop.get("/visit", params={"item": "book"})
        await laptop.post("/login", params={"user": "alice"})
        await phone.post("/login", params={"user": "alice"})
        assert (await laptop.post("/logout-other-devices")).json() == {"ended": 2}
        assert (await phone.get("/whoami")).json()["user"] is None
        here = (await laptop.get("/whoami")).json()
    assert here["user"] == "alice" and here["cart"] == ["book"]
    assert len(await store.sessions_for("alice")) == 1


async def test_csrf_token_created_after_login_differs_from_the_one_before(store: Any, secret: str) -> None:
    async with client(make_app(store, secret)) as c:
        before = (await c.get("/token")).json()["token"]
        await c.post("/login")
        after = (await c.get("/token")).json()["token"]
        secret_now = (await c.get("/whoami")).json()["csrf"]
    assert tokens_match(secret_now, after)  # the token rendered after login validates...
    assert not tokens_match(secret_now, before)  # ...and the one from before the login does not


# ---- the README examples, as written ----------------------------------------------------------------
def example(name: str) -> str:
    """The code block that starts with `# example: <name>` in README.md or docs/."""
    for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for block in re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
            if block.startswith(f"# example: {name}\n"):
                return str(block)
    raise AssertionError(f"no example {name!r} in README.md or docs/")


@pytest.fixture
def run_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> Callable[[str], dict[str, Any]]:
    """Execute an example as a module would run (in an empty directory, with SESSION_SECRET set)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSION_SECRET", secret)

    def run(name: str) -> dict[str, Any]:
        namespace: dict[str, Any] = {"__name__": f"example_{name.replace('-', '_')}"}
        exec(compile(example(name), f"<example {name}>", "exec"), namespace)
        return namespace

    return run


def hidden_token(html: str, form_action: str) -> str:
    match = re.search(
        rf'<form method="post" action="{re.escape(form_action)}"><input type="hidden" name="csrf_token" value="([^"]+)">',
        html,
    )
    assert match is not None, html
    return match.group(1)


async def test_readme_starlette_example_logs_in_and_out_with_flash_and_csrf(
    run_example: Callable[[str], dict[str, Any]],
) -> None:
    module = run_example("starlette-login")
    origin = {"origin": "http://localhost:8000"}
    try:
        async with (
            client(module["app"], "http://localhost:8000") as laptop,
            client(module["app"], "http://localhost:8000") as phone,
        ):
            page = (await laptop.get("/")).text
            login_token = hidden_token(page, "/login")
            form = {"username": "alice", "password": "nope", "csrf_token": login_token}
            wrong = await laptop.post("/login", data=form, headers=origin, follow_redirects=True)
            assert "Wrong user name or password." in wrong.text

            # a forged cross-site login is refused
            forged = await laptop.post(
                "/login", data={**form, "password": "wonderland"}, headers={"origin": "https://evil.example"}
            )
            assert forged.status_code == 403

            login_token = hidden_token(wrong.text, "/login")
            form = {"username": "alice", "password": "wonderland", "csrf_token": login_token}
            response = await laptop.post("/login", data=form, headers=origin, follow_redirects=True)
            assert [r.status_code for r in response.history] == [303]
            assert "Welcome back, alice!" in response.text and "Signed in as alice." in response.text
            assert "Welcome back" not in (await laptop.get("/")).text  # shown once

            # the token from before the login was rotated away
            stale = await laptop.post("/logout", data={"csrf_token": login_token}, headers=origin)
            assert stale.status_code == 403

            phone_token = hidden_token((await phone.get("/")).text, "/login")
            await phone.post(
                "/login",
                data={"username": "alice", "password": "wonderland", "csrf_token": phone_token},
                headers=origin,
            )
            assert "Signed in as alice." in (await phone.get("/")).text
            assert len(await module["store"].sessions_for("alice")) == 2

            page = (await laptop.get("/")).text
            token = hidden_token(page, "/logout-everywhere")
            done = await laptop.post(
                "/logout-everywhere", data={"csrf_token": token}, headers=origin, follow_redirects=True
            )
            assert "You are logged out on every device." in done.text
            assert "Signed in" not in (await phone.get("/")).text
            assert await module["store"].sessions_for("alice") == []
    finally:
        await module["store"].close()


async def test_readme_fastapi_example_logs_in_and_out_with_a_csrf_header(
    run_example: Callable[[str], dict[str, Any]],
) -> None:
    module = run_example("fastapi-login")
    origin = {"origin": "http://localhost:8000"}
    try:
        async with (
            client(module["app"], "http://localhost:8000") as c,
            client(module["app"], "http://localhost:8000") as other_device,
        ):
            token = (await c.get("/csrf")).json()["token"]
            creds = {"username": "alice", "password": "wonderland"}
            assert (await c.post("/login", json=creds, headers=origin)).status_code == 403  # no token
            response = await c.post("/login", json=creds, headers={**origin, "x-csrf-token": token})
            assert response.status_code == 200, response.text
            new_token = response.json()["csrf"]
            assert (await c.get("/me")).json() == {"user": "alice", "messages": ["Welcome back, alice!"]}
            assert (await c.get("/me")).json() == {"user": "alice", "messages": []}

            other_token = (await other_device.get("/csrf")).json()["token"]
            await other_device.post("/login", json=creds, headers={**origin, "x-csrf-token": other_token})

            webhook = await c.post(
                "/webhooks/payments", content=b"{}", headers={"origin": "https://pay.example"}
            )
            assert webhook.json() == {"received": True}

            stale = await c.post("/logout-everywhere", headers={**origin, "x-csrf-token": token})
            assert stale.status_code == 403  # rotated at login
            ended = await c.post("/logout-everywhere", headers={**origin, "x-csrf-token": new_token})
            assert ended.json() == {"sessions_ended": 2}
            assert (await other_device.get("/me")).json()["user"] is None
    finally:
        await module["store"].close()
