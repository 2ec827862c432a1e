"""CSRF protection over HTTP: httpx -> Starlette/FastAPI -> SessionMiddleware -> CSRFMiddleware.

Every rule is exercised as a request a browser (or an attacker's page) would send; the pure
decision functions get a table test of their own at the end.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from coatcheck import ConfigurationError, CSRFMiddleware, SessionMiddleware
from coatcheck.csrf import (
    CSRFPolicy,
    CSRFRequest,
    check_request,
    check_token,
    csrf_exempt,
    evaluate,
    find_form_token,
    get_token,
    mask_token,
    normalize_origin,
    path_is_exempt,
    tokens_match,
    unmask_token,
)
from coatcheck.session import CSRF_KEY
from coatcheck.stores import MemoryStore

ORIGIN = "http://testserver"
HTTPS_ORIGIN = "https://testserver"
UNSAFE = ["POST", "PUT", "PATCH", "DELETE", "PROPFIND", "post"]


# ---- the app under test ---------------------------------------------------------------------
async def token(request: Request) -> Response:
    return JSONResponse({"token": get_token(request.session)})


async def submit(request: Request) -> Response:
    """Echo what the app received, to prove the middleware replayed the body intact."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        fields = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
            else:
                fields[key] = {"filename": value.filename, "size": len(await value.read())}
        return JSONResponse({"ok": True, "form": fields})
    body = await request.body()
    return JSONResponse({"ok": True, "body": body.decode("latin-1")})


async def login(request: Request) -> Response:
    request.session.login("42")
    return JSONResponse({"user": request.session.user_id})


async def set_value(request: Request) -> Response:
    request.session["value"] = "x"
    return JSONResponse({"ok": True})


@csrf_exempt
async def webhook(request: Request) -> Response:
    return JSONResponse({"hook": (await request.body()).decode()})


@csrf_exempt
class ExemptEndpoint(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        return JSONResponse({"endpoint": True})


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


ALL_METHODS = ["GET", "HEAD", "OPTIONS", "TRACE", "POST", "PUT", "PATCH", "DELETE", "PROPFIND", "post"]

ROUTES = [
    Route("/token", token),
    Route("/submit", submit, methods=ALL_METHODS),
    Route("/login", login, methods=["POST"]),
    Route("/set", set_value, methods=["GET"]),
    Route("/hook", webhook, methods=["POST"]),
    Route("/hooks/github", submit, methods=["POST"]),
    Route("/hooksmith", submit, methods=["POST"]),
    Route("/endpoint", ExemptEndpoint),
    Mount(
        "/sub", routes=[Route("/hook", webhook, methods=["POST"]), Route("/form", submit, methods=["POST"])]
    ),
    Mount("/ext", app=csrf_exempt(Starlette(routes=[Route("/in", submit, methods=["POST"])]))),
    WebSocketRoute("/ws", ws),
]


def make_app(*, store: Any = None, secret: str, **csrf: Any) -> Starlette:
    csrf.setdefault("trusted_origins", [ORIGIN])
    return Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(SessionMiddleware, secret=secret, store=store or MemoryStore()),
            Middleware(CSRFMiddleware, **csrf),
        ],
    )


def client(app: Any, base_url: str = ORIGIN) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


async def fetch_token(c: httpx.AsyncClient) -> str:
    response = await c.get("/token")
    assert response.status_code == 200
    return str(response.json()["token"])


def refused(response: httpx.Response, reason: str, status: int = 403) -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-csrf-failure"] == reason
    assert f"({reason})" in response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.fixture
def app(secret: str) -> Starlette:
    return make_app(secret=secret, exempt_paths=["/hooks/*"])


# ---- safe methods -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
async def test_safe_methods_need_no_token_even_cross_site(app: Starlette, method: str) -> None:
    async with client(app) as c:
        response = await c.request(
            method, "/submit", headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"}
        )
    assert response.status_code == 200
    assert "x-csrf-failure" not in response.headers


async def test_safe_request_creates_no_session(app: Starlette) -> None:
    async with client(app) as c:
        response = await c.get("/submit")
    assert response.headers.get_list("set-cookie") == []


# ---- the token: header and form field ---------------------------------------------------------
async def test_urlencoded_form_with_masked_token_passes_and_app_gets_the_whole_form(app: Starlette) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        response = await c.post(
            "/submit", data={"title": "a&b=c", "csrf_token": token, "after": "é"}, headers={"origin": ORIGIN}
        )
    assert response.status_code == 200, response.text
    assert response.json()["form"] == {"title": "a&b=c", "csrf_token": token, "after": "é"}


async def test_multipart_form_with_token_passes_and_file_reaches_app(app: Starlette) -> None:
    payload = bytes(range(256)) * 40
    async with client(app) as c:
        token = await fetch_token(c)
        response = await c.post(
            "/submit",
            data={"csrf_token": token, "note": "hi"},
            files={"upload": ("a.bin", payload, "application/octet-stream")},
            headers={"origin": ORIGIN},
        )
    assert response.status_code == 200, response.text
    assert response.json()["form"] == {
        "csrf_token": token,
        "note": "hi",
        "upload": {"filename": "a.bin", "size": len(payload)},
    }


async def test_streamed_multipart_upload_larger_than_the_buffer_passes_when_token_comes_first(
    secret: str,
) -> None:
    """The middleware stops reading once the field is whole, so the upload is not capped."""
    app = make_app(secret=secret, max_body_size=64 * 1024)
    boundary = "----coatcheckboundary"
    async with client(app) as c:
        token = await fetch_token(c)
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="upload"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        chunk = b"x" * 16384
        count = 64  # 1 MiB of file, 16x the buffer limit

        async def body() -> AsyncIterator[bytes]:
            yield head
            for _ in range(count):
                yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()

        response = await c.post(
            "/submit",
            content=body(),
            headers={"origin": ORIGIN, "content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["form"]["upload"] == {"filename": "big.bin", "size": len(chunk) * count}


async def test_form_without_the_token_in_the_buffered_prefix_gets_413(secret: str) -> None:
    app = make_app(secret=secret, max_body_size=4096)
    async with client(app) as c:
        token = await fetch_token(c)
        response = await c.post(
            "/submit", data={"filler": "y" * 10_000, "csrf_token": token}, headers={"origin": ORIGIN}
        )
        refused(response, "body-too-large", 413)
        # the same form with the token first is fine: the field is found before the limit
        response = await c.post(
            "/submit",
            content=f"csrf_token={token}&filler={'y' * 10_000}",
            headers={"origin": ORIGIN, "content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text


async def test_header_token_with_json_body_passes_and_body_is_untouched(app: Starlette) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        response = await c.post("/submit", json={"a": 1}, headers={"x-csrf-token": token, "origin": ORIGIN})
    assert response.status_code == 200
    assert response.json()["body"] == '{"a":1}'


async def test_json_post_without_token_is_refused_even_from_a_trusted_origin(app: Starlette) -> None:
    async with client(app) as c:
        await fetch_token(c)
        response = await c.post("/submit", json={"a": 1}, headers={"origin": ORIGIN})
    refused(response, "token-missing")


async def test_text_plain_post_is_checked_and_its_body_is_not_a_form(app: Starlette) -> None:
    """A cross-site form can send text/plain "csrf_token=..."; that is never read as a form."""
    async with client(app) as c:
        token = await fetch_token(c)
        response = await c.post(
            "/submit",
            content=f"csrf_token={token}",
            headers={"content-type": "text/plain", "origin": ORIGIN},
        )
    refused(response, "token-missing")


async def test_post_without_content_type_is_checked(app: Starlette) -> None:
    async with client(app) as c:
        await fetch_token(c)
        response = await c.post("/submit", content=b"anything")
    refused(response, "token-missing")


@pytest.mark.parametrize("method", UNSAFE)
async def test_every_unsafe_or_unknown_method_is_checked(app: Starlette, method: str) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        refused(await c.request(method, "/submit", headers={"origin": ORIGIN}), "token-missing")
        allowed = await c.request(method, "/submit", headers={"origin": ORIGIN, "x-csrf-token": token})
    assert allowed.status_code == 200, allowed.text


async def test_token_is_masked_freshly_on_every_render_and_each_verifies(app: Starlette) -> None:
    async with client(app) as c:
        first, second = await fetch_token(c), await fetch_token(c)
        assert first != second
        for token in (first, second):
            response = await c.post("/submit", headers={"x-csrf-token": token, "origin": ORIGIN})
            assert response.status_code == 200


async def test_unmasked_session_token_is_refused(secret: str) -> None:
    store = MemoryStore()
    app = make_app(secret=secret, store=store)
    async with client(app) as c:
        await fetch_token(c)
        (key,) = [info.storage_key for info in await store.list_sessions()]
        raw = (await store.get(key)).data[CSRF_KEY]
        response = await c.post("/submit", headers={"x-csrf-token": raw, "origin": ORIGIN})
    refused(response, "token-malformed")


async def test_token_from_another_session_is_refused(app: Starlette) -> None:
    async with client(app) as attacker, client(app) as victim:
        attackers_token = await fetch_token(attacker)
        await fetch_token(victim)
        response = await victim.post("/submit", headers={"x-csrf-token": attackers_token, "origin": ORIGIN})
        refused(response, "token-mismatch")
        response = await victim.post(
            "/submit", data={"csrf_token": attackers_token}, headers={"origin": ORIGIN}
        )
        refused(response, "token-mismatch")


async def test_session_without_token_is_refused_clearly(app: Starlette) -> None:
    async with client(app) as c, client(app) as other:
        await c.get("/set")  # a session, but no token was ever rendered in it
        response = await c.post(
            "/submit", headers={"x-csrf-token": await fetch_token(other), "origin": ORIGIN}
        )
    refused(response, "session-token-missing")


async def test_token_is_rotated_by_login_and_the_old_one_is_refused(app: Starlette) -> None:
    async with client(app) as c:
        before = await fetch_token(c)
        response = await c.post("/login", data={"csrf_token": before}, headers={"origin": ORIGIN})
        assert response.json() == {"user": "42"}
        refused(
            await c.post("/submit", headers={"x-csrf-token": before, "origin": ORIGIN}),
            "session-token-missing",
        )
        after = await fetch_token(c)
        refused(await c.post("/submit", headers={"x-csrf-token": before, "origin": ORIGIN}), "token-mismatch")
        assert (await c.post("/submit", headers={"x-csrf-token": after, "origin": ORIGIN})).status_code == 200


async def test_refusal_never_echoes_a_token(app: Starlette) -> None:
    async with client(app) as c, client(app) as other:
        mine = await fetch_token(c)
        foreign = await fetch_token(other)
        response = await c.post("/submit", headers={"x-csrf-token": foreign, "origin": ORIGIN})
    refused(response, "token-mismatch")
    for secret_value in (mine, foreign, unmask_token(mine).decode()):  # type: ignore[union-attr]
        assert secret_value not in response.text
        assert all(secret_value not in value for value in response.headers.values())


# ---- Sec-Fetch-Site, Origin and Referer --------------------------------------------------------
async def test_cross_site_form_post_is_refused_even_with_a_valid_token(app: Starlette) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        response = await c.post(
            "/submit",
            data={"csrf_token": token},
            headers={"origin": ORIGIN, "sec-fetch-site": "cross-site"},
        )
    refused(response, "sec-fetch-site")


@pytest.mark.parametrize("site", ["same-origin", "same-site", "none"])
async def test_other_sec_fetch_site_values_pass_on_to_the_origin_check(app: Starlette, site: str) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        ok = await c.post(
            "/submit", headers={"x-csrf-token": token, "origin": ORIGIN, "sec-fetch-site": site}
        )
        foreign = await c.post(
            "/submit",
            headers={"x-csrf-token": token, "origin": "http://evil.example", "sec-fetch-site": site},
        )
    assert ok.status_code == 200
    refused(foreign, "origin-untrusted")


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "https://testserver",  # other scheme
        "http://testserver:8080",  # other port
        "http://testserver.evil.example",
        "http://sub.testserver",
    ],
)
async def test_foreign_origin_is_refused_even_with_a_valid_token(app: Starlette, origin: str) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        response = await c.post("/submit", data={"csrf_token": token}, headers={"origin": origin})
    refused(response, "origin-untrusted")


async def test_trusted_origin_is_never_derived_from_the_host_header(app: Starlette) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        response = await c.post(
            "/submit",
            headers={"x-csrf-token": token, "origin": "http://evil.example", "host": "evil.example"},
        )
    refused(response, "origin-untrusted")


async def test_null_and_malformed_and_repeated_origins_are_refused(app: Starlette) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        refused(await c.post("/submit", headers={"x-csrf-token": token, "origin": "null"}), "origin-null")
        refused(
            await c.post("/submit", headers={"x-csrf-token": token, "origin": "http://testserver/path"}),
            "origin-malformed",
        )
        response = await c.post(
            "/submit",
            headers=[("x-csrf-token", token), ("origin", ORIGIN), ("origin", "http://evil.example")],
        )
        refused(response, "origin-malformed")


async def test_plain_http_without_origin_or_referer_relies_on_the_token(app: Starlette) -> None:
    async with client(app) as c:
        token = await fetch_token(c)
        assert (await c.post("/submit", headers={"x-csrf-token": token})).status_code == 200
        refused(await c.post("/submit"), "token-missing")
        refused(
            await c.post("/submit", headers={"x-csrf-token": token, "referer": "http://evil.example/x"}),
            "referer-untrusted",
        )


@pytest.fixture
def https_app(secret: str) -> Starlette:
    return make_app(secret=secret, trusted_origins=[HTTPS_ORIGIN])


async def test_https_without_origin_requires_a_trusted_https_referer(https_app: Starlette) -> None:
    async with client(https_app, HTTPS_ORIGIN) as c:
        token = await fetch_token(c)
        headers = {"x-csrf-token": token}
        refused(await c.post("/submit", headers=headers), "referer-missing")
        refused(
            await c.post("/submit", headers={**headers, "referer": "https://evil.example/form"}),
            "referer-untrusted",
        )
        refused(
            await c.post("/submit", headers={**headers, "referer": "http://testserver/form"}),
            "referer-insecure",
        )
        refused(await c.post("/submit", headers={**headers, "referer": "not a url"}), "referer-malformed")
        ok = await c.post("/submit", headers={**headers, "referer": "https://testserver/form?x=1"})
        assert ok.status_code == 200, ok.text
        assert (await c.post("/submit", headers={**headers, "origin": HTTPS_ORIGIN})).status_code == 200


async def test_https_behind_a_trusted_proxy_follows_the_session_setting(secret: str) -> None:
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(SessionMiddleware, secret=secret, store=MemoryStore(), trust_proxy=True),
            Middleware(CSRFMiddleware, trusted_origins=[HTTPS_ORIGIN]),
        ],
    )
    async with client(app) as c:  # plain HTTP to the app, HTTPS at the proxy
        c.headers["x-forwarded-proto"] = "https"
        response = await c.get("/token")
        token = response.json()["token"]
        # the cookie is Secure, so httpx keeps it from this http:// URL: send it by hand
        c.headers["cookie"] = response.headers["set-cookie"].split(";", 1)[0]
        refused(await c.post("/submit", headers={"x-csrf-token": token}), "referer-missing")
        ok = await c.post("/submit", headers={"x-csrf-token": token, "referer": "https://testserver/"})
        assert ok.status_code == 200, ok.text
    async with client(app) as c:  # the same request without the proxy header is plain HTTP
        c.headers["cookie"] = response.headers["set-cookie"].split(";", 1)[0]
        assert (await c.post("/submit", headers={"x-csrf-token": token})).status_code == 200


async def test_default_port_in_trusted_origins_matches_the_browser_form(secret: str) -> None:
    app = make_app(secret=secret, trusted_origins=["HTTPS://TestServer:443/"])
    async with client(app, HTTPS_ORIGIN) as c:
        token = await fetch_token(c)
        response = await c.post("/submit", headers={"x-csrf-token": token, "origin": "https://testserver"})
    assert response.status_code == 200


# ---- exemptions -----------------------------------------------------------------------------
async def test_exempt_path_prefix_skips_every_check(app: Starlette) -> None:
    async with client(app) as c:
        response = await c.post(
            "/hooks/github",
            content=b"{}",
            headers={"origin": "https://github.com", "sec-fetch-site": "cross-site"},
        )
        assert response.status_code == 200
        refused(await c.post("/hooksmith", content=b"{}"), "token-missing")  # not under /hooks/


async def test_decorated_starlette_endpoints_are_exempt(app: Starlette) -> None:
    async with client(app) as c:
        response = await c.post("/hook", content=b"payload", headers={"origin": "https://github.com"})
        assert response.json() == {"hook": "payload"}
        assert (await c.post("/endpoint")).json() == {"endpoint": True}
        assert (await c.post("/sub/hook", content=b"x")).json() == {"hook": "x"}
        assert (await c.post("/ext/in", content=b"y")).json() == {"ok": True, "body": "y"}
        refused(await c.post("/sub/form", content=b"x"), "token-missing")


async def test_decorated_fastapi_route_is_exempt_and_others_are_not(secret: str) -> None:
    api = FastAPI()

    @api.post("/hook")
    @csrf_exempt
    async def hook() -> dict[str, bool]:
        return {"hook": True}

    @csrf_exempt  # either decorator order works
    @api.post("/hook2")
    async def hook2() -> dict[str, bool]:
        return {"hook2": True}

    @api.post("/items")
    async def items() -> dict[str, bool]:
        return {"created": True}

    api.add_middleware(CSRFMiddleware, trusted_origins=[ORIGIN])
    api.add_middleware(SessionMiddleware, secret=secret, store=MemoryStore())
    async with client(api) as c:
        assert (await c.post("/hook", json={})).json() == {"hook": True}
        assert (await c.post("/hook2", json={})).json() == {"hook2": True}
        refused(await c.post("/items", json={}), "token-missing")


async def test_exemption_is_never_implied_by_content_type(app: Starlette) -> None:
    async with client(app) as c:
        await fetch_token(c)
        for content_type in ("application/json", "application/octet-stream", "text/plain", "application/xml"):
            refused(
                await c.post("/submit", content=b"x", headers={"content-type": content_type}), "token-missing"
            )


async def test_hand_composed_asgi_stack_resolves_decorated_endpoints(secret: str) -> None:
    inner = Starlette(routes=ROUTES)
    app = SessionMiddleware(
        CSRFMiddleware(inner, trusted_origins=[ORIGIN]), secret=secret, store=MemoryStore()
    )
    async with client(app) as c:
        assert (await c.post("/hook", content=b"ok")).json() == {"hook": "ok"}
        refused(await c.post("/submit", content=b"x"), "token-missing")


# ---- client-side sessions -----------------------------------------------------------------------
async def test_csrf_works_with_client_side_sessions(secret: str) -> None:
    """The token lives in the sealed cookie: no server-side record exists at all."""
    from coatcheck.stores import CookieStore

    app = make_app(secret=secret, store=CookieStore())
    async with client(app) as c, client(app) as other:
        response = await c.get("/token")
        token = response.json()["token"]
        raw = unmask_token(token)
        assert raw is not None
        (cookie_header,) = response.headers.get_list("set-cookie")
        assert raw.decode() not in cookie_header  # sealed: the token cannot be read from the cookie
        assert (
            await c.post("/submit", data={"csrf_token": token}, headers={"origin": ORIGIN})
        ).status_code == 200

        foreign = await fetch_token(other)
        refused(
            await c.post("/submit", headers={"x-csrf-token": foreign, "origin": ORIGIN}), "token-mismatch"
        )

        await c.post("/login", headers={"x-csrf-token": token, "origin": ORIGIN})
        refused(await c.post("/submit", headers={"x-csrf-token": token}), "session-token-missing")
        fresh = await fetch_token(c)
        refused(await c.post("/submit", headers={"x-csrf-token": token}), "token-mismatch")
        assert (await c.post("/submit", headers={"x-csrf-token": fresh})).status_code == 200


# ---- wiring and configuration ------------------------------------------------------------------
async def test_missing_session_middleware_refuses_unsafe_requests_saying_what_to_change(secret: str) -> None:
    # Without a session, CSRFMiddleware cannot tell a missing SessionMiddleware from a path
    # outside the cookie path: safe requests pass, unsafe ones get a 403 that names both fixes.
    app = Starlette(routes=ROUTES, middleware=[Middleware(CSRFMiddleware, trusted_origins=[ORIGIN])])
    async with client(app) as c:
        assert (await c.get("/submit")).status_code == 200
        response = await c.post("/submit", headers={"origin": ORIGIN})
    refused(response, "no-session")
    assert "inside SessionMiddleware" in response.text


async def test_wrong_middleware_order_refuses_unsafe_requests_saying_what_to_change(secret: str) -> None:
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, secret=secret, store=MemoryStore())
    app.add_middleware(CSRFMiddleware, trusted_origins=[ORIGIN])  # added last: runs first, too early
    async with client(app) as c:
        response = await c.post("/submit", headers={"origin": ORIGIN})
    refused(response, "no-session")
    assert "add_middleware(CSRFMiddleware, ...) before add_middleware(SessionMiddleware" in response.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trusted_origins": []}, "needs trusted_origins"),
        ({"trusted_origins": ["example.com"]}, "is not an origin"),
        ({"trusted_origins": ["https://example.com/app"]}, "is not an origin"),
        ({"trusted_origins": ["https://*.example.com"]}, "no wildcard"),
        ({"trusted_origins": ["ftp://example.com"]}, "is not an origin"),
        ({"trusted_origins": [ORIGIN], "max_body_size": 10}, "max_body_size"),
        ({"trusted_origins": [ORIGIN], "field_name": "bad name"}, "field_name"),
        ({"trusted_origins": [ORIGIN], "header_name": "X CSRF"}, "header_name"),
        ({"trusted_origins": [ORIGIN], "exempt_paths": ["hooks"]}, "exact path"),
        ({"trusted_origins": [ORIGIN], "exempt_paths": ["/hooks*"]}, "exact path"),
        ({"trusted_origins": [ORIGIN], "trust_proxy": "yes"}, "trust_proxy"),
    ],
)
def test_bad_configuration_says_what_to_change(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CSRFMiddleware(Starlette(), **options)


async def test_custom_field_and_header_names(secret: str) -> None:
    app = make_app(secret=secret, field_name="_token", header_name="X-XSRF-TOKEN")
    async with client(app) as c:
        token = await fetch_token(c)
        assert (await c.post("/submit", data={"_token": token})).status_code == 200
        assert (await c.post("/submit", headers={"x-xsrf-token": token})).status_code == 200
        refused(await c.post("/submit", headers={"x-csrf-token": token}), "token-missing")


async def test_client_disconnect_while_reading_the_form_reaches_no_handler() -> None:
    reached: list[str] = []
    sent: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    messages = [{"type": "http.request", "body": b"a=1&", "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/submit",
        "scheme": "http",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "session": {CSRF_KEY: "t"},
    }
    await CSRFMiddleware(inner, trusted_origins=[ORIGIN])(scope, receive, send)
    assert reached == [] and sent == [] and messages == []


# ---- WebSockets ------------------------------------------------------------------------------
def test_websocket_from_untrusted_origin_is_refused(secret: str) -> None:
    app = make_app(secret=secret)
    with TestClient(app) as c:
        with c.websocket_connect("/ws", headers={"origin": ORIGIN}) as ws:
            assert ws.receive_text() == "hello"
        with c.websocket_connect("/ws") as ws:  # no Origin: not a browser
            assert ws.receive_text() == "hello"
        with (
            pytest.raises(WebSocketDisconnect) as refused_ws,
            c.websocket_connect("/ws", headers={"origin": "https://evil.example"}) as ws,
        ):
            ws.receive_text()
        assert refused_ws.value.code == 1008


# ---- the pure functions ------------------------------------------------------------------------
POLICY = CSRFPolicy.build(trusted_origins=["https://app.example", "https://admin.example:8443"])


def facts(**overrides: Any) -> CSRFRequest:
    values: dict[str, Any] = {"method": "POST", "path": "/", "secure": True}
    values.update(overrides)
    if values.get("origin") is not None:
        values.setdefault("origin_count", 1)
    return CSRFRequest(**values)


@pytest.mark.parametrize(
    ("request_facts", "expected"),
    [
        (facts(method="GET", origin="https://evil.example"), "safe-method"),
        (facts(method="TRACE", sec_fetch_site="cross-site"), "safe-method"),
        (facts(origin="https://app.example", sec_fetch_site="cross-site"), "sec-fetch-site"),
        (facts(origin="https://app.example"), None),
        (facts(origin="https://admin.example:8443", sec_fetch_site="same-site"), None),
        (facts(origin="https://admin.example"), "origin-untrusted"),
        (facts(origin="null"), "origin-null"),
        (facts(origin="https://app.example", origin_count=2), "origin-malformed"),
        (facts(), "referer-missing"),
        (facts(secure=False), None),
        (facts(referer="https://app.example/a/b?c"), None),
        (facts(referer="http://app.example/"), "referer-insecure"),
        (facts(secure=False, referer="http://app.example/"), "referer-untrusted"),
        (facts(referer="//app.example/"), "referer-malformed"),
        (facts(path="/x", origin="https://evil.example"), "origin-untrusted"),
    ],
)
def test_check_request_table(request_facts: CSRFRequest, expected: str | None) -> None:
    verdict = check_request(request_facts, POLICY)
    assert (verdict.reason if verdict is not None else None) == expected
    if verdict is not None:
        assert verdict.allowed == (expected == "safe-method")


def test_explicit_exemption_wins_over_every_other_rule() -> None:
    verdict = check_request(
        facts(origin="https://evil.example", sec_fetch_site="cross-site"), POLICY, exempt=True
    )
    assert verdict is not None and verdict.allowed and verdict.reason == "exempt"


def test_evaluate_combines_origin_and_token_with_header_winning() -> None:
    token = "session-token-value"
    good, bad = mask_token(token), mask_token("another-token-value")
    ok = facts(origin="https://app.example", header_token=good)
    assert evaluate(ok, POLICY, session_token=token).reason == "token-valid"
    assert evaluate(facts(origin="https://app.example"), POLICY, session_token=token, form_token=good).allowed
    header_wins = facts(origin="https://app.example", header_token=bad)
    assert evaluate(header_wins, POLICY, session_token=token, form_token=good).reason == "token-mismatch"
    assert check_token(token, None, POLICY).reason == "token-missing"
    assert check_token(None, good, POLICY).reason == "session-token-missing"
    assert check_token(token, "not*masked", POLICY).reason == "token-malformed"


def test_from_headers_reads_what_an_asgi_scope_carries() -> None:
    request = CSRFRequest.from_headers(
        method="PATCH",
        path="/p",
        secure=False,
        headers=[
            (b"origin", b"https://app.example"),
            (b"sec-fetch-site", b"Cross-Site"),
            (b"sec-fetch-site", b"same-origin"),
            (b"x-csrf-token", b" tok "),
            (b"content-type", b"application/json"),
        ],
    )
    assert request.origin == "https://app.example" and request.origin_count == 1
    assert request.sec_fetch_site == "cross-site"  # any cross-site value wins
    assert request.header_token == "tok"
    assert request.content_type == "application/json"


@given(st.text(min_size=1, max_size=100))
def test_mask_round_trips_and_never_repeats(token: str) -> None:
    first, second = mask_token(token), mask_token(token)
    assert unmask_token(first) == unmask_token(second) == token.encode()
    assert tokens_match(token, first)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", first)
    if len(token.encode()) >= 8:
        assert first != second


@given(st.text(max_size=300))
def test_unmask_never_raises_on_garbage(value: str) -> None:
    unmask_token(value)
    assert not tokens_match("token", value) or unmask_token(value) == b"token"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://Example.COM", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:80/", "http://example.com"),
        ("http://example.com:8080", "http://example.com:8080"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://user@example.com", None),
        ("https://example.com/path", None),
        ("https://example.com?q", None),
        ("https://exa mple.com", None),
        ("https://bücher.example", None),
        ("https://example.com:99999", None),
        ("javascript:alert(1)", None),
        ("null", None),
        ("", None),
    ],
)
def test_normalize_origin(value: str, expected: str | None) -> None:
    assert normalize_origin(value) == expected


def test_path_exemption_matching() -> None:
    paths = ("/webhook", "/hooks/*")
    assert path_is_exempt("/webhook", paths)
    assert not path_is_exempt("/webhook/x", paths)
    assert path_is_exempt("/hooks", paths) and path_is_exempt("/hooks/a/b", paths)
    assert not path_is_exempt("/hooksmith", paths)


def test_find_form_token_in_urlencoded_and_multipart_bodies() -> None:
    form = "application/x-www-form-urlencoded"
    assert find_form_token(b"a=1&csrf_token=abc%2Dd&csrf_token=zzz", form, "csrf_token") == "abc-d"
    assert find_form_token(b"csrf+token=x&csrf%5Ftoken=y", form, "csrf_token") == "y"
    assert find_form_token(b"a=1&csrf_token=ab", form, "csrf_token", complete=False) is None  # may be cut
    assert find_form_token(b"csrf_token=ab&b", form, "csrf_token", complete=False) == "ab"
    assert find_form_token(b"csrf_token=x", "text/plain", "csrf_token") is None
    assert find_form_token(b"csrf_token=x", None, "csrf_token") is None

    multipart = 'multipart/form-data; boundary="b0undary"'
    body = (
        b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="csrf_token"\r\n\r\nF\r\n'
        b'--b0undary\r\ncontent-disposition: form-data; name="csrf_token"\r\n\r\ntok\r\n'
        b"--b0undary--\r\n"
    )
    assert find_form_token(body, multipart, "csrf_token") == "tok"
    cut = body[: body.index(b"tok") + 3]
    assert find_form_token(cut, multipart, "csrf_token", complete=False) is None
    assert find_form_token(body, "multipart/form-data", "csrf_token") is None  # no boundary


def test_get_token_works_with_a_plain_mapping_session() -> None:
    session: dict[str, Any] = {}
    token = get_token(session)
    assert tokens_match(session[CSRF_KEY], token)
    assert tokens_match(session[CSRF_KEY], get_token(session))
