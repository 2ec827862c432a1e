"""Zero-logout migration (`migrate_from=[...]`): adopting the session another library left.

`AdoptingRuntime` wraps the runtime `strategy.build_runtime` chose, only when readers are
configured. A request that carries no live coatcheck session is shown to the readers
(`coatcheck.migrate`); if one verifies a legacy session, the request gets a *new* coatcheck
session (a fresh id, never the legacy one) holding the legacy data, marked modified so the
commit saves it. Only once that commit has written the new session (or expired its cookie)
is the legacy record deleted (`reader.forget`), and the response expires the legacy cookie
unless ours has the same name, path and domain and so replaces it. The coatcheck store is
never asked for a legacy id: readers verify their own cookies and read their own stores.
"""

from __future__ import annotations

import logging
from typing import Any

from . import engine
from ._http import NO_HEADERS, RequestInfo, SessionHeaders
from .client_side import ClientSideRuntime
from .errors import SessionStoreError
from .migrate import Legacy, LegacyReader, expire_legacy_cookie, read_first
from .server_side import ServerSideRuntime
from .session import Session

logger = logging.getLogger("coatcheck.migrate")


class Adoption:
    """The host of an adopted session: its explicit I/O goes through the adopting runtime,
    which remembers the legacy session to forget and the legacy cookie to expire."""

    __slots__ = ("expired", "forgotten", "legacy", "reader", "runtime")

    def __init__(self, runtime: AdoptingRuntime, reader: LegacyReader, legacy: Legacy) -> None:
        self.runtime = runtime
        self.reader = reader
        self.legacy = legacy
        self.forgotten = False  # the legacy record was deleted
        self.expired = False  # a response carried the legacy cookie's expiry (or ours replaced it)

    async def save_now(self, session: Session) -> None:
        await self.runtime.save_now(session)

    async def reload(self, session: Session) -> None:
        await self.runtime.inner.reload(session)


class ForgetPlan(engine.Plan):
    """A plan whose commit also deletes the legacy record, so it has store work even when
    the new session itself has none (client-side, or destroyed in its first request)."""

    __slots__ = ()

    @property
    def store_work(self) -> bool:
        return True


class AdoptingRuntime:
    """A runtime (`coatcheck.runtime.Runtime`) that adopts legacy sessions; everything else
    is the wrapped runtime's."""

    def __init__(
        self, inner: ServerSideRuntime | ClientSideRuntime, readers: tuple[LegacyReader, ...]
    ) -> None:
        self.inner = inner
        self.readers = readers
        for reader in readers:
            reader.bind(inner.serializer)  # adopt only what this runtime can store
        self._names = tuple(reader.cookie_name.encode("latin-1") for reader in readers)
        self.settings = inner.settings
        self.keyring = inner.keyring
        self.serializer = inner.serializer
        self.session_class = inner.session_class
        self.client_side = inner.client_side

    def __getattr__(self, name: str) -> Any:  # renew_store, layout, clock...: the wrapped runtime's
        return getattr(self.inner, name)

    @property
    def store(self) -> Any:
        return self.inner.store

    def in_scope(self, path: str) -> bool:
        return self.inner.in_scope(path)

    def is_secure(self, request: RequestInfo) -> bool:
        return self.inner.is_secure(request)

    # ---- request start ------------------------------------------------------------------
    def load_without_io(self, request: RequestInfo, *, read_only: bool = False) -> Session | None:
        cookie = request.cookie
        if not read_only and cookie and any(name in cookie for name in self._names):
            return None  # a legacy cookie may be there: `load` asks the readers
        return self.inner.load_without_io(request, read_only=read_only)

    async def load(self, request: RequestInfo, *, read_only: bool = False) -> Session:
        """The coatcheck session if the request has a live one; else a new session adopting
        the first legacy session a reader verifies; else a new, empty session."""
        session = await self.inner.load(request, read_only=read_only)
        if read_only or session.meta is not None or not request.cookie:
            return session  # WebSockets cannot set cookies: adoption waits for an HTTP request
        reading = read_first(self.readers, request.cookie)
        found = await self.inner.bounded("reading a legacy session", reading, "migrate_from")
        if found is None:
            return session
        reader, legacy = found
        adopted = self.inner.new_session(
            request, self.inner.clock(), False, data=dict(legacy.data), host=Adoption(self, reader, legacy)
        )
        adopted.mark_modified()  # saved at commit under its new id
        return adopted

    # ---- request end --------------------------------------------------------------------
    def prepare(self, session: Session, request: RequestInfo, *, unset: bool = False) -> engine.Plan:
        plan = self.inner.prepare(session, request, unset=unset)
        adoption = self._adoption(session)
        if adoption is None or adoption.forgotten or plan.cookie == "none":
            return plan  # nothing committed for the new session: the legacy one stays as it was
        return ForgetPlan(*plan)

    async def apply(self, session: Session, request: RequestInfo, plan: engine.Plan) -> engine.Plan:
        done = await self.inner.apply(session, request, plan)
        adoption = self._adoption(session)
        if adoption is not None and isinstance(plan, ForgetPlan):
            await self._forget(adoption)  # after the new session is written: a failed save loses nothing
        return done

    def finish(self, session: Session, request: RequestInfo, plan: engine.Plan) -> SessionHeaders:
        headers = self.inner.finish(session, request, plan)
        adoption = self._adoption(session)
        if adoption is None or adoption.expired or plan.cookie == "none":
            return headers
        adoption.expired = True
        legacy, cookie = adoption.legacy, self.settings.cookie
        if (legacy.cookie_name, legacy.cookie_path, legacy.cookie_domain) == (
            self.settings.cookie_name,
            cookie.path,
            cookie.domain,
        ):
            return headers  # our cookie, sent now, replaces the legacy one
        expiry = expire_legacy_cookie(legacy, now=self.inner.clock(), secure=self.is_secure(request))
        return SessionHeaders(cache=True, cookies=(*headers.cookies, expiry))

    async def commit(self, session: Session, request: RequestInfo, *, unset: bool = False) -> SessionHeaders:
        plan = self.prepare(session, request, unset=unset)
        if plan is engine.NOTHING:
            return NO_HEADERS
        if plan.store_work:
            plan = await self.apply(session, request, plan)
        return self.finish(session, request, plan)

    # ---- explicit I/O -------------------------------------------------------------------
    async def save_now(self, session: Session) -> None:
        await self.inner.save_now(session)
        adoption = self._adoption(session)
        if adoption is not None and self.client_side is None and session.stored_id is not None:
            await self._forget(adoption)

    async def reload(self, session: Session) -> None:
        await self.inner.reload(session)

    async def close(self) -> None:
        await self.inner.close()

    # ---- helpers ------------------------------------------------------------------------
    def _adoption(self, session: Session) -> Adoption | None:
        host = session.host
        return host if isinstance(host, Adoption) and host.runtime is self else None

    async def _forget(self, adoption: Adoption) -> None:
        """Delete the legacy record once. A legacy store that fails is logged, not a 503: the
        new session is saved and the legacy cookie expired; the record ends at its own TTL."""
        if adoption.forgotten:
            return
        adoption.forgotten = True
        forgetting = adoption.reader.forget(adoption.legacy)
        try:
            await self.inner.bounded("deleting a legacy session", forgetting, "migrate_from")
        except SessionStoreError as exc:
            logger.error("coatcheck: could not delete an adopted %s session: %s", adoption.legacy.source, exc)
