"""coatcheck.quart and coatcheck.quart_auth: Quart's test client, and Hypercorn on loopback."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from quart import Quart

from coatcheck.errors import ConfigurationError
from coatcheck.quart import QuartSession, sessions_for
from coatcheck.stores import MemoryStore, RedisStore
from tests.apps.quart_site import create_app
from tests.services import free_port, redis_server, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def site(secret: str, store: Any, **config: Any) -> Quart:
    return create_app(SECRET_KEY=secret, SESSION_STORE=store, **config)


def cookie_of(response: Any, name: str = "session") -> str | None:
    for header in response.headers.get_all("Set-Cookie"):
        if header.startswith(name + "="):
            return str(header)
    return None


async def test_quart_session_is_coatchecks_and_persists(secret: str) -> None:
    app = site(secret, MemoryStore())
    client = app.test_client()
    first = await client.get("/incr")
    assert await first.get_json() == {"n": 1}
    assert first.headers["Vary"] == "Cookie"
    assert (await (await client.get("/incr")).get_json()) == {"n": 2}
    async with app.test_request_context("/"):
        assert isinstance(sessions_for(app).store, MemoryStore)


async def test_quart_auth_login_rotates_the_id_binds_the_user_and_flashes(secret: str) -> None:
    store = MemoryStore()
    app = site(secret, store)
    client = app.test_client()
    await client.get("/incr")
    before = client.cookie_jar  # the jar holds the pre-login cookie
    old = {c.value for c in before} if before is not None else set()
    response = await client.post("/login", form={"user": "ada"})
    assert response.status_code == 302
    assert cookie_of(response) is not None  # the redirect carries the new session cookie
    new = {c.value for c in client.cookie_jar} if client.cookie_jar is not None else set()
    assert new and new.isdisjoint(old)
    assert "QUART_AUTH" not in str(response.headers)  # Quart-Auth's own cookie is never set
    home = await (await client.get("/")).get_json()
    assert home == {"user": "ada", "flashes": ["Welcome, ada"]}
    assert await (await client.get("/")).get_json() == {"user": "ada", "flashes": []}
    assert await (await client.get("/private")).get_json() == {"secret": "for ada"}
    assert len(await store.sessions_for("ada")) == 1
    assert await store.count() == 1  # the pre-login record was retired


async def test_quart_auth_logout_ends_the_session(secret: str) -> None:
    store = MemoryStore()
    app = site(secret, store)
    client = app.test_client()
    await client.post("/login", form={"user": "ada"})
    assert (await client.get("/private")).status_code == 200
    response = await client.post("/logout")
    assert "Max-Age=0" in (cookie_of(response) or "") or "1970" in (cookie_of(response) or "")
    assert (await client.get("/private")).status_code == 401
    assert await store.count() == 0


async def test_logging_a_user_out_everywhere_reaches_quart(secret: str) -> None:
    store = MemoryStore()
    client = site(secret, store).test_client()
    await client.post("/login", form={"user": "bob"})
    await store.destroy_user("bob")
    assert (await client.get("/private")).status_code == 401


async def test_remember_me_makes_the_cookie_last_quart_auth_duration(secret: str) -> None:
    client = site(secret, MemoryStore(), QUART_AUTH_DURATION=3600).test_client()
    response = await client.post("/login", form={"user": "ada", "remember": "1"})
    assert "Max-Age=3600" in (cookie_of(response) or "")
    plain = await site(secret, MemoryStore()).test_client().post("/login", form={"user": "ada"})
    assert "Max-Age" not in (cookie_of(plain) or "")


async def test_explicit_save_is_awaited_natively(secret: str) -> None:
    store = MemoryStore()
    client = site(secret, store).test_client()
    assert await (await client.get("/save-now")).get_json() == {"saved": True, "new": False}
    assert await store.count() == 1


async def test_a_websocket_reads_the_session_read_only(secret: str) -> None:
    client = site(secret, MemoryStore()).test_client()
    await client.get("/incr")
    await client.post("/login", form={"user": "ada"})
    async with client.websocket("/ws") as ws:
        assert await ws.receive_json() == {"n": 1, "user": "ada"}
        assert "read-only" in await ws.receive()
    assert await (await client.get("/incr")).get_json() == {"n": 2}


@pytest.mark.redis
async def test_store_down_is_a_503(secret: str) -> None:
    with redis_server() as (port, _):
        app = site(secret, RedisStore(f"redis://127.0.0.1:{port}/0"), SESSION_STORE_TIMEOUT=2)
        client = app.test_client()
        assert (await client.get("/incr")).status_code == 200
    loading = await client.get("/incr")  # the cookie needs a load: the store is gone
    assert loading.status_code == 503
    assert "session store" in (await loading.get_data(as_text=True))
    fresh = app.test_client()
    saving = await fresh.get("/incr")  # nothing to load; the save fails before the headers
    assert saving.status_code == 503
    assert saving.headers["Retry-After"] == "5"
    assert cookie_of(saving) is None


def test_missing_secret_fails_at_setup() -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app(SESSION_STORE=MemoryStore())


def test_the_session_class_is_a_core_session() -> None:
    from coatcheck import Session

    assert issubclass(QuartSession, Session)


# ---- Hypercorn: a real server process on loopback ----------------------------------------------
@pytest.fixture
def hypercorn_site(secret: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """tests/apps/quart_site.py under Hypercorn on a free port: yields (base URL, key prefix)."""
    prefix = f"cctest-quart-{secrets.token_hex(4)}:"
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "COATCHECK_TEST_SECRET": secret,
        "COATCHECK_TEST_STORE": f"{redis_url}?prefix={prefix}",
    }
    log = tmp_path / "hypercorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "tests.apps.quart_site:app", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_for_port("127.0.0.1", port, timeout=30)
        except TimeoutError:
            pytest.fail(f"Hypercorn did not start:\n{log.read_text(errors='replace')}")
        yield f"http://127.0.0.1:{port}", prefix
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.mark.redis
def test_login_flash_and_logout_under_hypercorn(hypercorn_site: tuple[str, str], redis_url: str) -> None:
    url, prefix = hypercorn_site
    raw = redis.Redis.from_url(redis_url)
    with httpx.Client(base_url=url) as client:
        assert client.get("/incr").json() == {"n": 1}
        assert client.get("/incr").json() == {"n": 2}
        assert client.get("/private").status_code == 401
        landed = client.post("/login", data={"user": "ada"}, follow_redirects=True)
        assert landed.json() == {"user": "ada", "flashes": ["Welcome, ada"]}
        assert client.get("/private").json() == {"secret": "for ada"}
        assert client.get("/incr").json() == {"n": 3}  # login kept the data
        records = list(raw.scan_iter(match=prefix + "s:*"))
        assert len(records) == 1  # one session record in the shared Redis; the pre-login one is gone
        assert raw.hget(records[0], "u") == b"ada"  # bound to the user (the per-user index)
        out = client.post("/logout", follow_redirects=True)
        assert out.json() == {"user": None, "flashes": []}
        assert client.get("/private").status_code == 401
        assert list(raw.scan_iter(match=prefix + "s:*")) == []
    raw.close()
