"""Retiring a secret: cookies signed with an older secret are re-signed with the current one."""

from __future__ import annotations

import secrets

import pytest

from coatcheck.crypto import Keyring
from coatcheck.stores import MemoryStore
from tests.helpers import CountingStore, client, make_app, set_cookies, use_cookie


def signed_value(header: str, name: str = "session") -> str:
    assert header.startswith(f"{name}=")
    return header.split(";", 1)[0].split("=", 1)[1]


@pytest.mark.parametrize("route", ["/read", "/plain", "/incr"])
async def test_a_cookie_signed_with_an_old_secret_is_resigned_on_the_next_response(route: str) -> None:
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store = MemoryStore()
    async with client(make_app(secret=old, store=store)) as c:
        old_cookie = signed_value(set_cookies(await c.get("/incr"))[0])
    assert Keyring(old).unsign_id(old_cookie.encode()) is not None

    async with client(make_app(secret=[new, old], store=store)) as c:
        use_cookie(c, old_cookie)
        response = await c.get(route)
        expected = response.json()["n"] if route != "/plain" else 1
        (header,) = set_cookies(response)  # even when the handler never touched the session
        resigned = signed_value(header)
    assert Keyring(new).unsign_id(resigned.encode()) == Keyring(old).unsign_id(old_cookie.encode())
    assert Keyring(old).unsign_id(resigned.encode()) is None  # signed with the new secret only

    async with client(make_app(secret=new, store=store)) as c:  # the old secret retired
        use_cookie(c, resigned)
        assert (await c.get("/read")).json() == {"n": expected, "new": False}


async def test_a_cookie_signed_with_the_current_secret_is_not_resent() -> None:
    secret = secrets.token_urlsafe(32)
    store = CountingStore()
    async with client(make_app(secret=[secret, secrets.token_urlsafe(32)], store=store)) as c:
        await c.get("/incr")
        response = await c.get("/read")
    assert set_cookies(response) == []
    assert store.calls.get("set") == 1 and "touch" not in store.calls  # re-signing writes nothing
