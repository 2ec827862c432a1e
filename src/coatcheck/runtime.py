"""SessionManager: performs what the engine decides, against a store. Shared by every adapter."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from . import engine
from .codec import DEFAULT_SERIALIZER, Serializer
from .config import Cookie, Duration, Settings, Unset
from .crypto import Keyring, storage_key
from .errors import ConfigurationError, SessionStoreError, SessionTooLarge
from .express import Compat, ExpressFormat, check_compat
from .session import Session
from .stores.base import ClientSideStore, OpenedSession, PatchingStore, Store
from .stores.compat import adopt_store
from .stores.sqlite import SQLiteStore
from .stores.url import from_url

logger = logging.getLogger("coatcheck")


@dataclass(slots=True)
class RequestInfo:
    """What the engine needs to know about a request, extracted by the adapter."""

    path: str
    scheme: str
    cookie: bytes | None
    forwarded_proto: bytes | None = None
    user_agent: bytes | None = None
    client_ip: str | None = None


_NOTHING = engine.CommitPlan()  # the plan of a request that never touched its session


class SessionManager:
    """Validated configuration plus the load and commit steps every adapter runs."""

    session_class: type[Session] = Session  # adapters may add methods (the WSGI side's sync save())

    def __init__(
        self,
        *,
        secret: str | bytes | Sequence[str | bytes],
        store: Store | ClientSideStore | str | None = None,
        name: str | None = None,
        cookie: Cookie | None = None,
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
        serializer: Serializer = DEFAULT_SERIALIZER,
        clock: Callable[[], float] = time.time,
        compat: Compat | None = None,
    ) -> None:
        # compat="express": express-session's cookie name, ids and store layout (coatcheck.express)
        self.compat = check_compat(compat)
        if name is None:
            name = "connect.sid" if self.compat == "express" else "session"
        self.settings = Settings.build(
            name=name,
            cookie=cookie,
            resave=resave,
            save_uninitialized=save_uninitialized,
            rolling=rolling,
            unset=unset,
            trust_proxy=trust_proxy,
            idle_timeout=idle_timeout,
            absolute_timeout=absolute_timeout,
            touch_after=touch_after,
            client_hints=client_hints,
            id_bytes=24 if self.compat == "express" else 32,
        )
        self.keyring = Keyring(secret, insecure_dev_secret=insecure_dev_secret)
        if store is None:
            store = SQLiteStore("sessions.db")
        elif isinstance(store, str):
            store = from_url(store)
        # Client-side sessions (CookieStore): the cookie is the store. Every step below branches
        # to the client-side methods at the end of the class, so its Store methods are never used.
        self.client_side: ClientSideStore | None = None
        if isinstance(store, ClientSideStore):
            store.bind(self.keyring, serializer)
            self.client_side = store
        elif not isinstance(store, Store):
            raise ConfigurationError(
                f"store must be a Store (get/set/touch/destroy/close) or a URL string, got {type(store).__name__}"
            )
        self.record_format: ExpressFormat | None = None
        self._key: Callable[[str], str] = storage_key
        if self.compat == "express":  # the store keeps express-session's layout, keyed by raw id
            self.record_format = ExpressFormat(self.settings)
            store = adopt_store(store, self.record_format)
            self._key = self.record_format.storage_key
        self.store: Store = cast(Store, store)
        self.can_patch = isinstance(store, PatchingStore)
        self.cookie_name = self.settings.name.encode()
        self.serializer = serializer
        self.clock = clock
        timeout = store_timeout.total_seconds() if isinstance(store_timeout, timedelta) else store_timeout
        self.store_timeout = None if timeout is None else float(timeout)

    def in_scope(self, path: str) -> bool:
        return engine.path_in_scope(path, self.settings.cookie.path)

    def is_secure(self, request: RequestInfo) -> bool:
        return engine.is_secure(request.scheme, request.forwarded_proto, self.settings.trust_proxy)

    async def _io(self, what: str, call: Any) -> Any:
        """Run one store call, bounded by `store_timeout`; every failure is SessionStoreError."""
        try:
            async with asyncio.timeout(self.store_timeout):  # no extra task, unlike wait_for
                return await call
        except SessionStoreError:
            raise
        except TimeoutError:
            raise SessionStoreError(
                f"{what} timed out after {self.store_timeout:g}s on {self.store!r}"
            ) from None
        except (OSError, ConnectionError) as exc:
            raise SessionStoreError(f"{what} failed on {self.store!r}: {exc}") from exc

    # ---- request start ------------------------------------------------------------------
    async def load(self, request: RequestInfo, *, read_only: bool = False) -> Session:
        """The session for this request: loaded if the cookie is valid and the record live,
        otherwise a fresh one. Raises SessionStoreError if the store cannot answer."""
        if self.client_side is not None:
            return await self._load_client_side(request, read_only=read_only)
        now = self.clock()
        session_id = engine.session_id_from_cookie(request.cookie, self.cookie_name, self.keyring)
        record = None
        if session_id is not None:
            record = await self._io("loading a session", self.store.get(self._key(session_id)))
            if record is not None and not engine.is_live(record.meta, now):
                record = None
        if record is None:
            return self._fresh(request, now, read_only)
        return self.session_class(
            settings=self.settings,
            serializer=self.serializer,
            now=now,
            session_id=session_id,
            data=record.data,
            meta=record.meta,
            manager=self,
            request=request,
            read_only=read_only,
        )

    def load_without_io(self, request: RequestInfo, *, read_only: bool = False) -> Session | None:
        """`load` when it needs no I/O: the fresh session of a request that carries no session
        cookie (server-side stores); None when `load` must run. Lets the sync bridge skip
        the event loop for anonymous requests."""
        if self.client_side is not None or (request.cookie and self.cookie_name in request.cookie):
            return None
        return self._fresh(request, self.clock(), read_only)

    def _fresh(self, request: RequestInfo | None, now: float, read_only: bool) -> Session:
        return self.session_class(
            settings=self.settings,
            serializer=self.serializer,
            now=now,
            manager=self,
            request=request,
            read_only=read_only,
        )

    # ---- request end --------------------------------------------------------------------
    async def commit(
        self, session: Session, request: RequestInfo, *, unset: bool = False
    ) -> engine.CommitPlan:
        """Apply the engine's plan to the store; returns the plan so the adapter can send headers."""
        plan, store_work = self.prepare_commit(session, request, unset=unset)
        if store_work:
            await self.apply_commit(session, plan)
        return plan

    def prepare_commit(
        self, session: Session, request: RequestInfo, *, unset: bool = False
    ) -> tuple[engine.CommitPlan, bool]:
        """The decision half of `commit`, with no I/O: (plan, True if `apply_commit(session,
        plan)` must still run). Lets the sync bridge skip the event loop when nothing is written."""
        if self.client_side is not None:
            return self._commit_client_side(session, request, unset=unset), False
        if session._read_only or not (session._accessed or session._retired_ids or unset):
            return (_NOTHING if not session._accessed else engine.CommitPlan(cache_headers=True)), False
        plan = self._plan(
            session, request, unset=unset, hints=self._hints(request) if self.settings.client_hints else None
        )
        if plan.destroy or plan.write != "none":
            return plan, True
        self._committed(session, plan)
        return plan, False

    def _plan(self, session: Session, request: RequestInfo, **options: Any) -> engine.CommitPlan:
        """The engine's plan for this session now (`options`: unset, hints, force)."""
        secure = self.is_secure(request)
        if self.record_format is not None:
            self.record_format.prepare(session, secure=secure)
        return engine.plan_commit(
            session,
            settings=self.settings,
            keyring=self.keyring,
            secure=secure,
            now=self.clock(),
            can_patch=self.can_patch,
            **options,
        )

    async def apply_commit(self, session: Session, plan: engine.CommitPlan) -> None:
        """The I/O half of `commit`: perform a plan from `prepare_commit` on the store."""
        await self._apply(plan)
        self._committed(session, plan)

    async def _apply(self, plan: engine.CommitPlan) -> None:
        store = self.store
        for retired in plan.destroy:
            await self._io("destroying a session", store.destroy(self._key(retired)))
        if plan.write == "none" or plan.record is None or plan.session_id is None:
            return
        key = self._key(plan.session_id)
        if plan.write == "set":
            await self._io("saving a session", store.set(key, plan.record))
        elif plan.write == "patch":
            patching = cast(PatchingStore, store)  # can_patch was checked once, at start-up
            await self._io(
                "saving a session", patching.patch(key, plan.changed, plan.removed, plan.record.meta)
            )
        elif plan.write == "touch":
            await self._io("touching a session", store.touch(key, plan.record.meta))

    def _committed(self, session: Session, plan: engine.CommitPlan) -> None:
        """After an explicit save(), the session continues from what was just written."""
        session._retired_ids = []
        if plan.write in ("set", "patch") and plan.record is not None:
            session._stored_id = plan.session_id
            session._meta = plan.record.meta
            session._loaded_keys = frozenset(session._data)
            session._baseline = {}
            session._intent_modified = False
            session._cookie_changed = False
            # the response must still carry the cookie this save decided to send (new id,
            # changed max-age, or a persistent cookie refreshed because the data changed)
            session._send_cookie = session._send_cookie or plan.set_cookie is not None
        elif plan.write == "touch" and plan.record is not None:
            session._meta = plan.record.meta
            session._touch = False

    async def save_now(self, session: Session) -> None:
        """`await session.save()`: write now; the Set-Cookie still goes out with the response."""
        if self.client_side is not None:
            self._save_client_side(session)
            return
        if session._request is None:
            raise RuntimeError("session.save() needs the request the session was loaded for")
        plan = self._plan(session, session._request, force=not session._destroyed)
        await self._apply(plan)
        self._committed(session, plan)

    async def reload(self, session: Session) -> None:
        """`await session.reload()`: drop this request's changes, read the record again."""
        if self.client_side is not None:
            await self._reload_client_side(session)
            return
        session_id = session._stored_id
        record = None
        if session_id is not None:
            record = await self._io("reloading a session", self.store.get(self._key(session_id)))
        now = self.clock()
        if record is None or not engine.is_live(record.meta, now):
            session._reset(None, {}, None)
        else:
            session._reset(session_id, record.data, record.meta)

    @staticmethod
    def _hints(request: RequestInfo) -> dict[str, str]:
        hints = {}
        if request.user_agent:
            hints["ua"] = request.user_agent.decode("latin-1")[:200]
        if request.client_ip:
            hints["ip"] = request.client_ip
        return hints

    async def close(self) -> None:
        await self.store.close()

    # ---- client-side sessions (CookieStore): the cookie is the store ----------------------

    async def _open_client_side(self, cookie_header: bytes | None, now: float) -> OpenedSession | None:
        assert self.client_side is not None
        opening = self.client_side.open(cookie_header, self.settings.name, now)
        if getattr(self.client_side, "is_revoked", None) is None:
            opened: OpenedSession | None = await opening  # pure computation: nothing to time out
        else:  # an app's revocation hook may do I/O: bound it like a store call
            opened = await self._io("opening a client-side session", opening)
        return None if opened is None or not engine.is_live(opened.record.meta, now) else opened

    async def _load_client_side(self, request: RequestInfo, *, read_only: bool) -> Session:
        """Open the sealed cookie; anything absent, forged, expired or revoked is a new session.
        (`_io` bounds an async `is_revoked` hook like any store call.)"""
        now = self.clock()
        opened = await self._open_client_side(request.cookie, now)
        if opened is None:
            return self._fresh(request, now, read_only)
        session = self.session_class(
            settings=self.settings,
            serializer=self.serializer,
            now=now,
            session_id=opened.session_id,
            data=opened.record.data,
            meta=opened.record.meta,
            manager=self,
            request=request,
            read_only=read_only,
        )
        if opened.reseal:
            # Opened with an older secret: re-seal with the current one on this response, even
            # if the handler never uses the session (adapters skip commits of unused sessions).
            session._touch = True
            session._accessed = True
        return session

    def _commit_client_side(
        self, session: Session, request: RequestInfo, *, unset: bool
    ) -> engine.CommitPlan:
        """The Set-Cookie values of a client-side session. A session too large for its cookies
        raises SessionTooLarge with `debug`; otherwise it is logged and no cookie is sent,
        so the browser keeps the previous (still valid) one."""
        assert self.client_side is not None
        if session._read_only or not (session._accessed or session._touch or session._retired_ids or unset):
            return engine.CommitPlan(cache_headers=session._accessed)
        try:
            return engine.plan_client_commit(
                session,
                settings=self.settings,
                store=self.client_side,
                secure=self.is_secure(request),
                now=self.clock(),
                cookie_header=request.cookie,
                unset=unset,
            )
        except SessionTooLarge as exc:
            if self.client_side.debug:
                raise
            logger.error("coatcheck: %s (the session was not saved; the previous cookie stays)", exc)
            return engine.CommitPlan(cache_headers=session._accessed)

    def _save_client_side(self, session: Session) -> None:
        """`save()` on a cookie session: nothing to write early, but the session is sealed into
        the response even if unchanged (the cookie goes out with the response)."""
        if not session._destroyed:
            session._intent_modified = True

    async def _reload_client_side(self, session: Session) -> None:
        """`reload()`: drop this request's changes and reopen the request's cookie."""
        now = self.clock()
        cookie = session._request.cookie if session._request is not None else None
        opened = await self._open_client_side(cookie, now)
        if opened is None:
            session._reset(None, {}, None)
        else:
            session._reset(opened.session_id, opened.record.data, opened.record.meta)


def log_store_error(exc: SessionStoreError, during: str) -> None:
    """One clear line for operators; never a session id."""
    logger.error("coatcheck: session store unavailable while %s: %s (responding 503)", during, exc)
