"""Litestar integration: a plugin that registers coatcheck sessions (and CSRF) on an app.

    from coatcheck.litestar import CSRFConfig, SessionPlugin

    app = Litestar(
        route_handlers=[...],
        plugins=[SessionPlugin(secret=SECRET, store="redis://localhost/0",
                               csrf=CSRFConfig(trusted_origins=["https://app.example"]))],
    )

`request.session` is then a coatcheck `Session`, and Litestar's own session calls keep
their meaning: `request.set_session(data)` replaces the session's data,
`request.clear_session()` destroys the session (record deleted, cookie expired).

Litestar builds a middleware stack per route, so the plugin builds the runtime (one store,
one connection pool) once and hands it to `SessionMiddleware` through `DefineMiddleware`;
`SessionPlugin.middleware` is that list, for apps that set `middleware=[...]` by hand
(add `on_shutdown=[plugin.close]` then). Wrapping the whole app,
`coatcheck.SessionMiddleware(Litestar(...), secret=...)`, works too (it also serves
requests no route matches).

CSRF follows Litestar's conventions: `CSRFConfig(exclude=[...])` for paths, a route
handler's `opt={"exclude_from_csrf": True}` (the key is `exclude_from_csrf_key`), or the
`coatcheck.csrf.csrf_exempt` decorator; the rules and refusals are `coatcheck.csrf`'s
(`evaluate`, a plain 403 naming the failed check). Render tokens with
`coatcheck.csrf.get_token(request.session)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

try:
    from litestar.config.app import AppConfig
    from litestar.middleware import DefineMiddleware
    from litestar.plugins import InitPlugin
    from litestar.serialization import decode_json, encode_json
    from litestar.types import Empty
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("coatcheck.litestar needs Litestar: pip install 'coatcheck[litestar]'") from exc

from . import asgi
from . import csrf as rules
from .config import Compat, Cookie, Duration, Secret, Settings, Unset
from .csrf.asgi import CSRFMiddleware as ASGICSRFMiddleware
from .runtime import Runtime
from .session import Session
from .strategy import build_runtime

if TYPE_CHECKING:
    from .codec import Serializer
    from .events import OnEvent
    from .migrate import LegacyReader
    from .stores.base import ClientSideStore, Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = asgi.Receive
Send = asgi.Send
ASGIApp = asgi.ASGIApp


class SessionMiddleware(asgi.SessionMiddleware):
    """`coatcheck.SessionMiddleware` on a runtime built once (the plugin's), for Litestar's
    per-route middleware stacks: `DefineMiddleware(SessionMiddleware, runtime=plugin.runtime)`.
    Applies `request.set_session()` / `request.clear_session()` before committing."""

    def __init__(self, app: ASGIApp, *, runtime: Runtime) -> None:
        self.app = _SessionCalls(app)
        self.settings = runtime.settings
        self._use(runtime)


class _SessionCalls:
    """Between the middleware and the route: when the response starts, puts the coatcheck
    session back in the scope, carrying what `set_session` / `clear_session` asked for."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope.get("session")
        if scope["type"] != "http" or not isinstance(session, Session):
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                adopt_replacement(scope, session)
            await send(message)

        await self.app(scope, receive, send_wrapper)


def adopt_replacement(scope: Scope, session: Session) -> None:
    """If the handler replaced `scope["session"]` (Litestar's `set_session` / `clear_session`),
    apply that to `session` and put it back: cleared destroys it, new data replaces its data."""
    current = scope.get("session")
    if current is session:
        return
    scope["session"] = session
    if current is None or current is Empty:
        session.destroy()
        return
    if isinstance(current, Mapping):
        data = dict(current)
    else:  # a dataclass, msgspec Struct or pydantic model, as Litestar's own sessions take
        data = decode_json(encode_json(current))
        if not isinstance(data, dict):
            raise TypeError(
                f"set_session() needs a mapping or a model of fields, got {type(current).__name__}"
            )
    session.clear()
    session.update(data)


@dataclass(frozen=True, slots=True)
class CSRFConfig:
    """CSRF settings in Litestar's shape. `trusted_origins` are the origins your pages are
    served from; `exclude` are exempt paths (`coatcheck.csrf` path patterns);
    a route handler with `opt={exclude_from_csrf_key: True}` is exempt."""

    trusted_origins: Sequence[str]
    field_name: str = rules.DEFAULT_FIELD_NAME
    header_name: str = rules.DEFAULT_HEADER_NAME
    exclude: Sequence[str] = ()
    exclude_from_csrf_key: str = "exclude_from_csrf"
    max_body_size: int = rules.DEFAULT_MAX_BODY_SIZE
    trust_proxy: bool | None = None


class CSRFMiddleware(ASGICSRFMiddleware):
    """`coatcheck.csrf.CSRFMiddleware` that also honours Litestar's route handler `opt`
    exemption and `csrf_exempt` on handler functions. Goes inside `SessionMiddleware`."""

    def __init__(self, app: ASGIApp, *, config: CSRFConfig) -> None:
        super().__init__(
            app,
            trusted_origins=config.trusted_origins,
            field_name=config.field_name,
            header_name=config.header_name,
            exempt_paths=config.exclude,
            max_body_size=config.max_body_size,
            trust_proxy=config.trust_proxy,
        )
        self.exempt_key = config.exclude_from_csrf_key

    def endpoint_exempt(self, scope: Scope, request: rules.CSRFRequest) -> bool:
        if request.method in rules.SAFE_METHODS:
            return False  # safe methods pass anyway
        handler = scope.get("route_handler")
        if handler is None:
            return False
        if getattr(handler, "opt", {}).get(self.exempt_key):
            return True
        return rules.is_marked_exempt(handler) or rules.is_marked_exempt(getattr(handler, "fn", None))


class SessionPlugin(InitPlugin):
    """Registers coatcheck sessions on a Litestar app (and CSRF when `csrf` is given).

    The options are those of `coatcheck.SessionMiddleware` (DESIGN.md §2), validated here,
    at start-up. The store is closed on the app's shutdown.
    """

    def __init__(
        self,
        *,
        csrf: CSRFConfig | None = None,
        secret: Secret,
        store: Store | ClientSideStore | str | None = None,
        name: str | None = None,
        cookie: Cookie = Cookie(),
        resave: bool = False,
        save_uninitialized: bool = False,
        rolling: bool = False,
        unset: Unset = "keep",
        trust_proxy: bool = False,
        idle_timeout: Duration | None = timedelta(days=1),
        absolute_timeout: Duration | None = timedelta(days=30),
        touch_after: Duration = timedelta(seconds=60),
        client_hints: bool = False,
        store_timeout: Duration | None = timedelta(seconds=5),
        insecure_dev_secret: bool = False,
        serializer: Serializer | str = "json",
        clock: Callable[[], float] = time.time,
        compat: Compat | None = None,
        migrate_from: Sequence[LegacyReader] = (),
        on_event: OnEvent | None = None,
    ) -> None:
        options = dict(locals())  # exactly the parameters above, by name
        del options["self"], options["csrf"]
        self.settings = Settings(**options)
        self.runtime = build_runtime(self.settings)
        self.csrf = csrf
        if csrf is not None:  # validate now, not on the first request
            rules.CSRFPolicy.build(
                trusted_origins=csrf.trusted_origins,
                field_name=csrf.field_name,
                header_name=csrf.header_name,
                exempt_paths=csrf.exclude,
                max_body_size=csrf.max_body_size,
            )

    @property
    def store(self) -> Any:
        return self.runtime.store

    @property
    def middleware(self) -> list[DefineMiddleware]:
        """The middleware to register, outermost first: sessions, then CSRF."""
        # Litestar types ASGI messages as TypedDicts; ours are plain mappings of the same shape.
        stack = [DefineMiddleware(cast("Any", SessionMiddleware), runtime=self.runtime)]
        if self.csrf is not None:
            stack.append(DefineMiddleware(cast("Any", CSRFMiddleware), config=self.csrf))
        return stack

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware = [*self.middleware, *app_config.middleware]
        app_config.on_shutdown.append(self.close)
        return app_config

    async def close(self) -> None:
        """Close the store (its connections)."""
        await self.runtime.close()


__all__ = ["CSRFConfig", "CSRFMiddleware", "SessionMiddleware", "SessionPlugin", "adopt_replacement"]
