"""The runtime performs what the engine decides: load, commit, explicit save and reload.

Two strategies share one protocol, chosen once at construction:
`ServerSideRuntime` (a signed id in the cookie, the data in a store) and
`ClientSideRuntime` (the sealed record is the cookie); `coatcheck.strategy.build_runtime`
picks one. Adapters call `load` at request
start and `commit` before the response starts; the sync bridge splits `commit` into its
pure half (`prepare`, `finish`) and its I/O half (`apply`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from . import engine, telemetry
from ._anyloop import fail_after, needs_asyncio, running_asyncio_loop
from ._deadline import Deadlines
from ._http import CACHE_HEADERS, NO_HEADERS, RequestInfo, SessionHeaders
from .audit import Auditor
from .codec import Serializer, serializer_for
from .config import Settings
from .crypto import Keyring
from .errors import SessionStoreError
from .record import Meta
from .session import Session, SessionHost
from .stores.base import ClientSideStore

logger = logging.getLogger("coatcheck")
T = TypeVar("T")


class Runtime(Protocol):
    """What every adapter may call. Each method raises SessionStoreError when the store fails."""

    settings: Settings
    keyring: Keyring
    serializer: Serializer
    session_class: type[Session]
    client_side: ClientSideStore | None  # the CookieStore of a client-side runtime

    @property
    def store(self) -> Any: ...

    def in_scope(self, path: str) -> bool: ...

    def is_secure(self, request: RequestInfo) -> bool: ...

    def load_without_io(self, request: RequestInfo, *, read_only: bool = False) -> Session | None:
        """The session, if loading it needs no I/O (no session cookie); else None: call `load`."""

    async def load(self, request: RequestInfo, *, read_only: bool = False) -> Session: ...

    def prepare(self, session: Session, request: RequestInfo, *, unset: bool = False) -> engine.Plan:
        """The engine's plan for the end of this request (pure)."""

    async def apply(self, session: Session, request: RequestInfo, plan: engine.Plan) -> engine.Plan:
        """Perform the plan's store work; returns the plan to finish with (re-decided if a
        delta commit found the record gone)."""

    def finish(self, session: Session, request: RequestInfo, plan: engine.Plan) -> SessionHeaders:
        """Render the plan's cookies; the session continues from what was committed."""

    async def commit(
        self, session: Session, request: RequestInfo, *, unset: bool = False
    ) -> SessionHeaders: ...

    async def save_now(self, session: Session) -> None: ...

    async def reload(self, session: Session) -> None: ...

    async def close(self) -> None: ...


class RuntimeBase:
    """What both strategies share: settings, keys, the clock, sessions, bounded store calls."""

    client_side: ClientSideStore | None = None

    def __init__(self, settings: Settings, session_class: type[Session] = Session) -> None:
        self.settings = settings
        self.session_class = session_class
        self.keyring = Keyring(settings.secret, insecure_dev_secret=settings.insecure_dev_secret)
        self.serializer = serializer_for(settings.serializer)
        self.clock = settings.clock
        self.cookie_name = settings.cookie_name.encode()
        self.audit = Auditor(settings.on_event, clock=settings.clock)
        self._deadlines = Deadlines(settings.timeout_seconds)

    def in_scope(self, path: str) -> bool:
        return engine.path_in_scope(path, self.settings.cookie.path)

    def is_secure(self, request: RequestInfo) -> bool:
        return engine.is_secure(request.scheme, request.forwarded_proto, self.settings.trust_proxy)

    def new_session(
        self,
        request: RequestInfo | None,
        now: float,
        read_only: bool,
        *,
        session_id: str | None = None,
        data: dict[str, Any] | None = None,
        meta: Meta | None = None,
        stale_signature: bool = False,
        host: SessionHost | None = None,
    ) -> Session:
        """A session of this runtime; `host` (default: this runtime) performs its explicit I/O."""
        if session_id is None and meta is None and not data:
            return self.session_class.fresh(
                self.settings,
                self.serializer,
                now,
                host or self,  # type: ignore[arg-type]  # every subclass is a SessionHost
                request,
                read_only,
            )
        return self.session_class(
            settings=self.settings,
            serializer=self.serializer,
            now=now,
            session_id=session_id,
            data=data,
            meta=meta,
            host=host or self,  # type: ignore[arg-type]  # every subclass is a SessionHost
            request=request,
            read_only=read_only,
            stale_signature=stale_signature,
        )

    async def bounded(self, what: str, call: Awaitable[T], target: object) -> T:
        """One store call, bounded by `store_timeout`; every failure is SessionStoreError.

        On asyncio the deadline is asyncio's; under trio it is anyio's, and a store that
        does not declare `anyio_compatible` is refused with a message naming the library."""
        timeout = self.settings.timeout_seconds
        if telemetry.ENABLED:
            call = telemetry.wrap(what, call, target)
        try:
            loop = running_asyncio_loop()
            if loop is not None:
                # the runtime's Deadlines: one timer per loop, not one per call (_deadline.py)
                deadlines, task = self._deadlines, asyncio.current_task(loop)
                if deadlines.seconds is None or task is None:
                    return await call
                watch, token, cancelling = deadlines.arm(loop, task)
                try:
                    return await call
                except asyncio.CancelledError:
                    if deadlines.expired(watch, token, task, cancelling):
                        raise TimeoutError from None  # mapped below, as a timeout
                    raise
                finally:
                    deadlines.disarm(watch, token, task)
            if not getattr(target, "anyio_compatible", False):
                if inspect.iscoroutine(call):
                    call.close()  # never awaited: closing it avoids a RuntimeWarning
                raise SessionStoreError(needs_asyncio(what, target))
            with fail_after(timeout):
                return await call
        except SessionStoreError as exc:
            self.audit.store_error(what, exc)
            raise
        except TimeoutError:
            error = SessionStoreError(f"{what} timed out after {timeout:g}s on {target!r}")
            self.audit.store_error(what, error)
            raise error from None
        except (OSError, ConnectionError) as exc:
            error = SessionStoreError(f"{what} failed on {target!r}: {exc}")
            self.audit.store_error(what, error)
            raise error from exc

    def facts(self, request: RequestInfo, **extra: Any) -> engine.Facts:
        return engine.Facts(now=self.clock(), secure=self.is_secure(request), **extra)

    async def commit(self, session: Session, request: RequestInfo, *, unset: bool = False) -> SessionHeaders:
        """Decide, write, render: everything before the response starts."""
        if not unset:
            if session.untouched:  # decide() would plan NOTHING: skip building its inputs
                return NO_HEADERS
            meta = session.meta
            if (
                meta is not None
                and session.only_read
                and engine.read_plans_nothing(meta, self.settings, self.clock())
            ):
                return CACHE_HEADERS  # a plan with no write and no cookie: no events, nothing to settle
        plan = self.prepare(session, request, unset=unset)
        if plan is engine.NOTHING:
            return NO_HEADERS
        if plan.destroy or plan.write != "none":  # plan.store_work, without a property call
            plan = await self.apply(session, request, plan)
        return self.finish(session, request, plan)

    def prepare(self, session: Session, request: RequestInfo, *, unset: bool = False) -> engine.Plan:
        raise NotImplementedError

    async def apply(self, session: Session, request: RequestInfo, plan: engine.Plan) -> engine.Plan:
        raise NotImplementedError

    def finish(self, session: Session, request: RequestInfo, plan: engine.Plan) -> SessionHeaders:
        raise NotImplementedError


def log_store_error(exc: SessionStoreError, during: str) -> None:
    """One clear line for operators; never a session id."""
    logger.error("coatcheck: session store unavailable while %s: %s (responding 503)", during, exc)
    telemetry.count_unavailable(during)
