"""The WSGI middleware: the ASGI behaviour tests re-run through it, plus what only WSGI has
(start_response timing, exc_info, lazy generators, close(), the sync bridge, fork)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

import tests.test_asgi as asgi_tests
from coatcheck import _sync
from coatcheck.stores import MemoryStore, SQLiteStore
from coatcheck.wsgi import ENVIRON_KEY, SessionMiddleware, WSGISession
from tests.apps.wsgi_routes import make_wsgi_app
from tests.helpers import CountingStore


# ---- the ASGI behaviour tests, through the WSGI adapter ------------------------------------
class AsyncWSGITransport(httpx.AsyncBaseTransport):
    """Serve a WSGI app to an httpx.AsyncClient: each request runs in a worker thread, as
    under a threaded WSGI server, so the sync bridge runs exactly as it does in production."""

    def __init__(self, app: Any) -> None:
        self._transport = httpx.WSGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        sync_request = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        response = await asyncio.to_thread(self._transport.handle_request, sync_request)
        content = await asyncio.to_thread(response.read)
        return httpx.Response(response.status_code, headers=response.headers, content=content)


def wsgi_client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=AsyncWSGITransport(app), base_url=base_url)


# Tests about ASGI-only features (WebSocket, lifespan, Starlette/FastAPI wiring) stay there.
ASGI_ONLY = {
    "test_websocket_gets_the_session_read_only",
    "test_fastapi_request_session_is_ours",
    "test_lifespan_shutdown_closes_the_store",
    "test_starlette_middleware_list_works",
    "test_explicit_save_writes_once_and_still_sends_the_cookie",  # adds a Starlette route; twin below
}


def rebind(
    name: str, make_app: Callable[..., Any], client: Callable[..., Any], module: str
) -> types.FunctionType:
    """tests.test_asgi's test `name`, with `make_app` and `client` bound to another adapter's."""
    test = vars(asgi_tests)[name]
    namespace = {**test.__globals__, "make_app": make_app, "client": client}
    twin = types.FunctionType(test.__code__, namespace, test.__name__, test.__defaults__, test.__closure__)
    twin.__dict__.update(test.__dict__)  # pytest marks (parametrize) travel along
    twin.__kwdefaults__ = test.__kwdefaults__
    twin.__annotations__ = test.__annotations__
    twin.__qualname__ = test.__qualname__
    twin.__module__ = module
    return twin


SHARED_TESTS = sorted(
    name
    for name, value in vars(asgi_tests).items()
    if name.startswith("test_") and isinstance(value, types.FunctionType) and name not in ASGI_ONLY
)
for _name in SHARED_TESTS:
    globals()[_name] = rebind(_name, make_wsgi_app, wsgi_client, __name__)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def test_every_shared_behaviour_test_is_rebound() -> None:
    assert len(SHARED_TESTS) >= 30
    for name in SHARED_TESTS:
        assert globals()[name].__globals__["make_app"] is make_wsgi_app


# ---- WSGI specifics ---------------------------------------------------------------------------
class Recorder:
    """A server's start_response that records calls and what the store held at that moment."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []
        self.records_at_start: list[int] = []
        self.written: list[bytes] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[..., Any]:
        if exc_info is not None and self.calls and self.headers_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.calls.append((status, headers, exc_info))
        if self.store is not None:
            self.records_at_start.append(len(self.store._entries))
        return self.written.append

    headers_sent = False

    @property
    def status(self) -> str:
        return self.calls[-1][0]

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.calls[-1][1] if n.lower() == name.lower()]


def environ(path: str = "/", cookie: str | None = None, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": "127.0.0.1",
    }
    if cookie:
        env["HTTP_COOKIE"] = cookie
    env.update(extra)
    return env


def cookie_of(recorder: Recorder) -> str:
    (header,) = recorder.header("Set-Cookie")
    return header.split(";", 1)[0]


def counting_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session = environ[ENVIRON_KEY]
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


def test_session_is_a_wsgi_session_at_the_environ_key(secret: str) -> None:
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ[ENVIRON_KEY])
        start_response("204 No Content", [])
        return []

    SessionMiddleware(app, secret=secret, store=MemoryStore())(environ(), Recorder())
    assert isinstance(seen[0], WSGISession)


def test_store_holds_the_record_when_start_response_reaches_the_server(secret: str) -> None:
    memory = MemoryStore()
    recorder = Recorder(memory)
    body = SessionMiddleware(counting_app, secret=secret, store=memory)(environ(), recorder)
    assert recorder.records_at_start == [1]  # written before the server saw the headers
    assert list(body) == [b"1"]


def test_app_that_starts_the_response_from_inside_its_generator_is_committed_first(secret: str) -> None:
    memory = MemoryStore()
    recorder = Recorder(memory)
    events: list[str] = []

    def lazy_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        environ[ENVIRON_KEY]["lazy"] = True
        events.append("before start")
        start_response("200 OK", [("Content-Type", "text/plain")])
        events.append("after start")
        yield b"chunk"

    body = SessionMiddleware(lazy_app, secret=secret, store=memory)(environ(), recorder)
    assert recorder.calls == [] and len(memory._entries) == 0  # nothing ran yet
    assert list(body) == [b"chunk"]
    assert recorder.records_at_start == [1]
    assert events == ["before start", "after start"]
    assert recorder.header("Set-Cookie")


def test_second_start_response_with_exc_info_keeps_the_session_cookie(secret: str) -> None:
    memory = MemoryStore()
    recorder = Recorder(memory)

    def failing_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[ENVIRON_KEY]["n"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("boom while rendering")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error page"]

    body = SessionMiddleware(failing_app, secret=secret, store=memory)(environ(), recorder)
    assert list(body) == [b"error page"]
    assert [c[0] for c in recorder.calls] == ["200 OK", "500 Internal Server Error"]
    assert recorder.calls[1][2] is not None  # exc_info passed on to the server
    assert recorder.header("Set-Cookie")  # the replacement headers still carry the cookie
    assert recorder.records_at_start == [1, 1]  # committed once, on the first call


def test_streaming_generator_that_raises_is_closed_and_the_error_propagates(secret: str) -> None:
    memory = MemoryStore()
    closed: list[bool] = []

    class Body:
        def __init__(self, start_response: Callable[..., Any]) -> None:
            self.start_response = start_response

        def __iter__(self) -> Iterator[bytes]:
            self.start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"first"
            raise RuntimeError("stream broke")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        environ[ENVIRON_KEY]["streamed"] = True
        return Body(start_response)

    recorder = Recorder(memory)
    body = SessionMiddleware(app, secret=secret, store=memory)(environ(), recorder)
    chunks = []
    with pytest.raises(RuntimeError, match="stream broke"):
        for chunk in body:
            chunks.append(chunk)
    body.close()  # type: ignore[attr-defined]  # what every WSGI server does
    assert chunks == [b"first"]
    assert closed == [True]
    assert recorder.records_at_start == [1]


def test_close_is_passed_through_when_the_app_started_the_response_itself(secret: str) -> None:
    closed: list[bool] = []

    class Body(list[bytes]):
        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        environ[ENVIRON_KEY]["n"] = 1
        start_response("200 OK", [])
        return Body([b"x"])

    body = SessionMiddleware(app, secret=secret, store=MemoryStore())(environ(), Recorder())
    assert isinstance(body, list)  # the app's own iterable: wsgi.file_wrapper and close() survive
    body.close()  # type: ignore[attr-defined]
    assert closed == [True]


def test_store_failure_at_a_late_start_replaces_the_body_and_closes_the_app(
    secret: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[bool] = []

    def lazy_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        environ[ENVIRON_KEY]["n"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield b"secret page"
            yield b"more"
        finally:
            closed.append(True)

    store = SQLiteStore(tmp_path / "missing-dir" / "s.db")  # cannot be created
    recorder = Recorder()
    with caplog.at_level(logging.ERROR, logger="coatcheck"):
        body = SessionMiddleware(lazy_app, secret=secret, store=store)(environ(), recorder)
        chunks = list(body)
    body.close()  # type: ignore[attr-defined]
    assert recorder.status == "503 Service Unavailable"
    assert recorder.header("Retry-After") == ["5"]
    assert chunks == [b"Service Unavailable: the session store did not answer. Please retry shortly.\n"]
    assert closed == [True]
    assert "while saving a session" in caplog.text


def test_write_callable_of_a_failed_commit_discards_the_app_body(secret: str, tmp_path: Any) -> None:
    def legacy_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[ENVIRON_KEY]["n"] = 1
        write = start_response("200 OK", [])
        write(b"private data")
        return []

    recorder = Recorder()
    store = SQLiteStore(tmp_path / "missing-dir" / "s.db")
    body = SessionMiddleware(legacy_app, secret=secret, store=store)(environ(), recorder)
    chunks = list(body)
    assert recorder.status.startswith("503")
    assert recorder.written == []
    assert chunks[0].startswith(b"Service Unavailable")


def test_sync_save_and_reload_on_the_wsgi_session(secret: str) -> None:
    memory = MemoryStore()
    recorder = Recorder(memory)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session: WSGISession = environ[ENVIRON_KEY]
        session["saved"] = 1
        session.save()  # sync twin of `await session.save()`
        environ["count_after_save"] = len(memory._entries)
        session["dropped"] = 2
        session.reload()
        environ["after_reload"] = dict(session)
        start_response("200 OK", [])
        return [b""]

    env = environ()
    SessionMiddleware(app, secret=secret, store=memory)(env, recorder)
    assert env["count_after_save"] == 1
    assert env["after_reload"] == {"saved": 1}
    assert recorder.header("Set-Cookie")  # the cookie still goes out with the response


def test_mount_point_counts_for_the_cookie_path(secret: str) -> None:
    from coatcheck import Cookie

    middleware = SessionMiddleware(
        counting_app, secret=secret, store=MemoryStore(), cookie=Cookie(path="/app")
    )
    recorder = Recorder()
    middleware(environ("/incr", SCRIPT_NAME="/app"), recorder)
    assert "Path=/app" in recorder.header("Set-Cookie")[0]


def test_gthread_style_concurrency_keeps_every_increment(secret: str) -> None:
    """Many threads, each with its own client session, through one bridge loop."""
    memory = MemoryStore()
    middleware = SessionMiddleware(counting_app, secret=secret, store=memory)
    first = Recorder()
    middleware(environ(), first)
    cookies = []
    for _ in range(8):
        recorder = Recorder()
        middleware(environ(), recorder)
        cookies.append(cookie_of(recorder))
    errors: list[BaseException] = []

    def client_thread(cookie: str) -> None:
        try:
            for _ in range(25):
                list(middleware(environ(cookie=cookie), Recorder()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client_thread, args=(c,)) for c in cookies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for cookie in cookies:
        body = middleware(environ(cookie=cookie), Recorder())
        assert list(body) == [b"27"]  # 1 (creation) + 25 + this one


def test_run_sync_from_inside_a_running_loop_uses_a_helper_thread() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def caller() -> int:
        return _sync.run_sync(answer())  # e.g. session.save() in an async Flask view

    assert asyncio.run(caller()) == 42


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_gets_its_own_loop_and_fresh_ids(secret: str, tmp_path: Any) -> None:
    db = tmp_path / "s.db"
    middleware = SessionMiddleware(counting_app, secret=secret, store=f"sqlite:///{db}")
    recorder = Recorder()
    middleware(environ(), recorder)  # the parent has a loop and a store thread now
    parent_loop = _sync._process_loop()
    parent_cookie = cookie_of(recorder)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must not touch the parent's loop, store thread or ids
        code = 1
        try:
            own = _sync._process_loop()
            child = Recorder()
            body = middleware(environ(cookie=parent_cookie), child)
            fresh = Recorder()
            middleware(environ(), fresh)
            report = f"{own is not parent_loop} {next(iter(body)).decode()} {cookie_of(fresh)}"
            os.write(write_end, report.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = os.read(read_end, 4096).decode()
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    separate_loop, count, child_cookie = report.split(" ")
    assert separate_loop == "True"
    assert count == "2"  # the child read and incremented the shared session
    assert child_cookie != parent_cookie
    # the parent's loop still works after the child is gone
    assert list(middleware(environ(cookie=parent_cookie), Recorder())) == [b"3"]
    assert _sync._process_loop() is parent_loop


def test_explicit_sync_save_writes_once_and_still_sends_the_cookie(secret: str, store: CountingStore) -> None:
    from coatcheck import Cookie

    counts: list[int] = []

    def save_early(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session: WSGISession = environ[ENVIRON_KEY]
        session["n"] = session.get("n", 0) + 1
        session.save()
        counts.append(len(store.inner._entries))  # written before the handler returns
        start_response("200 OK", [])
        return [str(session["n"]).encode()]

    middleware = SessionMiddleware(save_early, secret=secret, store=store, cookie=Cookie(max_age=600))
    first = Recorder()
    middleware(environ(), first)
    assert "Max-Age=600" in first.header("Set-Cookie")[0]
    assert store.calls == {"set": 1} and counts == [1]
    store.calls.clear()
    again = Recorder()
    assert list(middleware(environ(cookie=cookie_of(first)), again)) == [b"2"]
    assert "Max-Age=600" in again.header("Set-Cookie")[0]  # loaded, modified, persistent: refreshed
    assert store.calls == {"get": 1, "patch": 1}


# ---- CSRF for WSGI apps ---------------------------------------------------------------------
CSRF_ORIGIN = "http://testserver"


def csrf_inner_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    import json

    from werkzeug.wrappers import Request, Response

    from coatcheck.csrf import get_token

    request = Request(environ)
    session = environ[ENVIRON_KEY]
    if request.path == "/token":
        body: Any = {"token": get_token(session)}
    elif request.path == "/login":
        session.login("42")
        body = {"user": session.user_id}
    elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields: dict[str, Any] = dict(request.form.items())
        fields.update({k: {"filename": f.filename, "size": len(f.read())} for k, f in request.files.items()})
        body = {"ok": True, "form": fields}
    else:
        body = {"ok": True, "body": request.get_data().decode("latin-1")}
    return Response(json.dumps(body), mimetype="application/json")(environ, start_response)


def csrf_client(secret: str, base_url: str = CSRF_ORIGIN, **options: Any) -> httpx.Client:
    from coatcheck.wsgi import CSRFMiddleware

    options.setdefault("trusted_origins", [CSRF_ORIGIN])
    options.setdefault("exempt_paths", ["/hooks/*"])
    app = SessionMiddleware(CSRFMiddleware(csrf_inner_app, **options), secret=secret, store=MemoryStore())
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=base_url)


def csrf_token(c: httpx.Client) -> str:
    return str(c.get("/token").json()["token"])


def assert_refused(response: httpx.Response, reason: str, status: int = 403) -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-csrf-failure"] == reason
    assert f"({reason})" in response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_wsgi_csrf_safe_methods_pass_even_cross_site(secret: str, method: str) -> None:
    with csrf_client(secret) as c:
        response = c.request(method, "/submit", headers={"sec-fetch-site": "cross-site"})
    assert response.status_code == 200


def test_wsgi_csrf_form_with_token_passes_and_the_app_reads_the_whole_form(secret: str) -> None:
    with csrf_client(secret) as c:
        token = csrf_token(c)
        response = c.post("/submit", data={"csrf_token": token, "amount": "10", "to": "bob"})
    assert response.json() == {"ok": True, "form": {"csrf_token": token, "amount": "10", "to": "bob"}}


def test_wsgi_csrf_large_multipart_upload_passes_when_the_token_comes_first(secret: str) -> None:
    upload = secrets_bytes(300 * 1024)
    with csrf_client(secret, max_body_size=64 * 1024) as c:
        token = csrf_token(c)
        response = c.post("/submit", data={"csrf_token": token}, files={"file": ("big.bin", upload)})
    assert response.json()["form"]["file"] == {"filename": "big.bin", "size": len(upload)}


def test_wsgi_csrf_form_without_the_token_in_the_first_bytes_gets_413(secret: str) -> None:
    with csrf_client(secret, max_body_size=4096) as c:
        token = csrf_token(c)
        response = c.post("/submit", content=f"pad={'x' * 8000}&csrf_token={token}",
                          headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert_refused(response, "body-too-large", 413)


def test_wsgi_csrf_header_token_passes_and_the_body_is_untouched(secret: str) -> None:
    with csrf_client(secret) as c:
        token = csrf_token(c)
        response = c.post("/submit", json={"a": 1}, headers={"x-csrf-token": token, "origin": CSRF_ORIGIN})
    assert response.json() == {"ok": True, "body": '{"a":1}'}


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"json": {"a": 1}}, "token-missing"),
        ({"content": "csrf_token=abc", "headers": {"content-type": "text/plain"}}, "token-missing"),
        ({"content": b"x"}, "token-missing"),
        ({"data": {"csrf_token": "plain-unmasked"}}, "token-malformed"),
    ],
)
def test_wsgi_csrf_bodies_without_a_valid_token_are_refused(
    secret: str, kwargs: dict[str, Any], reason: str
) -> None:
    with csrf_client(secret) as c:
        csrf_token(c)
        assert_refused(c.post("/submit", **kwargs), reason)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "PROPFIND"])
def test_wsgi_csrf_every_unsafe_or_unknown_method_is_checked(secret: str, method: str) -> None:
    with csrf_client(secret) as c:
        token = csrf_token(c)
        assert_refused(c.request(method, "/submit"), "token-missing")
        assert c.request(method, "/submit", headers={"x-csrf-token": token}).status_code == 200


def test_wsgi_csrf_token_of_another_session_and_a_session_without_token(secret: str) -> None:
    with csrf_client(secret) as c, csrf_client(secret) as other:
        foreign = csrf_token(other)
        assert_refused(c.post("/submit", headers={"x-csrf-token": foreign}), "session-token-missing")
        csrf_token(c)
        assert_refused(c.post("/submit", headers={"x-csrf-token": foreign}), "token-mismatch")


def test_wsgi_csrf_login_rotates_the_token(secret: str) -> None:
    with csrf_client(secret) as c:
        before = csrf_token(c)
        assert c.post("/login", headers={"x-csrf-token": before}).status_code == 200
        assert_refused(c.post("/submit", headers={"x-csrf-token": before}), "session-token-missing")
        after = csrf_token(c)
        assert_refused(c.post("/submit", headers={"x-csrf-token": before}), "token-mismatch")
        assert c.post("/submit", headers={"x-csrf-token": after}).status_code == 200


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"sec-fetch-site": "cross-site", "origin": CSRF_ORIGIN}, "sec-fetch-site"),
        ({"origin": "http://evil.example"}, "origin-untrusted"),
        ({"origin": "null"}, "origin-null"),
        ({"origin": "http://evil.example", "host": "evil.example"}, "origin-untrusted"),  # never from Host
    ],
)
def test_wsgi_csrf_origin_rules_refuse_even_a_valid_token(
    secret: str, headers: dict[str, str], reason: str
) -> None:
    with csrf_client(secret) as c:
        token = csrf_token(c)
        assert_refused(c.post("/submit", headers={"x-csrf-token": token, **headers}), reason)


def test_wsgi_csrf_https_without_origin_needs_a_trusted_https_referer(secret: str) -> None:
    with csrf_client(secret, base_url="https://testserver", trusted_origins=["https://testserver"]) as c:
        token = csrf_token(c)
        assert_refused(c.post("/submit", headers={"x-csrf-token": token}), "referer-missing")
        ok = c.post("/submit", headers={"x-csrf-token": token, "referer": "https://testserver/form"})
        assert ok.status_code == 200


def test_wsgi_csrf_exempt_paths_skip_every_check(secret: str) -> None:
    with csrf_client(secret) as c:
        assert (
            c.post("/hooks/github", content=b"{}", headers={"origin": "http://evil.example"}).status_code
            == 200
        )
        assert_refused(c.post("/hooksmith", content=b"{}"), "token-missing")


def test_wsgi_csrf_reads_a_chunked_form_to_its_end(secret: str) -> None:
    """No Content-Length, wsgi.input_terminated (gunicorn's chunked bodies): read until EOF."""
    import io

    from coatcheck.wsgi import CSRFMiddleware

    app = SessionMiddleware(
        CSRFMiddleware(csrf_inner_app, trusted_origins=[CSRF_ORIGIN]), secret=secret, store=MemoryStore()
    )
    recorder = Recorder()
    body = b"".join(app(environ("/token"), recorder))
    cookie = cookie_of(recorder)
    token = __import__("json").loads(body)["token"]
    form = f"amount=5&csrf_token={token}".encode()
    env = environ(
        "/submit",
        cookie,
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/x-www-form-urlencoded",
        HTTP_ORIGIN=CSRF_ORIGIN,
        **{"wsgi.input": io.BytesIO(form), "wsgi.input_terminated": True},
    )
    recorder = Recorder()
    answer = b"".join(app(env, recorder))
    assert recorder.status.startswith("200"), answer


def test_wsgi_csrf_outside_session_middleware_refuses_unsafe_requests_saying_what_to_change() -> None:
    from coatcheck.wsgi import CSRFMiddleware

    app = CSRFMiddleware(csrf_inner_app, trusted_origins=[CSRF_ORIGIN])
    recorder = Recorder()
    body = b"".join(app(environ("/submit", REQUEST_METHOD="POST"), recorder))
    assert recorder.status.startswith("403")
    assert recorder.header("X-CSRF-Failure") == ["no-session"]
    assert b"(no-session)" in body and b"inside SessionMiddleware" in body


def secrets_bytes(size: int) -> bytes:
    return os.urandom(size)
