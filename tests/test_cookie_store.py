"""CookieStore: client-side sessions through real HTTP (httpx.ASGITransport on Starlette)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coatcheck import Cookie, SessionMiddleware, SessionTooLarge
from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.cookies import MAX_COOKIE_BYTES, render_set_cookie
from coatcheck.crypto import Keyring
from coatcheck.errors import ConfigurationError
from coatcheck.record import Meta, Record
from coatcheck.sealing import HEADER, MAC_BYTES, NONCE_BYTES, b64url_decode, b64url_encode, inflate
from coatcheck.stores import CookieStore, from_url
from coatcheck.stores.base import ClientSideStore
from coatcheck.stores.cookie import CookiePayload
from tests.services import free_port, unavailable, wait_for_port

NOW = 1_700_000_000.0


# ---- the app --------------------------------------------------------------------------------
def session_app() -> Starlette:
    """Routes that drive every part of the Session API."""

    def view(request: Request) -> JSONResponse:
        s = request.session
        return JSONResponse(
            {"data": s.to_dict(), "new": s.is_new, "id": None if s.is_new else s.id, "user": s.user_id}
        )

    async def put(request: Request) -> JSONResponse:
        request.session.update(await request.json())
        return view(request)

    async def drop(request: Request) -> JSONResponse:
        for key in await request.json():
            request.session.pop(key, None)
        return view(request)

    async def login(request: Request) -> JSONResponse:
        request.session.login(request.query_params["user"])
        return view(request)

    async def logout(request: Request) -> JSONResponse:
        request.session.logout()
        return JSONResponse({})

    async def regenerate(request: Request) -> JSONResponse:
        request.session.regenerate(keep_data=request.query_params.get("keep") == "1")
        return view(request)

    async def touch(request: Request) -> JSONResponse:
        request.session.touch()
        return JSONResponse({})

    async def nothing(request: Request) -> JSONResponse:
        return JSONResponse({})

    async def empty(request: Request) -> JSONResponse:
        request.session["x"] = 1
        del request.session["x"]
        return JSONResponse({})

    async def unset(request: Request) -> JSONResponse:
        request.session["touched"] = True
        del request.scope["session"]
        return JSONResponse({})

    async def remember(request: Request) -> JSONResponse:
        request.session.cookie.max_age = float(request.query_params["seconds"])
        return view(request)

    async def save_early(request: Request) -> JSONResponse:
        await request.session.save()
        return view(request)

    async def reload(request: Request) -> JSONResponse:
        request.session["scratch"] = True
        await request.session.reload()
        return view(request)

    return Starlette(
        routes=[
            Route("/", view),
            Route("/put", put, methods=["POST"]),
            Route("/drop", drop, methods=["POST"]),
            Route("/login", login),
            Route("/logout", logout),
            Route("/regenerate", regenerate),
            Route("/touch", touch),
            Route("/nothing", nothing),
            Route("/empty", empty),
            Route("/remember", remember),
            Route("/unset", unset),
            Route("/save", save_early),
            Route("/reload", reload),
        ]
    )


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


def middleware(secret: Any, store: Any = None, **options: Any) -> SessionMiddleware:
    return SessionMiddleware(session_app(), secret=secret, store=store or CookieStore(), **options)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://testserver"
    )


@pytest.fixture
async def http(secret: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client(middleware(secret)) as c:
        yield c


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Cookie name -> the whole Set-Cookie value."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def value_of(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


def expired(header: str) -> bool:
    return "Max-Age=0" in header


def cookie_header(response: httpx.Response) -> str:
    """The Cookie header a browser would send back after `response` (live cookies only)."""
    return "; ".join(f"{name}={value_of(h)}" for name, h in set_cookies(response).items() if not expired(h))


def random_text(n: int) -> str:
    """`n` incompressible cookie-safe characters."""
    return secrets.token_urlsafe(n)[:n]


# ---- basic semantics --------------------------------------------------------------------------
async def test_session_round_trips_in_a_sealed_cookie(http: httpx.AsyncClient) -> None:
    r = await http.post("/put", json={"cart": [1, 2], "name": "Zoë"})
    cookies = set_cookies(r)
    assert list(cookies) == ["session"]
    assert value_of(cookies["session"]).startswith("AQ")  # version byte 0x01
    assert "HttpOnly" in cookies["session"] and "SameSite=Lax" in cookies["session"]
    raw = b64url_decode(value_of(cookies["session"]).encode())
    assert raw is not None and b"cart" not in raw and "Zoë".encode() not in raw  # sealed: unreadable
    assert "cookie" in r.headers["vary"].lower()
    body = (await http.get("/")).json()
    assert body["data"] == {"cart": [1, 2], "name": "Zoë"}
    assert body["new"] is False


async def test_untouched_or_empty_new_sessions_send_no_cookie(http: httpx.AsyncClient) -> None:
    assert "set-cookie" not in (await http.get("/nothing")).headers
    assert "set-cookie" not in (await http.get("/")).headers
    assert "set-cookie" not in (await http.get("/empty")).headers


async def test_unchanged_session_is_resealed_only_when_a_touch_is_due(secret: str) -> None:
    clock = Clock()
    app = middleware(secret, clock=clock, idle_timeout=3600, touch_after=60)
    async with client(app) as http:
        await http.post("/put", json={"a": 1})
        clock.now += 30
        assert "set-cookie" not in (await http.get("/")).headers
        first = http.cookies["session"]
        clock.now += 31  # 61 s since the seal: the idle deadline slides, so the cookie is re-sealed
        r = await http.get("/")
        assert "session" in set_cookies(r)
        assert http.cookies["session"] != first
        clock.now += 3600 - 1  # alive only because the touch moved the idle deadline
        assert (await http.get("/")).json()["data"] == {"a": 1}


async def test_explicit_touch_reseals(http: httpx.AsyncClient) -> None:
    await http.post("/put", json={"a": 1})
    r = await http.get("/touch")
    assert "session" in set_cookies(r)


async def test_rolling_reseals_on_every_response(secret: str) -> None:
    async with client(middleware(secret, rolling=True)) as http:
        await http.post("/put", json={"a": 1})
        values = set()
        for _ in range(3):
            r = await http.get("/")
            values.add(value_of(set_cookies(r)["session"]))
        assert len(values) == 3  # a fresh nonce each time


async def test_per_session_max_age_is_kept_in_the_payload(secret: str) -> None:
    clock = Clock()
    async with client(middleware(secret, clock=clock, touch_after=60)) as http:
        r = await http.get("/remember", params={"seconds": "86400"})
        assert "Max-Age=86400" in set_cookies(r)["session"]
        clock.now += 120
        r = await http.get("/")  # touch due: re-sealed, still a persistent cookie
        assert "Max-Age=86400" in set_cookies(r)["session"]


async def test_secure_cookie_is_never_set_over_plain_http(secret: str) -> None:
    async with client(middleware(secret, cookie=Cookie(secure=True))) as http:
        r = await http.post("/put", json={"a": 1})
        assert "set-cookie" not in r.headers


# ---- tampering, names, expiry, revocation ------------------------------------------------------------
async def test_tampering_any_byte_of_a_sealed_cookie_gives_a_new_empty_session(secret: str) -> None:
    async with client(middleware(secret)) as http:
        r = await http.post("/put", json={"user": "alice", "role": "admin"})
        value = value_of(set_cookies(r)["session"])
    raw = b64url_decode(value.encode())
    assert raw is not None
    async with client(middleware(secret)) as http:
        # control: the untouched cookie opens
        body = (await http.get("/", headers={"cookie": f"session={value}"})).json()
        assert body["data"] == {"user": "alice", "role": "admin"}
        for position in range(len(raw)):
            tampered = bytearray(raw)
            tampered[position] ^= 0x01
            forged = b64url_encode(bytes(tampered))
            body = (await http.get("/", headers={"cookie": f"session={forged}"})).json()
            assert body == {"data": {}, "new": True, "id": None, "user": None}, position
        for position in range(len(value)):  # and every character of the text form
            replacement = "A" if value[position] != "A" else "B"
            forged_text = value[:position] + replacement + value[position + 1 :]
            body = (await http.get("/", headers={"cookie": f"session={forged_text}"})).json()
            assert body["new"] is True and body["data"] == {}, position


async def test_a_cookie_moved_to_another_cookie_name_is_rejected(secret: str) -> None:
    alpha, beta = middleware(secret, name="alpha"), middleware(secret, name="beta")
    async with client(alpha) as a:
        value = value_of(set_cookies(await a.post("/put", json={"who": "alpha"}))["alpha"])
        assert (await a.get("/", headers={"cookie": f"alpha={value}"})).json()["data"] == {"who": "alpha"}
    async with client(beta) as b:
        body = (await b.get("/", headers={"cookie": f"beta={value}"})).json()
        assert body["new"] is True and body["data"] == {}


async def test_an_expired_sealed_cookie_is_rejected_by_the_server(secret: str) -> None:
    clock = Clock()
    app = middleware(secret, clock=clock, idle_timeout=60, absolute_timeout=3600, touch_after=10)
    async with client(app) as http:
        r = await http.post("/put", json={"a": 1})
        kept = cookie_header(r)  # the browser ignores expiry and keeps this one
        clock.now += 59
        assert (await http.get("/", headers={"cookie": kept})).json()["data"] == {"a": 1}
        clock.now += 2  # 61 s idle
        body = (await http.get("/", headers={"cookie": kept})).json()
        assert body["new"] is True and body["data"] == {}


async def test_the_absolute_timeout_holds_even_for_a_busy_session(secret: str) -> None:
    clock = Clock()
    app = middleware(secret, clock=clock, idle_timeout=60, absolute_timeout=300, touch_after=10)
    async with client(app) as http:
        await http.post("/put", json={"a": 1})
        for _ in range(5):  # active every 50 s: the idle deadline keeps sliding
            clock.now += 50
            assert (await http.get("/")).json()["data"] == {"a": 1}
        clock.now += 50  # 300 s since creation
        body = (await http.get("/")).json()
        assert body["new"] is True and body["data"] == {}


async def test_login_gives_a_new_per_session_id_and_the_hook_can_revoke(secret: str) -> None:
    denied: set[str] = set()
    seen: list[CookiePayload] = []

    async def is_revoked(payload: CookiePayload) -> bool:
        seen.append(payload)
        return payload.session_id in denied

    app = middleware(secret, store=CookieStore(is_revoked=is_revoked))
    async with client(app) as http:
        first = (await http.post("/put", json={"cart": [1]})).json()
        before = (await http.get("/")).json()["id"]
        r = await http.get("/login", params={"user": "42"})
        after = (await http.get("/")).json()
        assert first["id"] is None or first["id"] == before
        assert after["id"] != before and after["user"] == "42" and after["data"]["cart"] == [1]
        assert seen[-1].user_id == "42" and seen[-1].session_id == after["id"]
        stolen = cookie_header(r)
        denied.add(after["id"])  # the app's deny-list, e.g. after "log out everywhere"
        body = (await http.get("/", headers={"cookie": stolen})).json()
        assert body["new"] is True and body["data"] == {}


async def test_a_sync_revocation_hook_works_too(secret: str) -> None:
    app = middleware(secret, store=CookieStore(is_revoked=lambda p: p.data.get("banned") is True))
    async with client(app) as http:
        await http.post("/put", json={"banned": False})
        assert (await http.get("/")).json()["new"] is False
        await http.post("/put", json={"banned": True})
        assert (await http.get("/")).json()["new"] is True


async def test_a_failing_revocation_hook_fails_closed_with_503(secret: str) -> None:
    calls = 0

    def is_revoked(payload: CookiePayload) -> bool:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ConnectionError("deny-list unreachable")
        return False

    app = middleware(secret, store=CookieStore(is_revoked=is_revoked))
    async with client(app) as http:
        await http.post("/put", json={"a": 1})
        assert (await http.get("/")).json()["data"] == {"a": 1}
        r = await http.get("/")
        assert r.status_code == 503 and "set-cookie" not in r.headers


async def test_regenerate_reseals_with_a_fresh_id_and_nonce(http: httpx.AsyncClient) -> None:
    await http.post("/put", json={"a": 1})
    old_cookie, old_id = http.cookies["session"], (await http.get("/")).json()["id"]
    r = await http.get("/regenerate", params={"keep": "1"})
    assert "session" in set_cookies(r)
    after = (await http.get("/")).json()
    assert after["id"] != old_id and after["data"] == {"a": 1}
    assert http.cookies["session"] != old_cookie


async def test_regenerate_to_an_empty_session_expires_the_cookie(http: httpx.AsyncClient) -> None:
    await http.post("/put", json={"a": 1})
    r = await http.get("/regenerate")
    assert expired(set_cookies(r)["session"])
    assert (await http.get("/")).json()["new"] is True


async def test_logout_expires_the_cookie(http: httpx.AsyncClient) -> None:
    await http.post("/put", json={"a": 1})
    r = await http.get("/logout")
    assert expired(set_cookies(r)["session"])
    assert (await http.get("/")).json() == {"data": {}, "new": True, "id": None, "user": None}


@pytest.mark.parametrize("unset", ["keep", "destroy"])
async def test_removing_the_session_from_the_scope_follows_unset(secret: str, unset: str) -> None:
    async with client(middleware(secret, unset=unset)) as http:
        await http.post("/put", json={"a": 1})
        r = await http.get("/unset")
        if unset == "keep":
            assert "set-cookie" not in r.headers
            assert (await http.get("/")).json()["data"] == {"a": 1}
        else:
            assert expired(set_cookies(r)["session"])
            assert (await http.get("/")).json()["new"] is True


async def test_save_seals_an_unchanged_session_and_reload_reopens_the_cookie(http: httpx.AsyncClient) -> None:
    await http.post("/put", json={"a": 1})
    r = await http.get("/save")
    assert "session" in set_cookies(r)
    body = (await http.get("/reload")).json()
    assert body["data"] == {"a": 1}  # "scratch" was dropped by reload()


# ---- rotation ------------------------------------------------------------------------------------
async def test_rotation_opens_with_an_old_secret_and_reseals_with_the_new_one() -> None:
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    async with client(middleware(old)) as http:
        old_cookie = cookie_header(await http.post("/put", json={"a": 1}))
    async with client(middleware([new, old])) as http:
        r = await http.get("/nothing", headers={"cookie": old_cookie})
        assert "session" in set_cookies(r)  # re-sealed although the handler never used it
        new_cookie = cookie_header(r)
        r = await http.get("/", headers={"cookie": new_cookie})
        assert r.json()["data"] == {"a": 1} and "set-cookie" not in r.headers
    async with client(middleware(new)) as http:
        assert (await http.get("/", headers={"cookie": new_cookie})).json()["data"] == {"a": 1}
        assert (await http.get("/", headers={"cookie": old_cookie})).json()["new"] is True


# ---- chunking and size ------------------------------------------------------------------------------
def bound_store(mode: str = "sealed", **options: Any) -> CookieStore:
    store = CookieStore(mode=mode, **options)  # type: ignore[arg-type]
    store.bind(Keyring(secrets.token_urlsafe(32)), DEFAULT_SERIALIZER)
    return store


def render(name: str, value: str, max_age: float | None) -> bytes:
    return render_set_cookie(
        name, value, max_age=max_age, path="/", secure=True, same_site="lax", priority="high", now=NOW
    )


def record(data: dict[str, Any]) -> Record:
    return Record(data=data, meta=Meta(created=NOW, last_seen=NOW, idle_deadline=NOW + 86400))


def header_for(cookies: list[bytes]) -> bytes:
    live = [c.split(b";", 1)[0] for c in cookies if b"Max-Age=0" not in c]
    return b"; ".join(live)


def seal(store: CookieStore, data: dict[str, Any], previous: bytes | None = None) -> list[bytes]:
    return store.seal(
        "sid", record(data), name="session", cookie_header=previous, max_age=3600, render=render
    )


async def test_chunking_round_trips_from_one_byte_to_the_cap() -> None:
    store = bound_store(compress=False)  # exact sizes: the boundary does not move with the data

    def fits(n: int) -> bool:
        try:
            seal(store, {"v": random_text(n)})
        except SessionTooLarge:
            return False
        return True

    low, high = 1, 4 * MAX_COOKIE_BYTES
    assert fits(low) and not fits(high)
    while high - low > 1:  # the largest incompressible value that fits
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    largest = low
    # base64 turns 3 bytes into 4 characters: four 4 KB cookies carry a bit under 12 KB
    assert 11_000 < largest < 3 * MAX_COOKIE_BYTES
    sizes = sorted({1, 10, 100, 1000, 2500, 3000, 5000, 8000, 11_000, largest - 1, largest})
    chunk_counts = []
    for n in sizes:
        data = {"v": random_text(n)}
        cookies = seal(store, data)
        assert all(len(c) <= MAX_COOKIE_BYTES for c in cookies), n
        chunk_counts.append(len(cookies))
        opened = await store.open(header_for(cookies), "session", NOW)
        assert opened is not None and opened.record.data == data and opened.session_id == "sid"
    assert chunk_counts[0] == 1 and chunk_counts[-1] == 4
    assert chunk_counts == sorted(chunk_counts)
    names = [c.split(b"=", 1)[0] for c in seal(store, {"v": random_text(largest)})]
    assert names == [b"session.0", b"session.1", b"session.2", b"session.3"]
    with pytest.raises(SessionTooLarge, match="max_chunks=4"):
        seal(store, {"v": random_text(largest + 1)})


async def test_max_chunks_sets_the_cap() -> None:
    one = bound_store(max_chunks=1, compress=False)
    assert len(seal(one, {"v": random_text(2000)})) == 1
    with pytest.raises(SessionTooLarge):
        seal(one, {"v": random_text(3500)})


async def test_stale_chunks_are_cleared_when_the_session_shrinks_or_grows() -> None:
    store = bound_store()
    big = seal(store, {"v": random_text(9000)})
    assert [c.split(b"=", 1)[0] for c in big] == [b"session.0", b"session.1", b"session.2"]
    small = seal(store, {"v": "tiny"}, previous=header_for(big))
    names = [c.split(b"=", 1)[0] for c in small]
    assert names == [b"session", b"session.0", b"session.1", b"session.2"]
    assert all(b"Max-Age=0" in c for c in small[1:]) and b"Max-Age=0" not in small[0]
    again = seal(store, {"v": random_text(5000)}, previous=header_for(small))
    assert [(c.split(b"=", 1)[0], b"Max-Age=0" in c) for c in again] == [
        (b"session.0", False),
        (b"session.1", False),
        (b"session", True),
    ]


async def test_chunked_session_over_http_clears_stale_chunks(secret: str) -> None:
    async with client(middleware(secret)) as http:
        r = await http.post("/put", json={"v": random_text(10_000)})
        assert sorted(set_cookies(r)) == ["session.0", "session.1", "session.2"]
        assert sorted(http.cookies.keys()) == ["session.0", "session.1", "session.2"]
        assert len((await http.get("/")).json()["data"]["v"]) == 10_000
        r = await http.post("/put", json={"v": "small"})
        assert {k: expired(v) for k, v in set_cookies(r).items()} == {
            "session": False,
            "session.0": True,
            "session.1": True,
            "session.2": True,
        }
        assert list(http.cookies.keys()) == ["session"]
        assert (await http.get("/")).json()["data"] == {"v": "small"}


async def test_logout_expires_every_chunk(secret: str) -> None:
    async with client(middleware(secret)) as http:
        await http.post("/put", json={"v": random_text(6000)})
        r = await http.get("/logout")
        cookies = set_cookies(r)
        assert sorted(cookies) == ["session", "session.0", "session.1"]
        assert all(expired(v) for v in cookies.values())
        assert list(http.cookies.keys()) == []


async def test_too_large_is_a_clear_500_in_debug(secret: str) -> None:
    app = middleware(secret, store=CookieStore(debug=True, max_chunks=2))
    async with client(app) as http:
        r = await http.post("/put", json={"v": random_text(10_000)})
        assert r.status_code == 500
        assert "max_chunks=2" in r.text and "server-side store" in r.text
        assert "set-cookie" not in r.headers


async def test_too_large_is_logged_in_production_and_the_previous_cookie_survives(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = middleware(secret, store=CookieStore(max_chunks=2))
    async with client(app) as http:
        await http.post("/put", json={"v": "kept"})
        with caplog.at_level(logging.ERROR, logger="coatcheck"):
            r = await http.post("/put", json={"v": random_text(10_000)})
        assert r.status_code == 200
        assert "set-cookie" not in r.headers  # the browser keeps its previous cookie
        assert any("max_chunks=2" in rec.getMessage() for rec in caplog.records)
        assert (await http.get("/")).json()["data"] == {"v": "kept"}


async def test_a_session_too_large_to_inflate_is_refused_at_write_time(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "a" * (1 << 20)  # deflates to ~1 KB, but opening inflates at most 1 MiB
    store = bound_store()
    with pytest.raises(SessionTooLarge, match="1 MiB"):
        seal(store, {"v": huge})
    async with client(middleware(secret, store=CookieStore(debug=True))) as http:
        r = await http.post("/put", json={"v": huge})
        assert r.status_code == 500 and "1 MiB" in r.text and "set-cookie" not in r.headers
    async with client(middleware(secret)) as http:
        await http.post("/put", json={"v": "kept"})
        with caplog.at_level(logging.ERROR, logger="coatcheck"):
            r = await http.post("/put", json={"v": huge})
        assert r.status_code == 200 and "set-cookie" not in r.headers
        assert any("1 MiB" in rec.getMessage() for rec in caplog.records)
        assert (await http.get("/")).json()["data"] == {"v": "kept"}


async def test_compression_is_used_when_it_pays(secret: str) -> None:
    async with client(middleware(secret)) as http:
        cart = [{"sku": f"A-{i % 7}", "qty": 1, "gift": False} for i in range(300)]
        r = await http.post("/put", json={"cart": cart})  # ~11 KB of JSON
        cookies = set_cookies(r)
        assert list(cookies) == ["session"] and len(cookies["session"]) < 4096
        raw = b64url_decode(value_of(cookies["session"]).encode())
        assert raw is not None and raw[1] & 1
        assert (await http.get("/")).json()["data"]["cart"] == cart


# ---- hostile input --------------------------------------------------------------------------------
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
async def test_hostile_cookie_headers_never_crash(header: bytes) -> None:
    for mode in ("sealed", "signed", "cookie-session"):
        store = _HOSTILE_STORES[mode]
        assert await store.open(header, "session", NOW) is None
        store.expire(name="session", cookie_header=header, render=render)


_HOSTILE_STORES = {mode: bound_store(mode) for mode in ("sealed", "signed")} | {
    "cookie-session": bound_store("cookie-session")
}


async def test_many_chunk_names_are_bounded() -> None:
    store = bound_store()
    header = b"; ".join(b"session.%d=AAAA" % i for i in range(100_000))
    assert await store.open(header, "session", NOW) is None
    cleared = store.expire(name="session", cookie_header=header, render=render)
    assert len(cleared) <= 51  # never more than the chunk names we could have written


async def test_garbage_chunks_and_gaps_are_rejected() -> None:
    store = bound_store()
    cookies = seal(store, {"v": random_text(9000)})
    header = header_for(cookies)
    assert await store.open(header, "session", NOW) is not None
    parts = header.split(b"; ")
    assert await store.open(b"; ".join([parts[0], parts[2]]), "session", NOW) is None  # gap
    assert await store.open(b"; ".join([parts[1], parts[0], parts[2]]), "session", NOW) is not None
    swapped = [
        parts[0],
        parts[1].replace(b"session.1", b"session.2"),
        parts[2].replace(b"session.2", b"session.1"),
    ]
    assert await store.open(b"; ".join(swapped), "session", NOW) is None  # reordered content


# ---- hypothesis round trip ------------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=["Cs"]), max_size=30),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=["Cs"]), max_size=10), children, max_size=5
        )
    ),
    max_leaves=25,
)
sessions = st.dictionaries(
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=12), json_values, max_size=8
)
_ROUND_TRIP_STORES = {mode: bound_store(mode) for mode in ("sealed", "signed", "cookie-session")}


@settings(max_examples=200)
@given(
    data=sessions,
    mode=st.sampled_from(["sealed", "signed", "cookie-session"]),
    user=st.none() | st.text(max_size=8),
)
async def test_any_json_session_round_trips(data: dict[str, Any], mode: str, user: str | None) -> None:
    store = _ROUND_TRIP_STORES[mode]
    rec = record(data)
    rec.meta.user_id = user
    rec.meta.cookie = {"max_age": 60.0}
    try:
        cookies = store.seal("sid", rec, name="session", cookie_header=None, max_age=None, render=render)
    except SessionTooLarge:
        return  # covered by the chunking tests
    if mode == "cookie-session" and not data:  # cookie-session keeps no empty session
        assert all(b"Max-Age=0" in c for c in cookies)
        return
    opened = await store.open(header_for(cookies), "session", NOW)
    assert opened is not None and opened.record.data == data
    if mode != "cookie-session":
        assert opened.session_id == "sid"
        assert opened.record.meta.to_dict() == rec.meta.to_dict()


@settings(max_examples=25, deadline=None)
@given(data=sessions)
async def test_any_json_session_round_trips_over_http(data: dict[str, Any]) -> None:
    async with client(middleware(secrets.token_urlsafe(32))) as http:
        await http.post("/put", json=data)
        assert (await http.get("/")).json()["data"] == data


# ---- signed mode ------------------------------------------------------------------------------------
async def test_signed_mode_is_readable_but_not_forgeable(secret: str) -> None:
    app = middleware(secret, store=CookieStore(mode="signed", compress=False))
    async with client(app) as http:
        r = await http.post("/put", json={"theme": "dark"})
        value = value_of(set_cookies(r)["session"])
        raw = b64url_decode(value.encode())
        assert raw is not None and raw[0] == 0x02 and b'"theme":"dark"' in raw
        forged = b64url_encode(raw.replace(b'"dark"', b'"pink"'))
        body = (await http.get("/", headers={"cookie": f"session={forged}"})).json()
        assert body["new"] is True
        body = (await http.get("/", headers={"cookie": f"session={value}"})).json()
        assert body["data"] == {"theme": "dark"}


async def test_signed_mode_deflated_payload_is_still_readable_by_anyone(secret: str) -> None:
    app = middleware(secret, store=CookieStore(mode="signed"))
    async with client(app) as http:
        r = await http.post("/put", json={"theme": "dark", "notes": "abc " * 50})
        raw = b64url_decode(value_of(set_cookies(r)["session"]).encode())
        assert raw is not None and raw[1] & 1  # deflated because it pays
        payload = inflate(raw[HEADER.size : -MAC_BYTES])
        assert payload is not None and b'"theme":"dark"' in payload


# ---- cookie-session compatibility --------------------------------------------------------------------------
def compat_app(secret: Any = ("a", "b"), **options: Any) -> SessionMiddleware:
    # keygrip's test keys are weak on purpose: only insecure_dev_secret lets them in
    return middleware(
        list(secret), store="cookie://?mode=cookie-session", insecure_dev_secret=True, **options
    )


async def test_cookie_session_vectors() -> None:
    async with client(compat_app()) as http:
        r = await http.post("/put", json={"message": "hi"})
        cookies = set_cookies(r)
        assert cookies["session"].startswith("session=eyJtZXNzYWdlIjoiaGkifQ==;")
        assert cookies["session.sig"].startswith("session.sig=vdp2-kj-91tgzbWcV1QzofT3hu0;")


async def test_cookie_session_accepts_an_older_key_and_resigns_with_the_first() -> None:
    old_sig = "session=eyJtZXNzYWdlIjoiaGkifQ==; session.sig=SiRRAEncekXEzVdvey_7SkWaMM4"
    async with client(compat_app()) as http:
        r = await http.get("/", headers={"cookie": old_sig})
        assert r.json()["data"] == {"message": "hi"}
        cookies = set_cookies(r)
        assert value_of(cookies["session"]) == "eyJtZXNzYWdlIjoiaGkifQ=="
        assert value_of(cookies["session.sig"]) == "vdp2-kj-91tgzbWcV1QzofT3hu0"
        current = "session=eyJtZXNzYWdlIjoiaGkifQ==; session.sig=vdp2-kj-91tgzbWcV1QzofT3hu0"
        r = await http.get("/", headers={"cookie": current})
        assert r.json()["data"] == {"message": "hi"} and "set-cookie" not in r.headers


async def test_cookie_session_rejects_bad_or_missing_signatures() -> None:
    async with client(compat_app()) as http:
        for header in (
            "session=eyJtZXNzYWdlIjoiaGkifQ==",
            "session=eyJtZXNzYWdlIjoiaGkifQ==; session.sig=vdp2-kj-91tgzbWcV1QzofT3hu1",
            "session=eyJtZXNzYWdlIjoiaGoifQ==; session.sig=vdp2-kj-91tgzbWcV1QzofT3hu0",
        ):
            assert (await http.get("/", headers={"cookie": header})).json()["new"] is True
    async with client(compat_app(secret=("b",))) as http:  # "a" is unknown here
        header = "session=eyJtZXNzYWdlIjoiaGkifQ==; session.sig=vdp2-kj-91tgzbWcV1QzofT3hu0"
        assert (await http.get("/", headers={"cookie": header})).json()["new"] is True


async def test_cookie_session_empty_session_and_logout_clear_both_cookies() -> None:
    async with client(compat_app()) as http:
        await http.post("/put", json={"message": "hi"})
        r = await http.post("/drop", json=["message"])
        assert {k: expired(v) for k, v in set_cookies(r).items()} == {"session": True, "session.sig": True}
        await http.post("/put", json={"message": "hi"})
        r = await http.get("/logout")
        assert {k: expired(v) for k, v in set_cookies(r).items()} == {"session": True, "session.sig": True}


async def test_cookie_session_refuses_more_than_one_cookie(caplog: pytest.LogCaptureFixture) -> None:
    async with client(compat_app()) as http:
        with caplog.at_level(logging.ERROR, logger="coatcheck"):
            r = await http.post("/put", json={"v": random_text(5000)})
        assert "set-cookie" not in r.headers
        assert any("cookie-session" in rec.getMessage() for rec in caplog.records)


def test_weak_compat_keys_need_insecure_dev_secret() -> None:
    with pytest.raises(ConfigurationError, match="insecure_dev_secret"):
        middleware(["a", "b"], store="cookie://?mode=cookie-session")


# ---- configuration --------------------------------------------------------------------------------------
def test_from_url_options() -> None:
    store = from_url("cookie://")
    assert isinstance(store, CookieStore) and isinstance(store, ClientSideStore)
    assert (store.mode, store.max_chunks, store.compress, store.debug) == ("sealed", 4, True, False)
    store = from_url("cookie://?mode=signed&max_chunks=2&compress=false&debug=1")
    assert isinstance(store, CookieStore)
    assert (store.mode, store.max_chunks, store.compress, store.debug) == ("signed", 2, False, True)
    store = from_url("cookie://?mode=cookie-session")
    assert isinstance(store, CookieStore) and store.max_chunks == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("cookie://?mode=encrypted", "mode"),
        ("cookie://?max_chunks=many", "max_chunks"),
        ("cookie://?max_chunks=0", "max_chunks"),
        ("cookie://?max_chunks=51", "max_chunks"),
        ("cookie://?mode=cookie-session&max_chunks=2", "cannot split"),
        ("cookie://?debug=maybe", "debug"),
        ("cookie://?secret=x", "unknown cookie:// option"),
        ("cookie://localhost/db", "no host or path"),
    ],
)
def test_bad_cookie_urls_say_what_to_change(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        from_url(url)


def test_bad_options_say_what_to_change() -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        CookieStore(mode="plain")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_chunks"):
        CookieStore(max_chunks=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="compress"):
        CookieStore(compress="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="is_revoked"):
        CookieStore(is_revoked="nope")  # type: ignore[arg-type]


async def test_an_unbound_store_says_how_to_use_it() -> None:
    with pytest.raises(RuntimeError, match="SessionMiddleware"):
        await CookieStore().open(b"session=x", "session", NOW)


def test_one_store_cannot_serve_two_secrets() -> None:
    store = CookieStore()
    middleware(secrets.token_urlsafe(32), store=store)
    with pytest.raises(ConfigurationError, match="its own CookieStore"):
        middleware(secrets.token_urlsafe(32), store=store)


def test_nonce_is_fresh_for_every_seal_of_the_same_session() -> None:
    store = bound_store()
    nonces = set()
    for _ in range(1000):
        value = seal(store, {"a": 1})[0].split(b";", 1)[0].split(b"=", 1)[1]
        raw = b64url_decode(value)
        assert raw is not None
        nonces.add(raw[HEADER.size : HEADER.size + NONCE_BYTES])
    assert len(nonces) == 1000


# ---- the WSGI adapter ----------------------------------------------------------------------------
def test_chunked_cookie_session_over_wsgi(secret: str) -> None:
    from coatcheck.wsgi import SessionMiddleware as WSGISessionMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = environ["coatcheck.session"]
        if environ["PATH_INFO"] == "/put":
            session["v"] = random_text(int(environ["QUERY_STRING"]))
        body = json.dumps({"length": len(session.get("v", ""))}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    wsgi = WSGISessionMiddleware(app, secret=secret, store="cookie://")
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://testserver") as http:
        r = http.get("/put?9000")
        assert sorted(set_cookies(r)) == ["session.0", "session.1", "session.2"]
        assert http.get("/").json() == {"length": 9000}
        r = http.get("/put?10")
        assert {k: expired(v) for k, v in set_cookies(r).items()} == {
            "session": False,
            "session.0": True,
            "session.1": True,
            "session.2": True,
        }
        assert list(http.cookies.keys()) == ["session"]
        assert http.get("/").json() == {"length": 10}


# ---- interop with Express's cookie-session (real Node) ---------------------------------------------
NODE_COOKIE_SESSION_APP = """
"use strict";
const http = require("http");
const cookieSession = require("cookie-session");
const middleware = cookieSession({ name: "session", keys: ["a", "b"] });
http.createServer((req, res) => {
  middleware(req, res, () => {
    const reply = () => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(req.session));
    };
    if (req.url !== "/put") return reply();
    let body = "";
    req.on("data", (chunk) => { body += chunk; });
    req.on("end", () => { Object.assign(req.session, JSON.parse(body)); reply(); });
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
"""


@pytest.fixture
def node_cookie_session(tmp_path: Path) -> Iterator[str]:
    """A real Express cookie-session (keys ["a", "b"]) on a free loopback port: yields its URL."""
    node = shutil.which("node")
    if node is None:
        unavailable("Node.js", "the node binary is not installed (apt-get install nodejs)")
    root = Path(__file__).resolve().parent.parent
    modules = [
        d
        for d in (root / "tests/interop/node/node_modules", root / "benchmarks/node/node_modules")
        if (d / "cookie-session").is_dir()
    ]
    if not modules:
        unavailable("cookie-session (npm)", "run `npm ci` in tests/interop/node or benchmarks/node")
    script = tmp_path / "cookie_session_app.js"
    script.write_text(NODE_COOKIE_SESSION_APP)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NODE_PATH": str(modules[0])}
    proc = subprocess.Popen([node, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            wait_for_port("127.0.0.1", port)
        except TimeoutError:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"the Node cookie-session app did not start: {err.decode(errors='replace')}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.node
async def test_sessions_are_shared_with_a_real_express_cookie_session(node_cookie_session: str) -> None:
    data = {"message": "hi", "snow": "Zoë ☃", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}}
    async with httpx.AsyncClient(base_url=node_cookie_session) as node, client(compat_app()) as python:
        from_node = await node.post("/put", json=data)
        node_cookies = {name: value_of(h) for name, h in set_cookies(from_node).items()}
        header = "; ".join(f"{k}={v}" for k, v in node_cookies.items())
        assert (await python.get("/", headers={"cookie": header})).json()["data"] == data
        # the same data written by coatcheck is byte for byte what cookie-session wrote
        from_python = await python.post("/put", json=data)
        assert {name: value_of(h) for name, h in set_cookies(from_python).items()} == node_cookies
        # and a change made in Python is read by Node
        changed = await python.post("/put", json={"from": "python"}, headers={"cookie": header})
        back = "; ".join(f"{name}={value_of(h)}" for name, h in set_cookies(changed).items())
        node_view = (await node.get("/", headers={"cookie": back})).json()
        assert node_view == {**data, "from": "python"}


# ---- the cache of opened frames ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sealed", "signed"])
async def test_a_cached_frame_still_expires_and_gives_each_request_its_own_data(mode: str) -> None:
    store = bound_store(mode)
    cookies = store.seal(
        "sid",
        Record(data={"cart": [1]}, meta=Meta(created=NOW, last_seen=NOW, idle_deadline=NOW + 60)),
        name="session",
        cookie_header=None,
        max_age=None,
        render=render,
    )
    header = header_for(cookies)
    first = await store.open(header, "session", NOW)
    assert first is not None
    first.record.data["cart"].append(2)  # a handler mutating its session must not leak
    again = await store.open(header, "session", NOW + 1)
    assert again is not None and again.record.data == {"cart": [1]}
    flat_cookies = store.seal(
        "sid2",
        Record(data={"n": 1}, meta=Meta(created=NOW, last_seen=NOW, user_id="u", cookie={"max_age": 5.0})),
        name="session",
        cookie_header=None,
        max_age=None,
        render=render,
    )
    flat_header = header_for(flat_cookies)
    for _ in range(2):  # a session of plain values comes from the cache as a copy
        flat = await store.open(flat_header, "session", NOW)
        assert flat is not None and flat.session_id == "sid2" and flat.record.data == {"n": 1}
        assert flat.record.meta.user_id == "u" and flat.record.meta.cookie == {"max_age": 5.0}
        flat.record.data["n"] = 2
        flat.record.meta.cookie["max_age"] = 9.0
    assert await store.open(header, "session", NOW + 60) is None  # the frame's expiry, from the cache
    assert await store.open(header, "other", NOW) is None  # still bound to its cookie name
    value = header.split(b"=", 1)[1]
    tampered = value[:-2] + (b"A" if value[-2:-1] != b"A" else b"B") + value[-1:]
    assert await store.open(b"session=" + tampered, "session", NOW) is None


async def test_the_opened_cache_is_bounded() -> None:
    from coatcheck.stores.cookie import OPENED_CACHE_ENTRIES

    store = bound_store("signed")
    for n in range(OPENED_CACHE_ENTRIES + 10):
        assert await store.open(header_for(seal(store, {"n": n})), "session", NOW) is not None
    assert len(store._opened) <= OPENED_CACHE_ENTRIES
