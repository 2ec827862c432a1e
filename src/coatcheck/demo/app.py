"""The demo app: log in, fill a cart, watch the cookie and the store record change.

Server-rendered pages (Starlette + Jinja2 with autoescape), no JavaScript framework, no
external assets. Every state change is a POST, protected by `CSRFMiddleware` and answered
with a redirect (so reloading a page never repeats an action), and leaves a flash message.
"""

from __future__ import annotations

from collections.abc import Iterable

import jinja2
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import templating
from ..asgi import SessionMiddleware
from ..csrf import CSRFMiddleware
from ..stores.base import ClientSideStore, Store
from . import pages
from .inspector import ASGIApp, CookieWitness, Receive, Scope, Send, format_delta, format_time
from .modes import SINGLE, Instance, store_view
from .refusal import StyledRefusals
from .rendering import COOKIE_NAME
from .state import Demo


def origins_for(host: str, port: int) -> list[str]:
    """The origins a browser shows when it opens the demo on host:port (for CSRF checks)."""
    if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):  # noqa: S104 - names, not a bind
        names = ["127.0.0.1", "localhost", "[::1]"]
    else:
        names = [f"[{host}]" if ":" in host else host]
    return [f"http://{name}:{port}" for name in names]


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
    instance: Instance | None = None,
) -> DemoApp:
    """The demo app.

    `store_url` is what the pages show (redact passwords first). `trusted_origins` are the
    origins the browser will use (default: 127.0.0.1 and localhost on port 8000); a POST
    from any other origin is refused by the CSRF check. The secret must be strong: the demo
    does not use `insecure_dev_secret`. `instance` says which of several demo processes
    this is (`coatcheck demo --instances N`), for the inspector to show.
    """
    env = _environment()
    templates = Jinja2Templates(env=env)
    starlette = Starlette(
        routes=[
            Route("/", pages.home),
            Route("/login", pages.login_page, methods=["GET"]),
            Route("/login", pages.login, methods=["POST"]),
            Route("/logout", pages.logout, methods=["POST"]),
            Route("/profile", pages.profile),
            Route("/profile/logout-others", pages.logout_others, methods=["POST"]),
            Route("/cart", pages.cart_page, methods=["GET"]),
            Route("/cart/add", pages.cart_add, methods=["POST"]),
            Route("/cart/remove", pages.cart_remove, methods=["POST"]),
            Route("/settings", pages.settings_page, methods=["GET"]),
            Route("/settings", pages.settings_save, methods=["POST"]),
            Route("/restart", pages.restart_page),
            Route("/instances", pages.instances_page),
            Mount("/static", StaticFiles(packages=[("coatcheck.demo", "static")]), name="static"),
        ],
    )
    origins = list(trusted_origins) if trusted_origins is not None else origins_for("127.0.0.1", 8000)
    protected = StyledRefusals(CSRFMiddleware(starlette, trusted_origins=origins), env=env)
    middleware = SessionMiddleware(protected, secret=secret, store=store, name=COOKIE_NAME)
    if store_url is None:
        store_url = store if isinstance(store, str) else repr(store)
    view = store_view(middleware.manager.client_side or middleware.manager.store, store_url)
    demo = Demo(manager=middleware.manager, store_url=store_url, view=view, instance=instance or SINGLE)
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
    env.globals["catalog"] = pages.CATALOG
    templating.install(env)  # csrf_input() for every form
    return env


__all__ = ["COOKIE_NAME", "Demo", "DemoApp", "create_app", "origins_for"]
