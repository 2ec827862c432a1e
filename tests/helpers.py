"""Small building blocks shared by the HTTP-level tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from coatcheck import SessionMiddleware
from coatcheck.config import Settings
from coatcheck.record import Meta, Record
from coatcheck.stores import MemoryStore


class CountingStore:
    """A real MemoryStore that also counts the calls made to it (a spy, not a mock)."""

    def __init__(self, inner: Any | None = None) -> None:
        self.inner = inner or MemoryStore()
        self.calls: Counter[str] = Counter()

    async def get(self, key: str) -> Record | None:
        self.calls["get"] += 1
        return await self.inner.get(key)  # type: ignore[no-any-return]

    async def set(self, key: str, record: Record) -> None:
        self.calls["set"] += 1
        await self.inner.set(key, record)

    async def patch(self, key: str, changed: dict[str, Any], removed: Any, meta: Meta) -> bool:
        self.calls["patch"] += 1
        return await self.inner.patch(key, changed, removed, meta)  # type: ignore[no-any-return]

    async def touch(self, key: str, meta: Meta) -> None:
        self.calls["touch"] += 1
        await self.inner.touch(key, meta)

    async def destroy(self, key: str) -> None:
        self.calls["destroy"] += 1
        await self.inner.destroy(key)

    async def close(self) -> None:
        await self.inner.close()

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def read(request: Request) -> Response:
    return JSONResponse({"n": request.session.get("n"), "new": request.session.is_new})


async def incr(request: Request) -> Response:
    request.session["n"] = request.session.get("n", 0) + 1
    return JSONResponse({"n": request.session["n"]})


async def plain(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def cart_add(request: Request) -> Response:
    request.session.setdefault("cart", []).append(request.query_params.get("item", "x"))
    return JSONResponse(request.session["cart"])


async def login(request: Request) -> Response:
    request.session.login(request.query_params.get("user", "42"))
    return JSONResponse({"user": request.session.user_id})


async def logout(request: Request) -> Response:
    request.session.logout()
    return JSONResponse({"ok": True})


async def destroy_then_flash(request: Request) -> Response:
    request.session.destroy()
    request.session["flash"] = "logged out"
    return JSONResponse({"ok": True})


async def regenerate(request: Request) -> Response:
    request.session.regenerate(keep_data=request.query_params.get("keep") == "1")
    return JSONResponse({"ok": True})


async def remember(request: Request) -> Response:
    from datetime import timedelta

    request.session.cookie.max_age = timedelta(days=30)
    return JSONResponse({"ok": True})


async def touch(request: Request) -> Response:
    request.session.touch()
    return JSONResponse({"ok": True})


async def unset(request: Request) -> Response:
    request.session["changed"] = True
    del request.scope["session"]
    return JSONResponse({"ok": True})


async def redirect(request: Request) -> Response:
    request.session["saved_before_redirect"] = True
    return RedirectResponse("/read", status_code=303)


async def own_cookie(request: Request) -> Response:
    request.session["n"] = 1
    response = JSONResponse({"ok": True}, headers={"cache-control": "public, max-age=60", "vary": "Accept"})
    response.set_cookie("theme", "dark")
    return response


ROUTES = [
    Route("/read", read),
    Route("/incr", incr),
    Route("/plain", plain),
    Route("/cart", cart_add),
    Route("/login", login),
    Route("/logout", logout),
    Route("/destroy-then-flash", destroy_then_flash),
    Route("/regenerate", regenerate),
    Route("/remember", remember),
    Route("/touch", touch),
    Route("/unset", unset),
    Route("/redirect", redirect),
    Route("/own-cookie", own_cookie),
    Route("/app/read", read),
    Route("/app/incr", incr),
]


def make_app(**options: Any) -> Starlette:
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, **options)
    return app


def client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def use_cookie(c: httpx.AsyncClient, value: str, name: str = "session") -> None:
    """Make the client send exactly this session cookie from now on."""
    c.cookies.clear()
    c.cookies.set(name, value)


TEST_SECRET = "test-secret-" + "9f3c2a7e41d8b6055e2c7a9d13f4b8e6a0c5d7e2f1b3a4c6"


def make_settings(**options: Any) -> Settings:
    """Validated settings for engine and session unit tests (a strong test secret unless given)."""
    options.setdefault("secret", TEST_SECRET)
    return Settings(**options)
