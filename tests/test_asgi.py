"""The ASGI middleware, end to end over HTTP (httpx -> Starlette -> coatcheck -> real store)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from coatcheck import Cookie, SessionMiddleware
from coatcheck.crypto import Keyring, storage_key
from coatcheck.stores import MemoryStore, SQLiteStore
from tests.helpers import Clock, CountingStore, client, make_app, set_cookies, use_cookie


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


async def test_session_round_trips_across_requests(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        assert (await c.get("/incr")).json() == {"n": 1}
        assert (await c.get("/incr")).json() == {"n": 2}
        assert (await c.get("/read")).json() == {"n": 2, "new": False}


async def test_untouched_request_creates_no_session_and_no_cookie(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        response = await c.get("/plain")
    assert set_cookies(response) == []
    assert store.total == 0
    assert "vary" not in response.headers


async def test_read_only_new_session_is_not_saved(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        response = await c.get("/read")
    assert set_cookies(response) == []
    assert store.total == 0
    assert response.headers["vary"] == "Cookie"
    assert response.headers["cache-control"] == "private"


async def test_first_write_sets_a_signed_cookie_with_safe_defaults(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        response = await c.get("/incr")
    (header,) = set_cookies(response)
    assert header.startswith("session=s%3A")
    assert "; Path=/" in header and "; HttpOnly" in header and "; SameSite=Lax" in header
    assert "Secure" not in header  # plain HTTP with secure="auto"
    assert "Expires" not in header  # browser-session cookie by default
    assert store.calls == {"set": 1}
    assert response.headers["cache-control"] == "private"


async def test_unchanged_loaded_session_is_one_read_and_no_write(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        await c.get("/incr")
        store.calls.clear()
        response = await c.get("/read")
    assert store.calls == {"get": 1}
    assert set_cookies(response) == []


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        "s:",
        "s%3Aabc",  # unsigned
        "s%3Aabc.def",  # wrong signature
        "%ZZ%",  # broken percent-encoding
        "s%3A" + "a" * 5000 + ".x",  # oversized
        "s%3A%C3%A9t%C3%A9.sig",  # non-ASCII id
    ],
)
async def test_bad_cookie_never_reaches_the_store(secret: str, store: CountingStore, cookie: str) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        use_cookie(c, cookie)
        response = await c.get("/read")
    assert response.status_code == 200
    assert response.json() == {"n": None, "new": True}
    assert store.total == 0


async def test_tampered_signature_gives_a_new_session_and_zero_store_calls(
    secret: str, store: CountingStore
) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        await c.get("/incr")
        good = c.cookies["session"]
        store.calls.clear()
        tampered = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
        use_cookie(c, tampered)
        response = await c.get("/read")
    assert response.json() == {"n": None, "new": True}
    assert store.total == 0


async def test_cookie_signed_with_another_secret_is_refused(secret: str, store: CountingStore) -> None:
    forged = Keyring("another-" + secret).sign_id("attacker-chosen-id")
    async with client(make_app(secret=secret, store=store)) as c:
        use_cookie(c, forged)
        response = await c.get("/incr")
    assert store.calls == {"set": 1}
    new_cookie = set_cookies(response)[0]
    assert "attacker-chosen-id" not in new_cookie
    assert await store.inner.get(storage_key("attacker-chosen-id")) is None


async def test_unknown_but_validly_signed_id_is_never_adopted(secret: str, store: CountingStore) -> None:
    planted = Keyring(secret).sign_id("planted-id")
    async with client(make_app(secret=secret, store=store)) as c:
        use_cookie(c, planted)
        response = await c.get("/incr")
    assert store.calls == {"get": 1, "set": 1}
    assert "planted-id" not in set_cookies(response)[0]
    assert await store.inner.get(storage_key("planted-id")) is None


async def test_rotated_secrets_keep_old_sessions(secret: str, store: CountingStore) -> None:
    old_secret = "old-" + secret
    async with client(make_app(secret=old_secret, store=store)) as c:
        await c.get("/incr")
        cookie = c.cookies["session"]
    async with client(make_app(secret=[secret, old_secret], store=store)) as c:
        use_cookie(c, cookie)
        assert (await c.get("/read")).json() == {"n": 1, "new": False}


async def test_nested_mutation_is_saved(secret: str) -> None:
    async with client(make_app(secret=secret, store=MemoryStore())) as c:
        await c.get("/cart", params={"item": "a"})
        await c.get("/cart", params={"item": "b"})
        assert (await c.get("/cart", params={"item": "c"})).json() == ["a", "b", "c"]


@pytest.mark.parametrize("which", ["idle", "absolute"])
async def test_expired_record_still_in_store_gives_a_new_id(secret: str, which: str) -> None:
    clock = Clock()
    memory = MemoryStore(clock=lambda: clock.now - 10 * 86400)  # the store itself never reaps it
    options = {"idle_timeout": timedelta(hours=1), "absolute_timeout": timedelta(days=1), "touch_after": 0}
    async with client(make_app(secret=secret, store=memory, clock=clock, **options)) as c:
        await c.get("/incr")
        first = c.cookies["session"]
        if which == "idle":
            clock.advance(3601)
        else:  # stay active so only the absolute deadline (1 day) can expire it
            for _ in range(24):
                clock.advance(3500)
                assert (await c.get("/read")).json() == {"n": 1, "new": False}
            clock.advance(3000)
        assert await memory.count() == 1
        response = await c.get("/incr")
    assert response.json() == {"n": 1}
    assert c.cookies["session"] != first


async def test_idle_deadline_slides_with_activity(secret: str) -> None:
    clock = Clock()
    async with client(
        make_app(secret=secret, store=MemoryStore(), clock=clock, idle_timeout=3600, touch_after=60)
    ) as c:
        await c.get("/incr")
        for _ in range(5):
            clock.advance(3000)
            assert (await c.get("/read")).json() == {"n": 1, "new": False}


async def test_touch_writes_are_throttled(secret: str, store: CountingStore) -> None:
    clock = Clock()
    async with client(make_app(secret=secret, store=store, clock=clock, touch_after=60)) as c:
        await c.get("/incr")
        store.calls.clear()
        for _ in range(10):
            clock.advance(5)
            await c.get("/read")
        assert store.calls == {"get": 10}
        clock.advance(60)
        await c.get("/read")
    assert store.calls["touch"] == 1


async def test_explicit_touch_writes_the_deadline(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        await c.get("/incr")
        store.calls.clear()
        response = await c.get("/touch")
    assert store.calls == {"get": 1, "touch": 1}
    assert set_cookies(response) == []


async def test_login_issues_a_new_id_and_kills_the_old_one(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        await c.get("/incr")
        planted = c.cookies["session"]
        assert (await c.get("/login", params={"user": "ada"})).json() == {"user": "ada"}
        assert c.cookies["session"] != planted
        assert (await c.get("/read")).json() == {"n": 1, "new": False}  # data kept
        use_cookie(c, planted)
        assert (await c.get("/read")).json() == {"n": None, "new": True}
    sessions = await store.inner.sessions_for("ada")
    assert len(sessions) == 1


async def test_logout_destroys_the_record_and_expires_the_cookie(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        await c.get("/incr")
        cookie = c.cookies["session"]
        response = await c.get("/logout")
        (header,) = set_cookies(response)
        assert header.startswith("session=;") and "Max-Age=0" in header
        assert "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in header
        assert await store.inner.count() == 0
        use_cookie(c, cookie)
        assert (await c.get("/read")).json() == {"n": None, "new": True}


async def test_writing_after_destroy_starts_a_fresh_session(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        await c.get("/incr")
        old = c.cookies["session"]
        response = await c.get("/destroy-then-flash")
        (header,) = set_cookies(response)
        assert header.startswith("session=s%3A") and "Max-Age=0" not in header
        assert c.cookies["session"] != old
        assert await store.inner.count() == 1
        assert (await c.get("/read")).json() == {"n": None, "new": False}


async def test_regenerate_drops_data_unless_kept(secret: str) -> None:
    async with client(make_app(secret=secret, store=MemoryStore())) as c:
        await c.get("/incr")
        await c.get("/regenerate", params={"keep": "1"})
        assert (await c.get("/read")).json()["n"] == 1
        await c.get("/regenerate")
        assert (await c.get("/read")).json() == {"n": None, "new": True}


async def test_per_session_max_age_sends_a_persistent_cookie(secret: str) -> None:
    async with client(make_app(secret=secret, store=MemoryStore())) as c:
        await c.get("/incr")
        (header,) = set_cookies(await c.get("/remember"))
        assert "Max-Age=2592000" in header and "Expires=" in header
        # a modified session with a persistent cookie refreshes Expires; an unmodified one does not
        (header,) = set_cookies(await c.get("/incr"))
        assert "Max-Age=2592000" in header
        assert set_cookies(await c.get("/read")) == []


async def test_rolling_resends_the_cookie_on_every_response(secret: str) -> None:
    async with client(
        make_app(secret=secret, store=MemoryStore(), rolling=True, cookie=Cookie(max_age=600))
    ) as c:
        await c.get("/incr")
        (header,) = set_cookies(await c.get("/read"))
        assert "Max-Age=600" in header


async def test_resave_saves_unmodified_sessions(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store, resave=True)) as c:
        await c.get("/incr")
        store.calls.clear()
        await c.get("/read")
    assert store.calls["set"] + store.calls["patch"] == 1


async def test_save_uninitialized_saves_used_but_unmodified_new_sessions(
    secret: str, store: CountingStore
) -> None:
    async with client(make_app(secret=secret, store=store, save_uninitialized=True)) as c:
        response = await c.get("/read")
        assert len(set_cookies(response)) == 1
        assert store.calls == {"set": 1}
        store.calls.clear()
        assert set_cookies(await c.get("/plain")) == []  # a handler that never touched it
    assert store.total == 1  # only the get of the now-existing session


@pytest.mark.parametrize(("policy", "survives"), [("keep", True), ("destroy", False)])
async def test_unset_policy(secret: str, policy: str, survives: bool) -> None:
    memory = MemoryStore()
    async with client(make_app(secret=secret, store=memory, unset=policy)) as c:
        await c.get("/incr")
        response = await c.get("/unset")
        if policy == "destroy":
            assert "Max-Age=0" in set_cookies(response)[0]
        assert (await memory.count() == 1) is survives
        if survives:
            assert (await c.get("/read")).json() == {"n": 1, "new": False}  # "changed" was dropped


async def test_commit_happens_before_the_redirect_is_sent(secret: str) -> None:
    memory = MemoryStore()
    async with client(make_app(secret=secret, store=memory)) as c:
        response = await c.get("/redirect")
        assert response.status_code == 303
        # the store already has the record when the client sees the headers
        (info,) = await memory.list_sessions()
        record = await memory.get(info.storage_key)
        assert record is not None and record.data == {"saved_before_redirect": True}


async def test_app_cookies_and_cache_headers_are_preserved_and_made_private(secret: str) -> None:
    async with client(make_app(secret=secret, store=MemoryStore())) as c:
        response = await c.get("/own-cookie")
    names = sorted(h.split("=", 1)[0] for h in set_cookies(response))
    assert names == ["session", "theme"]
    assert response.headers["vary"] == "Accept, Cookie"
    assert response.headers["cache-control"] == "private, max-age=60"


async def test_path_gating_leaves_other_paths_alone(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store, cookie=Cookie(path="/app"))) as c:
        assert "; Path=/app;" in set_cookies(await c.get("/app/incr"))[0]
        response = await c.get("/plain")
        assert set_cookies(response) == []
        assert (await c.get("/app/read")).json() == {"n": 1, "new": False}
    app = make_app(secret=secret, store=MemoryStore(), cookie=Cookie(path="/app"))
    async with client(app) as c:
        with pytest.raises(AssertionError):  # Starlette: no session installed outside the path
            await c.get("/read")


async def test_secure_cookie_over_plain_http_is_never_set_nor_stored(
    secret: str, store: CountingStore
) -> None:
    async with client(make_app(secret=secret, store=store, cookie=Cookie(secure=True))) as c:
        response = await c.get("/incr")
    assert set_cookies(response) == []
    assert store.total == 0


async def test_secure_auto_follows_the_scheme(secret: str) -> None:
    async with client(make_app(secret=secret, store=MemoryStore()), base_url="https://testserver") as c:
        (header,) = set_cookies(await c.get("/incr"))
    assert "; Secure" in header


@pytest.mark.parametrize(("trust", "secure"), [(True, True), (False, False)])
async def test_trust_proxy_reads_the_first_forwarded_proto(secret: str, trust: bool, secure: bool) -> None:
    async with client(make_app(secret=secret, store=MemoryStore(), trust_proxy=trust)) as c:
        response = await c.get("/incr", headers={"x-forwarded-proto": "https, http"})
    assert ("; Secure" in set_cookies(response)[0]) is secure


@pytest.mark.parametrize(("base", "same_site"), [("https://t", "None"), ("http://t", "Lax")])
async def test_same_site_auto(secret: str, base: str, same_site: str) -> None:
    async with client(
        make_app(secret=secret, store=MemoryStore(), cookie=Cookie(same_site="auto")), base
    ) as c:
        (header,) = set_cookies(await c.get("/incr"))
    assert f"SameSite={same_site}" in header


async def test_only_the_first_session_cookie_is_considered(secret: str, store: CountingStore) -> None:
    async with client(make_app(secret=secret, store=store)) as c:
        await c.get("/incr")
        good = c.cookies["session"]
    async with client(make_app(secret=secret, store=store)) as c:
        store.calls.clear()
        response = await c.get("/read", headers={"cookie": f"session=bogus; session={good}"})
    assert response.json() == {"n": None, "new": True}
    assert store.total == 0


async def test_store_failure_while_loading_is_a_503_not_a_new_session(
    secret: str, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "sessions.db"
    first = SQLiteStore(db)
    async with client(make_app(secret=secret, store=first)) as c:
        await c.get("/incr")
        cookie = c.cookies["session"]
    await first.close()
    db.write_bytes(b"this is not a sqlite database" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"sessions.db{suffix}").unlink(missing_ok=True)
    async with client(make_app(secret=secret, store=SQLiteStore(db))) as c:
        use_cookie(c, cookie)
        with caplog.at_level(logging.ERROR, logger="coatcheck"):
            response = await c.get("/incr")
    assert response.status_code == 503
    assert set_cookies(response) == []
    assert "session store unavailable while loading a session" in caplog.text
    assert cookie.split(".")[0][4:] not in caplog.text


async def test_store_failure_while_saving_is_a_503(
    secret: str, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "sessions.db")  # cannot be created
    async with client(make_app(secret=secret, store=store)) as c:
        with caplog.at_level(logging.ERROR, logger="coatcheck"):
            response = await c.get("/incr")
    assert response.status_code == 503
    assert response.text.startswith("Service Unavailable")
    assert set_cookies(response) == []
    assert "while saving a session" in caplog.text


def test_websocket_gets_the_session_read_only(secret: str) -> None:
    seen: dict[str, object] = {}

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        session = websocket.session
        seen["n"] = session.get("n")
        try:
            session["n"] = 99
        except RuntimeError as exc:
            seen["error"] = str(exc)
        await websocket.send_json({"n": seen["n"]})
        await websocket.close()

    app = make_app(secret=secret, store=MemoryStore())
    app.router.routes.append(WebSocketRoute("/ws", ws))
    with TestClient(app) as c:
        c.get("/incr")
        with c.websocket_connect("/ws") as connection:
            assert connection.receive_json() == {"n": 1}
        assert c.get("/read").json() == {"n": 1, "new": False}
    assert "read-only" in str(seen["error"])


async def test_fastapi_request_session_is_ours(secret: str) -> None:
    api = FastAPI()
    api.add_middleware(SessionMiddleware, secret=secret, store=MemoryStore())

    @api.get("/count")
    async def count(request: Request) -> dict[str, int]:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    async with client(api) as c:
        await c.get("/count")
        assert (await c.get("/count")).json() == {"n": 2}


def test_lifespan_shutdown_closes_the_store(secret: str, tmp_path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    with TestClient(make_app(secret=secret, store=store)) as c:
        c.get("/incr")
        assert store._executor is not None
    assert store._executor is None


def test_starlette_middleware_list_works(secret: str) -> None:
    from starlette.middleware import Middleware

    from tests.helpers import ROUTES

    app = Starlette(
        routes=ROUTES, middleware=[Middleware(SessionMiddleware, secret=secret, store=MemoryStore())]
    )
    with TestClient(app) as c:
        c.get("/incr")
        assert c.get("/incr").json() == {"n": 2}


async def test_explicit_save_writes_once_and_still_sends_the_cookie(
    secret: str, store: CountingStore
) -> None:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def save_early(request: Request) -> JSONResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        await request.session.save()
        assert await store.inner.count() == 1  # written before the handler returns
        return JSONResponse({"n": request.session["n"]})

    app = make_app(secret=secret, store=store, cookie=Cookie(max_age=600))
    app.router.routes.append(Route("/save", save_early))
    async with client(app) as c:
        first = await c.get("/save")
        assert "Max-Age=600" in set_cookies(first)[0]
        assert store.calls == {"set": 1}
        store.calls.clear()
        again = await c.get("/save")  # loaded, modified, persistent cookie: refreshed
        assert "Max-Age=600" in set_cookies(again)[0]
    assert store.calls == {"get": 1, "patch": 1}
