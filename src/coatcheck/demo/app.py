"""The demo app: log in, fill a cart, watch the cookie and the store record change.

Server-rendered pages (Starlette + Jinja2 with autoescape), no JavaScript framework, no
external assets. Every state change is a POST, protected by `CSRFMiddleware` and answered
with a redirect (so reloading a page never repeats an action), and leaves a flash message.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import templating
from ..asgi import SessionMiddleware, request_info
from ..crypto import storage_key
from ..csrf import CSRFMiddleware
from ..runtime import Runtime
from ..session import Session
from ..stores.base import ClientSideStore, Store, UserIndex
from .inspector import (
    UNKNOWN,
    ASGIApp,
    BrowserCookie,
    CookieWitness,
    Receive,
    Scope,
    Send,
    browser_cookie,
    cookie_record_view,
    cookie_status,
    format_delta,
    format_time,
    record_view,
    request_cookies,
    store_view,
)

COOKIE_NAME = "coatcheck_demo"
REMEMBER_ME = timedelta(days=30)
MAX_NAME = 40
MAX_CART = 50
CATALOG = {
    "coat": "Wool coat",
    "scarf": "Striped scarf",
    "hat": "Felt hat",
    "umbrella": "Umbrella",
    "gloves": "Leather gloves",
}
_NAME_OK = re.compile(r"^[^\x00-\x1f\x7f]+$")
_SECURITY_HEADERS = {
    # Everything the pages use is served from here: no CDN, no inline script.
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}
_VALUE_NOTES = {
    "server": "the signed session id, s:<id>.<signature>, URL-encoded",
    "sealed": "your whole session, encrypted and authenticated (AES-256-GCM): you cannot read or change it",
    "signed": "your whole session as base64 JSON with a signature: readable, but not changeable",
    "cookie-session": "your session as base64 JSON; its signature is in the .sig cookie",
}


def origins_for(host: str, port: int) -> list[str]:
    """The origins a browser shows when it opens the demo on host:port (for CSRF checks)."""
    if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):  # noqa: S104 - names, not a bind
        names = ["127.0.0.1", "localhost", "[::1]"]
    else:
        names = [f"[{host}]" if ":" in host else host]
    return [f"http://{name}:{port}" for name in names]


@dataclass(slots=True)
class Demo:
    """The running demo: its session manager, its store and when this process started."""

    manager: Runtime
    store_url: str
    started_at: float = field(default_factory=time.time)
    witness: CookieWitness | None = None

    @property
    def store(self) -> Store:
        store: Store = self.manager.store
        return store

    @property
    def client_side(self) -> ClientSideStore | None:
        """The CookieStore when sessions live in the cookie, else None."""
        return self.manager.client_side

    @property
    def cookie_mode(self) -> str:
        if self.client_side is None:
            return "server"
        return str(getattr(self.client_side, "mode", "sealed"))

    def cookie_names(self) -> frozenset[str]:
        """Every cookie name the session may use: client-side sessions split into chunks."""
        name = self.manager.settings.cookie_name
        names = {name}
        if self.client_side is not None:
            chunks = int(getattr(self.client_side, "max_chunks", 1))
            names.update(f"{name}.{i}" for i in range(chunks))
            names.add(f"{name}.sig")
        return frozenset(names)


class DemoApp:
    """The demo as an ASGI app; `demo` gives tests and the CLI its manager and store."""

    def __init__(self, demo: Demo, app: ASGIApp) -> None:
        self.demo = demo
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def create_app(
    *,
    store: Store | ClientSideStore | str,
    secret: str | list[str],
    store_url: str | None = None,
    trusted_origins: Iterable[str] | None = None,
    started_at: float | None = None,
) -> DemoApp:
    """The demo app.

    `store_url` is what the pages show (redact passwords first). `trusted_origins` are the
    origins the browser will use (default: 127.0.0.1 and localhost on port 8000); a POST
    from any other origin is refused by the CSRF check. The secret must be strong: the demo
    does not use `insecure_dev_secret`.
    """
    templates = Jinja2Templates(env=_environment())
    starlette = Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/profile", profile),
            Route("/profile/logout-others", logout_others, methods=["POST"]),
            Route("/cart", cart_page, methods=["GET"]),
            Route("/cart/add", cart_add, methods=["POST"]),
            Route("/cart/remove", cart_remove, methods=["POST"]),
            Route("/settings", settings_page, methods=["GET"]),
            Route("/settings", settings_save, methods=["POST"]),
            Route("/restart", restart_page),
            Mount("/static", StaticFiles(packages=[("coatcheck.demo", "static")]), name="static"),
        ],
    )
    origins = list(trusted_origins) if trusted_origins is not None else origins_for("127.0.0.1", 8000)
    protected = CSRFMiddleware(starlette, trusted_origins=origins)
    middleware = SessionMiddleware(protected, secret=secret, store=store, name=COOKIE_NAME)
    if store_url is None:
        store_url = store if isinstance(store, str) else repr(store)
    demo = Demo(manager=middleware.manager, store_url=store_url)
    if started_at is not None:
        demo.started_at = started_at
    demo.witness = CookieWitness(middleware, names=demo.cookie_names)
    starlette.state.demo = demo
    starlette.state.templates = templates
    return DemoApp(demo, demo.witness)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("coatcheck.demo", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["format_time"] = format_time
    env.globals["format_delta"] = format_delta
    env.globals["catalog"] = CATALOG
    templating.install(env)  # csrf_input() for every form
    return env


# ---- rendering ----------------------------------------------------------------------------
def _demo(request: Request) -> Demo:
    demo: Demo = request.app.state.demo
    return demo


def _session(request: Request) -> Session:
    session: Session = request.session  # type: ignore[assignment]
    return session


async def render(
    request: Request, template: str, *, forms: bool = False, status_code: int = 200, **context: Any
) -> Response:
    """Render a page with its flash messages and the inspector.

    Pages with forms (and every page once logged in: the log-out button is a form) need the
    session's CSRF token, so it is created first. Then the session is committed *before*
    rendering, if this request changed it, so the inspector shows the record exactly as
    the store now holds it.
    """
    demo = _demo(request)
    session = _session(request)
    header = _cookie_header(request)
    sent = request_cookies(header, demo.cookie_names())
    # GET pages never change the session's identity before this point.
    status = cookie_status(
        session,
        sent.get(COOKIE_NAME) or next(iter(sent.values()), None),
        demo.manager.keyring,
        client_side=demo.client_side is not None,
    )
    flashes = session.flashes()
    if forms or session.user_id is not None:
        _ = session.csrf_token  # created on first use
    if session.modified:
        await session.save()
    if demo.client_side is not None:
        record = cookie_record_view(session, demo.manager.serializer)
    else:
        record = await record_view(session, demo.store)
    cookies = _browser_cookies(request, demo, sent)
    context.update(
        request=request,
        demo=demo,
        user=session.user_id,
        flashes=flashes,
        inspector={
            "cookies": cookies,
            "cookie_bytes": sum(c.size for c in cookies),
            "status": status,
            "record": record,
            "store": store_view(demo.client_side or demo.store, demo.store_url),
            "client_side": demo.client_side is not None,
            "settings": demo.manager.settings,
        },
    )
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=_SECURITY_HEADERS
    )


def _browser_cookies(request: Request, demo: Demo, sent: dict[str, bytes]) -> list[BrowserCookie]:
    session = _session(request)
    settings = demo.manager.settings
    secure = demo.manager.is_secure(request_info(request.scope))
    fallback = {
        "path": settings.cookie.path,
        "http_only": settings.cookie.http_only,
        "secure": secure if settings.cookie.secure == "auto" else settings.cookie.secure,
        "same_site": settings.cookie.same_site,
        # A loaded session's cookie was last sent with the session's current max-age.
        "max_age": UNKNOWN if session.is_new else session.cookie.max_age_seconds,
    }
    host = request.url.hostname or ""
    now = time.time()
    witness = demo.witness
    note = _VALUE_NOTES.get(demo.cookie_mode, _VALUE_NOTES["sealed"])
    return [
        browser_cookie(
            name,
            value,
            sent=witness.lookup(name, value) if witness else None,
            host=host,
            fallback=fallback,
            now=now,
            value_note=note,
        )
        for name, value in sorted(sent.items())
    ]


def _cookie_header(request: Request) -> bytes | None:
    values = [v for k, v in request.scope.get("headers", ()) if k == b"cookie"]
    return b"; ".join(values) if values else None


def redirect(url: str) -> RedirectResponse:
    """303 See Other: the browser follows with a GET, so a reload never re-posts."""
    return RedirectResponse(url, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


# ---- pages --------------------------------------------------------------------------------
async def home(request: Request) -> Response:
    return await render(request, "home.html")


async def login_page(request: Request) -> Response:
    return await render(request, "login.html", forms=True)


async def login(request: Request) -> Response:
    session = _session(request)
    name = (await _form(request)).get("name", "").strip()
    if not name or len(name) > MAX_NAME or not _NAME_OK.match(name):
        session.flash(f"Type a name of 1 to {MAX_NAME} printable characters.", "error")
        return redirect("/login")
    session.login(name)
    session.flash(
        f"Welcome, {name}! You have a new session id now (login() regenerates it), and your cart came along.",
        "success",
    )
    return redirect("/profile")


async def logout(request: Request) -> Response:
    _session(request).logout()
    # No flash here: a flash lives in the session, and this one was just destroyed.
    return redirect("/?logged_out=1")


async def profile(request: Request) -> Response:
    session = _session(request)
    if session.user_id is None:
        return await render(request, "unauthorized.html", status_code=401)
    store = _demo(request).store
    sessions = None
    if _demo(request).client_side is None and isinstance(store, UserIndex):
        sessions = await store.sessions_for(session.user_id)
    this_hint = storage_key(session.id)[:12] if not session.is_new else None
    return await render(request, "profile.html", forms=True, sessions=sessions, this_hint=this_hint)


async def logout_others(request: Request) -> Response:
    session = _session(request)
    user = session.user_id
    if user is None:
        return await render(request, "unauthorized.html", status_code=401)
    store = _demo(request).store
    if _demo(request).client_side is not None or not isinstance(store, UserIndex):
        session.flash("This store keeps no index of users' sessions, so it cannot find your others.", "error")
        return redirect("/profile")
    # destroy_user() removes every session of the user, this one included; logging in
    # again at once gives this browser a fresh session (new id, same data).
    removed = await store.destroy_user(user)
    session.login(user)
    others = max(removed - 1, 0)
    session.flash(
        f"Logged out {others} other session{'s' if others != 1 else ''}. This one continues under a new id.",
        "success",
    )
    return redirect("/profile")


async def cart_page(request: Request) -> Response:
    return await render(request, "cart.html", forms=True, cart=list(_session(request).get("cart") or []))


async def cart_add(request: Request) -> Response:
    session = _session(request)
    item = (await _form(request)).get("item", "")
    if item not in CATALOG:
        session.flash("There is no such item.", "error")
        return redirect("/cart")
    if len(session.get("cart") or []) >= MAX_CART:
        session.flash(f"Your cart is full ({MAX_CART} items): this is a demo.", "error")
        return redirect("/cart")
    # A nested change: the list inside the session is mutated in place, and coatcheck
    # notices it at commit by comparing serialized values, with no "modified" flag.
    session.setdefault("cart", []).append(item)
    session.flash(f"Added the {CATALOG[item].lower()} to your cart.", "success")
    return redirect("/cart")


async def cart_remove(request: Request) -> Response:
    session = _session(request)
    raw = (await _form(request)).get("index", "")
    cart = session.get("cart") or []
    if not raw.isdigit() or int(raw) >= len(cart):
        session.flash("That line is no longer in your cart.", "error")
        return redirect("/cart")
    item = cart.pop(int(raw))
    if not cart:
        del session["cart"]
    session.flash(f"Removed the {CATALOG.get(item, str(item)).lower()} from your cart.", "success")
    return redirect("/cart")


async def settings_page(request: Request) -> Response:
    session = _session(request)
    return await render(
        request,
        "settings.html",
        forms=True,
        remembered=session.cookie.max_age is not None,
        remember_days=REMEMBER_ME.days,
    )


async def settings_save(request: Request) -> Response:
    session = _session(request)
    remember = (await _form(request)).get("remember") == "on"
    session.cookie.max_age = REMEMBER_ME if remember else None
    if remember:
        session.flash(f"Your browser will now keep the cookie for {REMEMBER_ME.days} days.", "success")
    else:
        session.flash("Your browser will now drop the cookie when it closes.", "success")
    return redirect("/settings")


async def restart_page(request: Request) -> Response:
    session = _session(request)
    demo = _demo(request)
    survived = session.meta is not None and session.meta.created < demo.started_at
    return await render(request, "restart.html", survived=survived, now=time.time(), pid=os.getpid())


__all__ = ["COOKIE_NAME", "Demo", "DemoApp", "create_app", "origins_for"]
