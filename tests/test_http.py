"""`coatcheck._http.RequestInfo`: the storage-key memo the runtime keeps on it.

A verified cookie's id is hashed (`crypto.storage_key`) once at load and the (id, key) pair is
noted on the request, so the commit writes under it without hashing again; a commit under
any other id (regenerate, login, a write after destroy) must hash that id, never reuse the
note. The hashing is counted by wrapping `hashlib` as `coatcheck.crypto` sees it, and the
store is a real MemoryStore: what is checked is where records end up.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from coatcheck import SessionMiddleware, crypto, events
from coatcheck._http import RequestInfo
from coatcheck.session import Session
from coatcheck.stores import MemoryStore

Message = dict[str, Any]


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each session id went through `crypto.storage_key`'s SHA-256."""
    counts: Counter[str] = Counter()

    def sha256(data: bytes = b"") -> Any:
        counts[data.decode()] += 1
        return hashlib.sha256(data)

    monkeypatch.setattr(crypto, "hashlib", SimpleNamespace(sha256=sha256))
    # audit id hints hash the id too when audit or metrics are on (an earlier test may have
    # set an OpenTelemetry SDK up): those hashes are not storage keys, so they are not counted
    monkeypatch.setattr(events, "storage_key", lambda sid: hashlib.sha256(sid.encode()).hexdigest())
    return counts


class App:
    """An ASGI app that runs `handle` on the session and keeps the last one it saw."""

    def __init__(self, handle: Callable[[Session], None]) -> None:
        self.handle = handle
        self.session: Session | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.session = scope["session"]
        self.handle(self.session)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: Any, cookie: bytes | None = None) -> bytes | None:
    """One GET; the session cookie the response sets (name=value), if any."""
    headers = [(b"host", b"testserver")] + ([(b"cookie", cookie)] if cookie else [])
    scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/", "headers": headers}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    values = [v for k, v in sent[0]["headers"] if k == b"set-cookie"]
    return values[0].split(b";", 1)[0] if values else None


async def _stored(store: MemoryStore, session_id: str) -> dict[str, Any] | None:
    record = await store.get(crypto.storage_key(session_id))
    return None if record is None else dict(record.data)


def _memo(session: Session | None) -> tuple[str, str] | None:
    assert session is not None and isinstance(session.request, RequestInfo)
    return session.request.storage_key


async def _first_visit(secret: str, store: MemoryStore) -> tuple[bytes, str]:
    app = App(lambda s: s.__setitem__("n", 1))
    cookie = await _call(SessionMiddleware(app, secret=secret, store=store))
    assert cookie is not None and app.session is not None
    return cookie, app.session.id


async def test_a_loaded_session_is_hashed_once_and_committed_under_that_key(
    secret: str, hashed: Counter[str]
) -> None:
    store = MemoryStore()
    cookie, session_id = await _first_visit(secret, store)
    hashed.clear()
    app = App(lambda s: s.__setitem__("n", s["n"] + 1))
    assert await _call(SessionMiddleware(app, secret=secret, store=store), cookie) is None
    assert _memo(app.session) == (session_id, crypto.storage_key(session_id))  # a fresh hash agrees
    hashed[session_id] -= 1  # the fresh computation just made
    assert hashed == Counter({session_id: 1})  # load and commit shared one hash
    assert await _stored(store, session_id) == {"n": 2}


async def test_a_new_session_is_hashed_once_at_commit_and_notes_nothing(
    secret: str, hashed: Counter[str]
) -> None:
    store = MemoryStore()
    app = App(lambda s: s.__setitem__("n", 1))
    assert await _call(SessionMiddleware(app, secret=secret, store=store)) is not None
    assert app.session is not None and _memo(app.session) is None  # nothing was loaded
    session_id = app.session.id
    assert hashed == Counter({session_id: 1})
    assert await _stored(store, session_id) == {"n": 1}


def _regenerate(s: Session) -> None:
    s.regenerate(keep_data=True)


def _login(s: Session) -> None:
    s.login("42")


def _write_after_destroy(s: Session) -> None:
    s.destroy()
    s["n"] = 7


@pytest.mark.parametrize("change_id", [_regenerate, _login, _write_after_destroy])
async def test_a_new_id_is_hashed_for_itself_never_given_the_loaded_ids_key(
    secret: str, hashed: Counter[str], change_id: Callable[[Session], None]
) -> None:
    store = MemoryStore()
    cookie, old_id = await _first_visit(secret, store)
    hashed.clear()
    app = App(change_id)
    assert await _call(SessionMiddleware(app, secret=secret, store=store), cookie) is not None
    assert app.session is not None
    new_id = app.session.id
    assert new_id != old_id
    assert _memo(app.session) == (old_id, crypto.storage_key(old_id))  # still the loaded id's
    hashed[old_id] -= 1  # the fresh computation just made
    assert hashed[new_id] == 1  # hashed once, for its own key
    assert hashed[old_id] >= 1  # the loaded id: at load (the retired record's destroy may hash it again)
    assert await _stored(store, old_id) is None  # the old record is gone, not overwritten
    assert await _stored(store, new_id) is not None  # the new one is under its own key
