"""CSRF regressions from the security review (issue 14, items 1, 3 and 4), for the ASGI
middleware, the WSGI middleware and Flask's CSRFProtect.

1. Finding the token in a form costs work linear in the body size, whatever the chunking,
   and Flask reads no more than `max_body_size` of a form before refusing it.
3. Requests outside the session cookie's path: safe ones pass, unsafe ones get a clear 403.
4. `exempt_paths` match only normalised paths: an encoded or dot-segment path cannot borrow
   the exemption of a prefix.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from flask import Flask, request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from werkzeug.test import EnvironBuilder

from coatcheck import ConfigurationError, Cookie, CSRFMiddleware, SessionMiddleware
from coatcheck import flask as coatcheck_flask
from coatcheck import wsgi as coatcheck_wsgi
from coatcheck.csrf import get_token, mask_token, path_is_exempt
from coatcheck.session import CSRF_KEY
from coatcheck.stores import MemoryStore

ORIGIN = "http://testserver"
SECRET_TOKEN = "a-raw-session-secret-for-these-tests-0123456789"
MIB = 1024 * 1024
BOUNDARY = "hardening-boundary"
FORM = "application/x-www-form-urlencoded"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


# ---- bodies and measuring -----------------------------------------------------------------------
def form_body(kind: str, token: str, size: int = MIB) -> tuple[bytes, str]:
    """About `size` bytes of ordinary fields with the token field last (the costliest place)."""
    if kind == "urlencoded":
        fields = b"".join(b"f%05d=%s&" % (i, b"v" * 90) for i in range(size // 100))
        return fields + b"csrf_token=" + token.encode(), FORM
    part = b'--%s\r\nContent-Disposition: form-data; name="f%%05d"\r\n\r\n%s\r\n' % (
        BOUNDARY.encode(),
        b"v" * 40,
    )
    fields = b"".join(part % i for i in range(size // len(part % 0)))
    last = b'--%s\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n%s\r\n--%s--\r\n' % (
        BOUNDARY.encode(),
        token.encode(),
        BOUNDARY.encode(),
    )
    return fields + last, MULTIPART


def cpu_seconds(run: Callable[[], None]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def assert_cost_independent_of_chunking(whole: Callable[[], None], chunked: Callable[[], None]) -> None:
    """The body in 1 KiB pieces costs at most a small factor more CPU than in one piece.

    CPU time of this process (not wall time), the best of three runs of each, and a factor
    of 5 plus 50 ms: re-scanning the buffer on every piece costs hundreds of times more.
    """
    baseline = min(cpu_seconds(whole) for _ in range(3))
    bound = 5 * baseline + 0.05
    spent = math.inf
    for _ in range(3):
        spent = min(spent, cpu_seconds(chunked))
        if spent <= bound:
            return
    pytest.fail(f"1 KiB chunks cost {spent:.3f}s of CPU, one chunk {baseline:.3f}s (bound {bound:.3f}s)")


class ShortReads:
    """A `wsgi.input` that hands out at most `piece` bytes per read (like a socket) and
    counts what was read."""

    def __init__(self, body: bytes, piece: int) -> None:
        self._body = io.BytesIO(body)
        self._piece = piece
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        want = self._piece if size is None or size < 0 else min(size, self._piece)
        data = self._body.read(want)
        self.consumed += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        line = self._body.readline(self._piece if size is None or size < 0 else min(size, self._piece))
        self.consumed += len(line)
        return line


# ---- item 1: linear scanning -----------------------------------------------------------------------
async def _drain(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that reads the whole (replayed) body and answers with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def run_asgi(middleware: CSRFMiddleware, body: bytes, content_type: str, piece: int) -> tuple[int, bytes]:
    import asyncio

    chunks = [body[i : i + piece] for i in range(0, len(body), piece)]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[Any] = []

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/submit",
        "scheme": "http",
        "headers": [(b"content-type", content_type.encode()), (b"origin", ORIGIN.encode())],
        "session": {CSRF_KEY: SECRET_TOKEN},
    }
    asyncio.run(middleware(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_asgi_form_scan_cost_is_linear_whatever_the_chunking(kind: str) -> None:
    body, content_type = form_body(kind, mask_token(SECRET_TOKEN))
    middleware = CSRFMiddleware(_drain, trusted_origins=[ORIGIN], max_body_size=2 * MIB)
    assert run_asgi(middleware, body, content_type, 1024) == (200, str(len(body)).encode())

    assert_cost_independent_of_chunking(
        lambda: run_asgi(middleware, body, content_type, len(body)),
        lambda: run_asgi(middleware, body, content_type, 1024),
    )


def _wsgi_drain(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    size = len(environ["wsgi.input"].read())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(size).encode()]


def run_wsgi(app: Any, body: bytes, content_type: str, piece: int, **extra: Any) -> tuple[str, bytes]:
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/submit",
        "SCRIPT_NAME": "",
        "wsgi.url_scheme": "http",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_ORIGIN": ORIGIN,
        "wsgi.input": ShortReads(body, piece),
        coatcheck_wsgi.ENVIRON_KEY: {CSRF_KEY: SECRET_TOKEN},
        **extra,
    }
    out = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0], out


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_wsgi_form_scan_cost_is_linear_whatever_the_chunking(kind: str) -> None:
    body, content_type = form_body(kind, mask_token(SECRET_TOKEN))
    app = coatcheck_wsgi.CSRFMiddleware(_wsgi_drain, trusted_origins=[ORIGIN], max_body_size=2 * MIB)
    assert run_wsgi(app, body, content_type, 1024) == ("200 OK", str(len(body)).encode())

    assert_cost_independent_of_chunking(
        lambda: run_wsgi(app, body, content_type, len(body)),
        lambda: run_wsgi(app, body, content_type, 1024),
    )


def flask_app(secret: str, **csrf: Any) -> Flask:
    app = Flask(__name__)
    coatcheck_flask.Session(app, secret=secret, store=MemoryStore())
    coatcheck_flask.CSRFProtect(app, trusted_origins=[ORIGIN], **csrf)

    @app.get("/token")
    def token() -> str:
        return coatcheck_flask.generate_csrf()

    @app.post("/submit")
    def submit() -> str:
        return str(len(request.get_data()))

    @app.post("/upload")
    def upload() -> dict[str, Any]:
        files = {name: len(f.read()) for name, f in request.files.items()}
        return {"files": files, "token_field": "csrf_token" in request.form}

    return app


def run_flask(app: Flask, environ: dict[str, Any]) -> tuple[str, bytes]:
    statuses: list[str] = []
    out = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0], out


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_flask_form_scan_cost_is_linear_whatever_the_chunking(secret: str, kind: str) -> None:
    app = flask_app(secret, max_body_size=2 * MIB)
    client = app.test_client()
    token = client.get("/token").get_data(as_text=True)
    cookie = client.get_cookie("session")
    assert cookie is not None
    body, content_type = form_body(kind, token)

    def post(piece: int) -> tuple[str, bytes]:
        environ = EnvironBuilder(
            path="/submit",
            method="POST",
            data=body,
            content_type=content_type,
            headers={"Origin": ORIGIN, "Cookie": f"session={cookie.value}"},
        ).get_environ()
        environ["wsgi.input"] = ShortReads(body, piece)
        return run_flask(app, environ)

    assert post(1024) == ("200 OK", str(len(body)).encode())
    assert_cost_independent_of_chunking(lambda: post(len(body)), lambda: post(1024))


def multipart(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_flask_reads_at_most_max_body_size_of_a_form_before_refusing_it(secret: str) -> None:
    limit = 64 * 1024
    app = flask_app(secret, max_body_size=limit)
    client = app.test_client()
    token = client.get("/token").get_data(as_text=True)
    cookie = client.get_cookie("session")
    assert cookie is not None
    body = multipart(("file", b"x" * (4 * MIB), "big.bin"), ("csrf_token", token.encode(), None))
    environ = EnvironBuilder(
        path="/upload",
        method="POST",
        data=body,
        content_type=MULTIPART,
        headers={"Origin": ORIGIN, "Cookie": f"session={cookie.value}"},
    ).get_environ()
    stream = ShortReads(body, 64 * 1024)
    environ["wsgi.input"] = stream
    status, text = run_flask(app, environ)
    assert status.startswith("413")
    assert b"(body-too-large)" in text
    assert stream.consumed <= limit + 1  # never spooled the 4 MiB upload


def test_flask_upload_with_the_token_first_reaches_the_view_intact(secret: str) -> None:
    app = flask_app(secret, max_body_size=64 * 1024)
    client = app.test_client()
    token = client.get("/token").get_data(as_text=True)
    body = multipart(("csrf_token", token.encode(), None), ("file", b"y" * MIB, "big.bin"))
    response = client.post("/upload", data=body, content_type=MULTIPART, headers={"Origin": ORIGIN})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"files": {"file": MIB}, "token_field": True}


# ---- item 3: outside the session cookie's path --------------------------------------------------
async def _token(request: Request) -> Response:
    return JSONResponse({"token": get_token(request.session)})


async def _ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def path_limited_asgi_app(secret: str, cookie_path: str = "/app") -> Starlette:
    methods = ["GET", "POST"]
    return Starlette(
        routes=[
            Route("/app/token", _token),
            Route("/app/submit", _ok, methods=methods),
            Route("/health", _ok, methods=methods),
            Route("/static/site.css", _ok, methods=methods),
            Route("/hooks/in", _ok, methods=methods),
        ],
        middleware=[
            Middleware(
                SessionMiddleware, secret=secret, store=MemoryStore(), cookie=Cookie(path=cookie_path)
            ),
            Middleware(CSRFMiddleware, trusted_origins=[ORIGIN], exempt_paths=["/hooks/*"]),
        ],
    )


def assert_no_session_refusal(status: int, headers: Any, text: str) -> None:
    assert status == 403, text
    assert headers["x-csrf-failure"] == "no-session"
    assert "outside the session cookie's path" in text


async def test_asgi_outside_the_cookie_path_safe_requests_pass_and_unsafe_ones_get_403(secret: str) -> None:
    app = path_limited_asgi_app(secret)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as c:
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/static/site.css")).status_code == 200
        response = await c.post("/health", headers={"origin": ORIGIN})
        assert_no_session_refusal(response.status_code, response.headers, response.text)
        assert (await c.post("/hooks/in")).status_code == 200  # explicit exemptions still apply
        token = (await c.get("/app/token")).json()["token"]
        ok = await c.post("/app/submit", headers={"origin": ORIGIN, "x-csrf-token": token})
        assert ok.status_code == 200


def _wsgi_routes(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session = environ.get(coatcheck_wsgi.ENVIRON_KEY)
    body = (
        get_token(session).encode() if environ["PATH_INFO"] == "/app/token" and session is not None else b"ok"
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def test_wsgi_outside_the_cookie_path_safe_requests_pass_and_unsafe_ones_get_403(secret: str) -> None:
    inner = coatcheck_wsgi.CSRFMiddleware(_wsgi_routes, trusted_origins=[ORIGIN], exempt_paths=["/hooks/*"])
    app = coatcheck_wsgi.SessionMiddleware(
        inner, secret=secret, store=MemoryStore(), cookie=Cookie(path="/app")
    )
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ORIGIN) as c:
        assert c.get("/health").status_code == 200
        response = c.post("/health", headers={"origin": ORIGIN})
        assert_no_session_refusal(response.status_code, response.headers, response.text)
        assert c.post("/hooks/in").status_code == 200
        token = c.get("/app/token").text
        assert c.post("/app/submit", headers={"origin": ORIGIN, "x-csrf-token": token}).status_code == 200


def test_flask_outside_the_cookie_path_unsafe_requests_get_403(secret: str) -> None:
    app = Flask(__name__)
    app.config["SESSION_COOKIE_PATH"] = "/app"
    coatcheck_flask.Session(app, secret=secret, store=MemoryStore())
    coatcheck_flask.CSRFProtect(app, trusted_origins=[ORIGIN])
    app.add_url_rule("/health", "health", lambda: "ok", methods=["GET", "POST"])
    client = app.test_client()
    assert client.get("/health").status_code == 200
    response = client.post("/health", headers={"Origin": ORIGIN})
    assert_no_session_refusal(response.status_code, response.headers, response.get_data(as_text=True))


# ---- item 4: exempt paths are matched on normalised paths ------------------------------------
@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/hooks/github", True),
        ("/hooks", True),
        ("/webhook", True),
        ("/hooks%2F..%2Fadmin", False),
        ("/hooks%252F..%252Fadmin", False),
        ("/hooks/../admin", False),
        ("/hooks/./github", False),
        ("/hooks//github", False),
        ("//hooks/github", False),
        ("/hooks\\..\\admin", False),
        ("/webhook/", False),
        ("/hooksmith", False),
    ],
)
def test_exempt_paths_match_only_normalised_paths(path: str, exempt: bool) -> None:
    assert path_is_exempt(path, ("/webhook", "/hooks/*")) is exempt


def test_exempt_path_entries_must_be_normalised() -> None:
    with pytest.raises(ConfigurationError, match="normalised path"):
        CSRFMiddleware(Starlette(), trusted_origins=[ORIGIN], exempt_paths=["/hooks/../admin/*"])


async def test_asgi_encoded_dot_segments_do_not_borrow_an_exempt_prefix(secret: str) -> None:
    app = path_limited_asgi_app(secret, cookie_path="/")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as c:
        response = await c.post("/hooks%2F..%2Fadmin", headers={"origin": ORIGIN})
        assert response.status_code == 403
        assert response.headers["x-csrf-failure"] == "token-missing"
        assert (await c.post("/hooks/in", headers={"origin": ORIGIN})).status_code == 200


def test_wsgi_encoded_dot_segments_do_not_borrow_an_exempt_prefix(secret: str) -> None:
    inner = coatcheck_wsgi.CSRFMiddleware(_wsgi_routes, trusted_origins=[ORIGIN], exempt_paths=["/hooks/*"])
    app = coatcheck_wsgi.SessionMiddleware(inner, secret=secret, store=MemoryStore())
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ORIGIN) as c:
        response = c.post("/hooks%2F..%2Fadmin", headers={"origin": ORIGIN})
        assert response.status_code == 403
        assert response.headers["x-csrf-failure"] == "token-missing"
        assert c.post("/hooks/in", headers={"origin": ORIGIN}).status_code == 200
