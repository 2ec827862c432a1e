"""`coatcheck.starlette.SessionMiddleware`: Starlette's session middleware, by one import.

It takes Starlette's own constructor (`secret_key`, `session_cookie`, `max_age`, `path`,
`same_site`, `https_only`, `domain`, `partitioned`) and keeps Starlette's cookie lifetime:
the cookie carries `Max-Age=max_age` and is sent when the session changed, so a session
lasts `max_age` seconds after its last change; `max_age=None` makes a browser-session
cookie. By default the session lives in a sealed cookie (`CookieStore`), as Starlette's
does, so no server is needed; pass `store=` for server-side sessions. A session that
Starlette's middleware signed with the same `secret_key` is adopted on its first request,
so switching logs nobody out. docs/starlette.md lists what differs and why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from . import asgi
from ._http import SessionHeaders
from .config import Cookie, Duration, Secure
from .cookies import first_cookie
from .errors import ConfigurationError
from .session import Session
from .stores.cookie import CookieStore

if TYPE_CHECKING:
    from .migrate import StarletteCookie
    from .stores.base import ClientSideStore, Store

__all__ = ["SessionMiddleware"]

logger = logging.getLogger("coatcheck")

STARLETTE_MAX_AGE = 14 * 24 * 60 * 60  # Starlette's default, in seconds
BROWSER_SESSION_IDLE = timedelta(seconds=STARLETTE_MAX_AGE)  # server-side bound when max_age=None

# Starlette writes its cookie attributes in lower case; ours are written the same way so that
# code and tests matching Starlette's header text keep working (browsers ignore the case).
_SPELLING = {
    b"Path": b"path",
    b"Domain": b"domain",
    b"Secure": b"secure",
    b"HttpOnly": b"httponly",
    b"SameSite": b"samesite",
    b"Partitioned": b"partitioned",
}


class SessionMiddleware(asgi.SessionMiddleware):
    """Starlette's `SessionMiddleware` constructor on coatcheck's sessions.

    `store` defaults to a sealed `CookieStore`; `insecure_dev_secret=True` accepts a weak
    `secret_key` (tests, demos). `adopt_starlette_cookie` (default True, needs itsdangerous,
    which Starlette's own middleware needs too) reads a cookie Starlette's middleware left
    under `session_cookie` and carries its data into a new coatcheck session.
    """

    def __init__(
        self,
        app: asgi.ASGIApp,
        secret_key: Any,
        session_cookie: str = "session",
        max_age: int | None = STARLETTE_MAX_AGE,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        store: Store | ClientSideStore | str | None = None,
        insecure_dev_secret: bool = False,
        adopt_starlette_cookie: bool = True,
    ) -> None:
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int | float)):
            raise ConfigurationError(f"max_age must be a number of seconds or None, got {max_age!r}")
        # Starlette's max_age <= 0 means a cookie the browser drops at once and a server that
        # accepts it never: Max-Age=0 and an idle timeout of zero do the same here.
        cookie_age: Duration | None = None if max_age is None else max(0, max_age)
        secure: Secure = True if https_only else "auto"
        super().__init__(
            app,
            secret=_secret(secret_key),
            store=CookieStore() if store is None else store,
            name=session_cookie,
            cookie=Cookie(
                max_age=cookie_age,
                secure=secure,
                same_site=same_site,
                path=path,
                domain=domain,
                partitioned=partitioned,
            ),
            idle_timeout=BROWSER_SESSION_IDLE if cookie_age is None else cookie_age,
            absolute_timeout=None,
            insecure_dev_secret=insecure_dev_secret,
        )
        self._names = (session_cookie.encode(), session_cookie.encode() + b".")
        self._legacy = (
            _starlette_reader(secret_key, session_cookie, max_age, path, domain)
            if adopt_starlette_cookie
            else None
        )
        if self._legacy is not None:
            self._legacy.bind(self.manager.serializer)
        self._app = app
        self.app = self._with_starlette_semantics(app)
        # A request without our cookie has no Starlette cookie to adopt (the same name) and a
        # new, empty session to destroy: the wrapper has nothing to do for it.
        self._fresh_app = app

    async def _outside_path(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        # Starlette gives every request a session; outside `path` the browser never sends
        # the cookie, so this one starts empty and is never saved.
        manager = self.manager
        scope["session"] = Session.fresh(
            self.settings, manager.serializer, manager.settings.clock(), None, None
        )
        await self._app(scope, receive, send)

    async def _websocket(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if not self.manager.in_scope(scope.get("path", "/")):
            await self._outside_path(scope, receive, send)
            return
        await super()._websocket(scope, receive, send)

    def _spelled(self, added: SessionHeaders) -> SessionHeaders:
        """Our Set-Cookie lines in Starlette's attribute case (the app's own are left as the
        app wrote them)."""
        if not added.cookies:
            return added
        return SessionHeaders(added.cache, tuple(starlette_spelling(c) for c in added.cookies))

    def _with_starlette_semantics(self, app: asgi.ASGIApp) -> asgi.ASGIApp:
        """Wrap `app` (inside the session middleware): a new session whose request carries a
        Starlette cookie gets its data; a session the request emptied is destroyed (record
        deleted, cookie expired), as Starlette expires its cookie when the session is cleared."""
        legacy, wanted = self._legacy, self._names[0]

        async def run(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
            session = scope.get("session")
            if scope["type"] != "http" or not isinstance(session, Session):
                await app(scope, receive, send)
                return
            header = session.request.cookie if session.request is not None else None
            if legacy is not None and session.is_new and header and first_cookie(header, wanted):
                found = await legacy.read(header)
                if found is not None:
                    session.update(found.data)  # a fresh id: the legacy value is never reused
            current: Session = session
            had_data = dict.__len__(current) > 0  # not len(): that would count as a read

            async def send_then(message: asgi.Message) -> None:
                if (
                    message["type"] == "http.response.start"
                    and had_data
                    and scope.get("session") is current
                    and dict.__len__(current) == 0
                ):
                    current.destroy()
                await send(message)

            await app(scope, receive, send_then)

        return run


def starlette_spelling(set_cookie: bytes) -> bytes:
    """A Set-Cookie value with its attribute names (and SameSite's value) in Starlette's case."""
    first, *attributes = set_cookie.split(b"; ")
    spelled = [first]
    for attribute in attributes:
        key, eq, value = attribute.partition(b"=")
        lower = _SPELLING.get(key)
        if lower is None:
            spelled.append(attribute)
        else:
            spelled.append(lower + eq + (value.lower() if lower == b"samesite" else value))
    return b"; ".join(spelled)


def _secret(secret_key: Any) -> str | bytes | Sequence[str | bytes]:
    """Starlette takes a str or its `Secret` wrapper (and signs with `str()` of it); a list
    of keys, newest first, also works here, for rotation."""
    if isinstance(secret_key, str | bytes):
        return secret_key
    if isinstance(secret_key, list | tuple):
        return [key if isinstance(key, str | bytes) else str(key) for key in secret_key]
    if secret_key is None:
        raise ConfigurationError(
            "secret_key is required: pass your app's secret (coatcheck secret makes one)"
        )
    return str(secret_key)


def _starlette_reader(
    secret_key: Any, cookie_name: str, max_age: float | None, path: str, domain: str | None
) -> StarletteCookie | None:
    try:
        from .migrate import StarletteCookie
    except ImportError:  # pragma: no cover - coatcheck.migrate imports only coatcheck
        return None
    try:
        return StarletteCookie(secret_key, cookie_name, max_age, path=path, domain=domain)
    except ConfigurationError as exc:
        if "itsdangerous" not in str(exc):
            raise
        # Without itsdangerous, Starlette's own middleware could not have run either.
        logger.info("coatcheck.starlette: itsdangerous is not installed; Starlette cookies are not adopted")
        return None
