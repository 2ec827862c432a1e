"""Lifecycle events for audit logs: what the `on_event` hook and the `coatcheck.audit` logger
receive over real HTTP, on real stores, and that no event ever carries an id or a token."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coatcheck import SessionMiddleware
from coatcheck.audit import AuditEvent, id_hint
from coatcheck.csrf import CSRFMiddleware
from coatcheck.stores import CookieStore, MemoryStore, RedisStore, SQLiteStore
from tests.helpers import TEST_SECRET, Clock, client
from tests.services import free_port


async def whoami(request: Request) -> Response:
    request.session["seen"] = True
    return JSONResponse({"id": request.session.id})


async def login(request: Request) -> Response:
    request.session.login(request.query_params.get("user", "42"))
    return JSONResponse({"id": request.session.id})


async def regenerate(request: Request) -> Response:
    request.session.regenerate(keep_data=True)
    return JSONResponse({"id": request.session.id})


async def logout(request: Request) -> Response:
    request.session.logout()
    return JSONResponse({"ok": True})


async def read(request: Request) -> Response:
    return JSONResponse({"new": request.session.is_new})


ROUTES = [
    Route("/whoami", whoami),
    Route("/login", login),
    Route("/regenerate", regenerate),
    Route("/logout", logout),
    Route("/read", read),
    Route("/form", read, methods=["POST"]),
]


def make_app(events: list[AuditEvent], **options: Any) -> Starlette:
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, on_event=events.append, **options)
    return app


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    if request.param == "memory":
        return MemoryStore
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "audit.db")
    url = request.getfixturevalue("redis_url")
    return lambda: RedisStore(url, prefix=f"coatcheck-audit-test:{time.time_ns()}:")


def kinds(events: list[AuditEvent]) -> list[str]:
    return [e.kind for e in events]


def assert_no_secrets(events: list[AuditEvent], records: list[logging.LogRecord], secrets: set[str]) -> None:
    texts = [repr(e) for e in events] + [r.getMessage() + repr(getattr(r, "audit", "")) for r in records]
    for text in texts:
        for secret in secrets:
            assert secret not in text


async def test_login_regenerate_logout_are_events_with_hints_never_ids(
    make_store: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    events: list[AuditEvent] = []
    caplog.set_level(logging.INFO, logger="coatcheck.audit")
    async with client(make_app(events, store=make_store())) as c:
        first = (await c.get("/whoami")).json()["id"]
        cookies = {c.cookies["session"]}
        second = (await c.get("/login?user=42")).json()["id"]
        cookies.add(c.cookies["session"])
        third = (await c.get("/regenerate")).json()["id"]
        cookies.add(c.cookies["session"])
        await c.get("/logout")

    assert kinds(events) == ["created", "login", "regenerated", "logout"]
    created, logged_in, regenerated, logged_out = events
    assert created.id_hint == id_hint(first) and created.user_id is None
    assert (logged_in.id_hint, logged_in.previous_hint, logged_in.user_id) == (
        id_hint(second),
        id_hint(first),
        "42",
    )
    assert (regenerated.id_hint, regenerated.previous_hint) == (id_hint(third), id_hint(second))
    assert (logged_out.id_hint, logged_out.user_id) == (id_hint(third), "42")
    assert all(e.path for e in events)
    records = [r for r in caplog.records if r.name == "coatcheck.audit"]
    assert [r.audit["kind"] for r in records] == kinds(events)  # type: ignore[attr-defined]
    assert_no_secrets(events, records, {first, second, third, *cookies})


async def test_login_on_a_fresh_session_is_created_then_login() -> None:
    events: list[AuditEvent] = []
    async with client(make_app(events, store=MemoryStore())) as c:
        new_id = (await c.get("/login?user=7")).json()["id"]
    assert kinds(events) == ["created", "login"]
    assert events[1].id_hint == id_hint(new_id) and events[1].user_id == "7"


async def test_destroying_an_anonymous_session_is_destroyed_not_logout() -> None:
    events: list[AuditEvent] = []
    async with client(make_app(events, store=MemoryStore())) as c:
        await c.get("/whoami")
        await c.get("/logout")
    assert kinds(events) == ["created", "destroyed"]


async def test_reading_a_session_emits_nothing() -> None:
    events: list[AuditEvent] = []
    async with client(make_app(events, store=MemoryStore())) as c:
        await c.get("/whoami")
        for _ in range(3):
            await c.get("/read")
    assert kinds(events) == ["created"]


async def test_a_cookie_whose_record_expired_is_an_expired_event(make_store: Callable[[], Any]) -> None:
    events: list[AuditEvent] = []
    clock = Clock(time.time())
    app = make_app(events, store=make_store(), idle_timeout=60, clock=clock)
    async with client(app) as c:
        session_id = (await c.get("/whoami")).json()["id"]
        clock.advance(61)  # past the idle deadline as the middleware sees it
        assert (await c.get("/read")).json() == {"new": True}
    expired = [e for e in events if e.kind == "expired"]
    assert len(expired) == 1
    assert expired[0].id_hint == id_hint(session_id)
    assert expired[0].reason in ("deadline", "gone")


async def test_destroy_user_is_a_revoked_event_on_the_middlewares_hook(make_store: Callable[[], Any]) -> None:
    events: list[AuditEvent] = []
    store = make_store()
    app = make_app(events, store=store)
    async with client(app) as a, client(app) as b:
        await a.get("/login?user=alice")
        await b.get("/login?user=alice")
        assert await store.destroy_user("alice") == 2
    revoked = [e for e in events if e.kind == "revoked"]
    assert [(e.user_id, e.count) for e in revoked] == [("alice", 2)]


async def test_a_csrf_refusal_is_an_event_naming_the_failed_check() -> None:
    events: list[AuditEvent] = []
    app = Starlette(routes=ROUTES)
    app.add_middleware(CSRFMiddleware, trusted_origins=["http://testserver"])
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=MemoryStore(), on_event=events.append)
    async with client(app) as c:
        await c.get("/whoami")
        foreign = await c.post("/form", headers={"origin": "http://evil.example"})
        tokenless = await c.post("/form", headers={"origin": "http://testserver"})
    assert (foreign.status_code, tokenless.status_code) == (403, 403)
    refusals = [e for e in events if e.kind == "csrf_refused"]
    assert [e.reason for e in refusals] == [
        foreign.headers["x-csrf-failure"],
        tokenless.headers["x-csrf-failure"],
    ]
    assert refusals[0].reason != refusals[1].reason  # a foreign origin, then a missing token
    assert all(e.path == "/form" and e.id_hint is not None for e in refusals)


async def test_a_store_failure_is_a_store_error_event_and_a_503() -> None:
    events: list[AuditEvent] = []
    port = free_port()  # nothing listens there
    app = make_app(events, store=RedisStore(f"redis://127.0.0.1:{port}/0"), store_timeout=2)
    async with client(app) as c:
        response = await c.get("/whoami")
    assert response.status_code == 503
    assert kinds(events) == ["store_error"]
    assert events[0].reason == "saving a session"


async def test_a_raising_hook_never_breaks_the_request_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def broken(event: AuditEvent) -> None:
        calls.append(event.kind)
        raise ValueError("the audit sink is down")

    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=MemoryStore(), on_event=broken)
    async with client(app) as c:
        assert (await c.get("/whoami")).status_code == 200
        assert (await c.get("/login")).status_code == 200
        assert (await c.get("/logout")).status_code == 200
    assert calls == ["created", "login", "logout"]
    failures = [r for r in caplog.records if "on_event hook raised" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_client_side_sessions_have_the_same_lifecycle_events() -> None:
    events: list[AuditEvent] = []
    async with client(make_app(events, store=CookieStore())) as c:
        first = (await c.get("/whoami")).json()["id"]
        second = (await c.get("/login?user=9")).json()["id"]
        await c.get("/logout")
    assert kinds(events) == ["created", "login", "logout"]
    assert events[1].previous_hint == id_hint(first) and events[1].id_hint == id_hint(second)


def test_on_event_must_be_callable() -> None:
    from coatcheck.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="on_event"):
        SessionMiddleware(read, secret=TEST_SECRET, store=MemoryStore(), on_event="print")  # type: ignore[arg-type]


def test_wsgi_and_flask_csrf_refusals_are_events() -> None:
    flask = pytest.importorskip("flask")
    from coatcheck.flask import CSRFProtect, Session

    events: list[AuditEvent] = []
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=TEST_SECRET, CSRF_TRUSTED_ORIGINS=["http://localhost"])
    Session(app, store=MemoryStore(), on_event=events.append)
    CSRFProtect(app)

    @app.post("/form")
    def form() -> str:
        return "ok"

    response = app.test_client().post("/form", headers={"origin": "http://evil.example"})
    assert response.status_code == 403
    assert [e.kind for e in events] == ["csrf_refused"]
    assert events[0].reason == response.headers["X-CSRF-Failure"] and events[0].path == "/form"


def test_wsgi_csrf_middleware_refusal_is_an_event() -> None:
    from coatcheck.wsgi import CSRFMiddleware as WSGICSRF
    from coatcheck.wsgi import SessionMiddleware as WSGISession

    events: list[AuditEvent] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok"]

    wrapped = WSGISession(
        WSGICSRF(app, trusted_origins=["http://testserver"]),
        secret=TEST_SECRET,
        store=MemoryStore(),
        on_event=events.append,
    )
    transport = httpx.WSGITransport(app=wrapped)
    with httpx.Client(transport=transport, base_url="http://testserver") as c:
        response = c.post("/x", headers={"origin": "http://evil.example"})
    assert response.status_code == 403
    assert [(e.kind, e.reason) for e in events] == [("csrf_refused", response.headers["x-csrf-failure"])]


def test_a_websocket_from_an_untrusted_origin_is_a_csrf_refused_event() -> None:
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    events: list[AuditEvent] = []
    app = Starlette(routes=[WebSocketRoute("/ws", ws)])
    app.add_middleware(CSRFMiddleware, trusted_origins=["http://testserver"])
    app.add_middleware(SessionMiddleware, secret=TEST_SECRET, store=MemoryStore(), on_event=events.append)
    with (
        TestClient(app) as c,
        pytest.raises(WebSocketDisconnect),
        c.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as socket,
    ):
        socket.receive_text()
    assert [(e.kind, e.reason, e.path) for e in events] == [
        ("csrf_refused", "websocket-origin-untrusted", "/ws")
    ]


def test_flask_sessions_have_the_same_lifecycle_events(tmp_path: Path) -> None:
    flask = pytest.importorskip("flask")
    from coatcheck.flask import Session

    events: list[AuditEvent] = []
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=TEST_SECRET)
    Session(app, store=SQLiteStore(tmp_path / "flask-audit.db"), on_event=events.append)

    @app.get("/visit")
    def visit() -> str:
        flask.session["seen"] = True
        return "ok"

    @app.get("/login")
    def flask_login() -> str:
        flask.session.login("alice")  # type: ignore[attr-defined]
        return "ok"

    @app.get("/logout")
    def flask_logout() -> str:
        flask.session.logout()  # type: ignore[attr-defined]
        return "ok"

    browser = app.test_client()
    for path in ("/visit", "/login", "/logout"):
        assert browser.get(path).status_code == 200
    assert [(e.kind, e.user_id) for e in events] == [
        ("created", None),
        ("login", "alice"),
        ("logout", "alice"),
    ]
    assert events[1].previous_hint == events[0].id_hint
