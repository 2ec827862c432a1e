"""Client-side sessions: the sealed record is the cookie, and nothing is stored."""

from __future__ import annotations

import logging

from . import engine
from ._http import CACHE_HEADERS, NO_HEADERS, RequestInfo, SessionHeaders
from .config import Settings
from .errors import SessionTooLarge
from .runtime import RuntimeBase
from .session import Session
from .stores.base import ClientSideStore, OpenedSession

logger = logging.getLogger("coatcheck")


class ClientSideRuntime(RuntimeBase):
    """Opens the request's sealed cookie and re-seals the session when the engine says so."""

    def __init__(
        self, settings: Settings, store: ClientSideStore, session_class: type[Session] = Session
    ) -> None:
        super().__init__(settings, session_class)
        store.bind(self.keyring, self.serializer)
        self.client_side = store
        self._cookies = store
        # An app's revocation hook may do I/O: only then is opening bounded like a store call.
        self._may_block = getattr(store, "is_revoked", None) is not None

    @property
    def store(self) -> ClientSideStore:
        return self._cookies

    # ---- request start ------------------------------------------------------------------
    def load_without_io(self, request: RequestInfo, *, read_only: bool = False) -> Session | None:
        """A new session when the request carries no cookie of ours (the name, or a chunk of
        it, never appears in the header); otherwise None: opening is async (`is_revoked`)."""
        cookie = request.cookie
        if cookie and self.cookie_name in cookie:
            return None
        return self.session_class.fresh(
            self.settings, self.serializer, self.clock(), self, request, read_only
        )

    async def _open(self, cookie_header: bytes | None, now: float) -> OpenedSession | None:
        opening = self._cookies.open(cookie_header, self.settings.cookie_name, now)
        opened = await (
            self.bounded("opening a client-side session", opening, self._cookies)
            if self._may_block
            else opening
        )
        return None if opened is None or not engine.is_live(opened.record.meta, now) else opened

    async def load(self, request: RequestInfo, *, read_only: bool = False) -> Session:
        """Anything absent, forged, expired or revoked is a new session. A cookie sealed with
        an older secret is re-sealed with the current one on this response."""
        now = self.clock()
        opened = await self._open(request.cookie, now)
        if opened is None:
            return self.new_session(request, now, read_only)
        return self.new_session(
            request,
            now,
            read_only,
            session_id=opened.session_id,
            data=opened.record.data,
            meta=opened.record.meta,
            stale_signature=opened.reseal,
        )

    # ---- request end --------------------------------------------------------------------
    def prepare(
        self, session: Session, request: RequestInfo, *, unset: bool = False, force: bool = False
    ) -> engine.Plan:
        facts = engine.Facts(
            now=self.clock(), secure=self.is_secure(request), unset=unset, force=force, self_contained=True
        )
        return engine.decide(session.snapshot(), self.settings, facts)

    async def apply(self, session: Session, request: RequestInfo, plan: engine.Plan) -> engine.Plan:
        return plan  # nothing is stored

    def finish(self, session: Session, request: RequestInfo, plan: engine.Plan) -> SessionHeaders:
        """The Set-Cookie values (several for chunks). A session too large for its cookies
        raises SessionTooLarge with `debug`; otherwise it is logged and no cookie is sent,
        so the browser keeps the previous (still valid) one."""
        self.audit.committed(session, plan, client_side=True)
        session.after_commit(plan)
        if plan.cookie == "none":
            return CACHE_HEADERS if plan.cache_headers else NO_HEADERS
        render = engine.cookie_renderer(self.settings, self.is_secure(request), self.clock())
        name, header = self.settings.cookie_name, request.cookie
        if plan.cookie == "expire" or plan.record is None or plan.session_id is None:
            return SessionHeaders(
                True, tuple(self._cookies.expire(name=name, cookie_header=header, render=render))
            )
        try:
            cookies = self._cookies.seal(
                plan.session_id,
                plan.record,
                name=name,
                cookie_header=header,
                max_age=plan.max_age,
                render=render,
            )
        except SessionTooLarge as exc:
            if self._cookies.debug:
                raise
            logger.error("coatcheck: %s (the session was not saved; the previous cookie stays)", exc)
            return SessionHeaders(cache=plan.cache_headers)
        return SessionHeaders(True, tuple(cookies))

    # ---- explicit I/O -------------------------------------------------------------------
    async def save_now(self, session: Session) -> None:
        """`save()` on a cookie session: nothing to write early, but the session is sealed into
        the response even if unchanged (the cookie goes out with the response)."""
        session.mark_modified()  # on a destroyed session, the destroy still wins

    async def reload(self, session: Session) -> None:
        """`reload()`: drop this request's changes and reopen the request's cookie."""
        request = session.request
        opened = await self._open(request.cookie if request is not None else None, self.clock())
        if opened is None:
            session.replace(None, {}, None)
        else:
            session.replace(opened.session_id, opened.record.data, opened.record.meta)

    async def close(self) -> None:
        await self._cookies.close()
