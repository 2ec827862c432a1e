"""The ASGI middleware's per-request shortcuts keep its behaviour: raw ASGI calls (no HTTP
client), so what the middleware hands the server can be checked object by object."""

from __future__ import annotations

from typing import Any

import pytest

from coatcheck import Cookie, SessionMiddleware
from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.cookies import first_cookie, parse_cookie_header
from coatcheck.crypto import Keyring
from coatcheck.record import Meta
from coatcheck.session import Session
from coatcheck.wsgi import WSGISession
from tests.helpers import CountingStore, make_settings

Message = dict[str, Any]


def _scope(path: str, cookie: bytes | None = None) -> dict[str, Any]:
    headers = [(b"host", b"testserver")] + ([(b"cookie", cookie)] if cookie else [])
    return {"type": "http", "method": "GET", "scheme": "http", "path": path, "headers": headers}


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _call(app: Any, path: str, cookie: bytes | None = None) -> tuple[list[Message], dict[str, Any]]:
    sent: list[Message] = []
    scope = _scope(path, cookie)

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, _receive, send)
    return sent, scope


class App:
    """An ASGI app that sends the same start message object each time, after `handle(session)`."""

    def __init__(self, handle: Any = None) -> None:
        self.handle = handle
        self.start: Message = {}
        self.seen: list[bool] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append("session" in scope)
        if self.handle is not None:
            self.handle(scope["session"])
        self.start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
        await send(self.start)
        await send({"type": "http.response.body", "body": b"ok"})


def _cookie_of(sent: list[Message]) -> bytes:
    (value,) = [v for k, v in sent[0]["headers"] if k == b"set-cookie"]
    return value.split(b";", 1)[0]


async def test_an_anonymous_request_gets_the_apps_start_message_unchanged(secret: str) -> None:
    store = CountingStore()
    app = App()
    sent, scope = await _call(SessionMiddleware(app, secret=secret, store=store), "/plain")
    assert sent[0] is app.start  # the very object: no copy, no header list rebuilt
    assert sent[0]["headers"] == [(b"content-type", b"text/plain")]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}
    assert isinstance(scope["session"], Session) and scope["session"].is_new
    assert store.total == 0


async def test_an_unused_loaded_session_gets_the_start_message_unchanged(secret: str) -> None:
    store = CountingStore()
    writer = SessionMiddleware(App(lambda s: s.__setitem__("n", 1)), secret=secret, store=store)
    cookie = _cookie_of((await _call(writer, "/"))[0])
    app = App()
    sent, _ = await _call(SessionMiddleware(app, secret=secret, store=store), "/plain", cookie)
    assert sent[0] is app.start
    assert store.calls == {"set": 1, "get": 1}


async def test_a_session_taken_out_of_the_scope_is_still_committed(secret: str) -> None:
    """The pass-through is only for a session still in the scope: unset="destroy" deletes."""
    store = CountingStore()
    writer = SessionMiddleware(App(lambda s: s.__setitem__("n", 1)), secret=secret, store=store)
    cookie = _cookie_of((await _call(writer, "/"))[0])

    class Unsetting(App):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            del scope["session"]
            await super().__call__({**scope, "session": None}, receive, send)

    app = Unsetting()
    middleware = SessionMiddleware(app, secret=secret, store=store, unset="destroy")
    sent, _ = await _call(middleware, "/", cookie)
    assert sent[0] is not app.start
    assert store.calls["destroy"] == 1
    assert b"Max-Age=0" in dict(sent[0]["headers"])[b"set-cookie"]


async def test_a_read_sends_cache_headers_and_no_cookie_with_one_store_read(secret: str) -> None:
    store = CountingStore()
    writer = SessionMiddleware(App(lambda s: s.__setitem__("n", 1)), secret=secret, store=store)
    cookie = _cookie_of((await _call(writer, "/"))[0])
    reads: list[Any] = []
    sent, _ = await _call(
        SessionMiddleware(App(lambda s: reads.append(s["n"])), secret=secret, store=store), "/", cookie
    )
    headers = sent[0]["headers"]
    assert reads == [1]
    assert (b"vary", b"Cookie") in headers and (b"cache-control", b"private") in headers
    assert b"set-cookie" not in dict(headers)
    assert store.calls == {"set": 1, "get": 1}


@pytest.mark.parametrize(
    ("path", "in_scope"),
    [
        ("/app", True),
        ("/app/", True),
        ("/app/x", True),
        ("/application", False),
        ("/", False),
        ("/other", False),
    ],
)
async def test_a_cookie_path_other_than_root_still_gates_requests(
    secret: str, path: str, in_scope: bool
) -> None:
    app = App()
    middleware = SessionMiddleware(app, secret=secret, store=CountingStore(), cookie=Cookie(path="/app"))
    sent, _ = await _call(middleware, path)
    assert app.seen == [in_scope]
    assert sent[0] is app.start


@pytest.mark.parametrize("path", ["/", "/a/b", "", "weird"])
async def test_a_root_cookie_path_gives_every_request_a_session(secret: str, path: str) -> None:
    app = App()
    await _call(SessionMiddleware(app, secret=secret, store=CountingStore()), path)
    assert app.seen == [True]


def _slots(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}


@pytest.mark.parametrize("cls", [Session, WSGISession])
@pytest.mark.parametrize("read_only", [False, True])
def test_fresh_builds_what_the_constructor_builds(cls: type[Session], read_only: bool) -> None:
    """`Session.fresh` skips `__init__`: every slot must come out the same (a slot it forgot
    to set raises AttributeError here)."""
    settings = make_settings(cookie=Cookie(max_age=3600))
    host, request = object(), object()
    built = _constructed(cls, settings, host, request, read_only)
    fresh = cls.fresh(settings, DEFAULT_SERIALIZER, 5.0, host, request, read_only)  # type: ignore[arg-type]
    _assert_same_slots(cls, fresh, built)
    assert fresh.untouched


@pytest.mark.parametrize("cls", [Session, WSGISession])
@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("stale", [False, True])
@pytest.mark.parametrize(
    "meta",
    [
        Meta(1.0, 2.0, None, None, None, {}, {}),
        Meta(1.0, 2.0, 900.0, 5000.0, "ada", {"max_age": 60.0}, {"ua": "x"}),
    ],
    ids=["plain", "user-and-cookie"],
)
def test_loaded_builds_what_the_constructor_builds(
    cls: type[Session], read_only: bool, stale: bool, meta: Meta
) -> None:
    """`Session.loaded` skips `__init__` for a record just loaded: every slot must come out
    the same as the constructor's (a slot it forgot to set raises AttributeError here)."""
    settings = make_settings(cookie=Cookie(max_age=3600))
    host, request = object(), object()
    data = {"cart": [1, 2], "n": 3}
    built = _constructed(
        cls,
        settings,
        host,
        request,
        read_only,
        session_id="sid",
        data=dict(data),
        meta=meta,
        stale_signature=stale,
    )
    loaded = cls.loaded(
        settings,
        DEFAULT_SERIALIZER,
        5.0,
        host,
        request,
        read_only,
        "sid",
        dict(data),
        meta,
        stale,  # type: ignore[arg-type]
    )
    _assert_same_slots(cls, loaded, built)


def _constructed(
    cls: type[Session], settings: Any, host: object, request: object, read_only: bool, **loaded: Any
) -> Session:
    """A session built by the keyword constructor, as the fast paths must build it."""
    return cls(
        settings=settings,
        serializer=DEFAULT_SERIALIZER,
        now=5.0,
        host=host,  # type: ignore[arg-type]
        request=request,  # type: ignore[arg-type]
        read_only=read_only,
        **loaded,
    )


def _assert_same_slots(cls: type[Session], fast: Session, built: Session) -> None:
    assert type(fast) is cls
    for name in sorted(_slots(cls)):
        assert getattr(fast, name) == getattr(built, name), name
    assert dict.items(fast) == dict.items(built)


def test_a_fresh_session_behaves_as_a_new_one() -> None:
    settings = make_settings()
    session = Session.fresh(settings, DEFAULT_SERIALIZER, 5.0, None, None)
    assert session.is_new and not session.modified and session.untouched
    session["cart"] = [1]
    session["cart"].append(2)
    assert session.modified and session.changes() == ({"cart": [1, 2]}, set())
    other = Session.fresh(settings, DEFAULT_SERIALIZER, 5.0, None, None)
    assert dict.__len__(other) == 0 and other.changes() == ({}, set())  # no state shared


@pytest.mark.parametrize(
    "header",
    [
        b"session=a",
        b" session = a ; session=b",
        b"x=1;session=;session=c",
        b"sessionx=1; session=2",
        b"session; session=3",
        b"=session; \tsession=\t4\t",
        b"a=session=5; session=6",
        b"other=1",
    ],
)
def test_first_cookie_is_the_first_pair_parse_cookie_header_finds(header: bytes) -> None:
    """`first_cookie` stops at the first match instead of parsing the whole header: same answer."""
    expected = next((value for name, value in parse_cookie_header(header) if name == b"session"), None)
    assert first_cookie(header, b"session") == expected


@pytest.mark.parametrize("idle", [None, 10.0, 20.0])
@pytest.mark.parametrize("absolute", [None, 10.0, 20.0])
def test_meta_expires_is_the_earlier_deadline(idle: float | None, absolute: float | None) -> None:
    meta = Meta(created=0.0, last_seen=0.0, idle_deadline=idle, absolute_deadline=absolute)
    deadlines = [d for d in (idle, absolute) if d is not None]
    assert meta.expires == (min(deadlines) if deadlines else None)
    assert Meta.from_dict(meta.to_dict()) == meta


@pytest.mark.parametrize(
    "secret", [b"k" * 32, b"k" * 64, b"k" * 65, "pp99Z7mCRCmFiT3S2vc5jBD1Ka6FbXFKO9hiIhfi4_o"]
)
def test_signatures_from_the_kept_hmac_are_hmac_sha256_of_the_id(secret: str | bytes) -> None:
    """The Keyring keys one HMAC per secret and copies it per use: the same MAC as a one-shot
    `hmac.digest`, for keys shorter than, as long as and longer than SHA-256's block."""
    import base64
    import hmac

    keyring = Keyring([secret, "another-secret-" + "x" * 40], insecure_dev_secret=True)
    for session_id in ("a", "Ab0_-" * 9, "x" * 100):
        mac = hmac.digest(keyring.keys[0], session_id.encode(), "sha256")
        expected = base64.b64encode(mac).decode().rstrip("=").replace("+", "%2B").replace("/", "%2F")
        signed = keyring.sign_id(session_id)
        assert signed == "s%3A" + session_id + "." + expected
        assert keyring.verify_id(signed.encode()) == (session_id, True)
        assert keyring.verify_id(signed[:-2].encode() + b"AA") is None
    older = Keyring(["another-secret-" + "x" * 40], insecure_dev_secret=True).sign_id("a")
    assert keyring.verify_id(older.encode()) == ("a", False)


@pytest.mark.parametrize(
    "meta",
    [
        Meta(created=1.8e9, last_seen=1.8e9 + 0.5, idle_deadline=1.8e9 + 86400.25, absolute_deadline=None),
        Meta(created=1.8e9, last_seen=1.8e9, idle_deadline=None, absolute_deadline=1.9e9, user_id="42"),
        Meta(created=1e17, last_seen=1e-3, idle_deadline=1e22, absolute_deadline=2.5),
        Meta(created=0.0, last_seen=1e-5, idle_deadline=float("1e-4"), absolute_deadline=None),
        Meta(created=5, last_seen=6, idle_deadline=7, absolute_deadline=None),  # an int clock
        Meta(created=1.0, last_seen=1.0, user_id="\ud800"),
        Meta(created=1.0, last_seen=1.0, user_id="é✓"),
        Meta(created=1.0, last_seen=1.0, cookie={"max_age": 60.0}, hints={"ua": "x"}),
    ],
)
def test_redis_metadata_encodes_as_the_serializer_would(meta: Meta) -> None:
    from coatcheck import _json
    from coatcheck.stores._redis_hash import encode_meta

    try:
        expected: bytes | type[Exception] = _json.dumps(meta.to_dict())
    except (TypeError, ValueError, UnicodeError) as exc:
        expected = type(exc)
    if isinstance(expected, bytes):
        assert encode_meta(meta, _json.dumps) == expected
        assert Meta.from_dict(_json.loads(expected)).expires == meta.expires
    else:
        with pytest.raises(expected):
            encode_meta(meta, _json.dumps)


async def test_starlette_adapter_passes_a_response_without_cookies_through_unchanged(secret: str) -> None:
    from coatcheck.starlette import SessionMiddleware as StarletteSessionMiddleware

    app = App()
    sent, _ = await _call(StarletteSessionMiddleware(app, secret_key=secret, store=CountingStore()), "/plain")
    assert sent[0] is app.start
    writer = StarletteSessionMiddleware(App(lambda s: s.__setitem__("n", 1)), secret_key=secret)
    (cookie,) = [v for k, v in (await _call(writer, "/"))[0][0]["headers"] if k == b"set-cookie"]
    assert b"; path=/" in cookie and b"; httponly" in cookie  # still in Starlette's spelling


async def test_an_anonymous_request_hands_the_server_every_message_of_the_app(secret: str) -> None:
    bodies: list[Message] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"a", b"b"):
            bodies.append({"type": "http.response.body", "body": chunk, "more_body": chunk == b"a"})
            await send(bodies[-1])

    sent, _ = await _call(SessionMiddleware(app, secret=secret, store=CountingStore()), "/plain")
    assert sent[1:] == bodies and all(a is b for a, b in zip(sent[1:], bodies, strict=True))
    assert not any(k == b"set-cookie" for k, _ in sent[0]["headers"])


async def test_a_session_first_touched_just_before_the_response_starts_is_committed(secret: str) -> None:
    store = CountingStore()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # the app does other work first; the session is untouched until here
        scope["session"]["n"] = 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = SessionMiddleware(app, secret=secret, store=store)
    sent, _ = await _call(middleware, "/")
    cookie = _cookie_of(sent)
    assert store.total == 1
    _, scope = await _call(middleware, "/", cookie)
    assert dict(scope["session"]) == {"n": 1}


async def test_the_starlette_adapter_skips_its_wrapper_for_a_request_without_its_cookie(secret: str) -> None:
    from coatcheck.starlette import SessionMiddleware as StarletteSessionMiddleware

    app = App()
    middleware = StarletteSessionMiddleware(app, secret_key=secret)
    assert middleware._fresh_app is app and middleware.app is not app
    sent, scope = await _call(middleware, "/plain")
    assert sent[0] is app.start and isinstance(scope["session"], Session)
