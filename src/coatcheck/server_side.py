"""Server-side sessions: a signed id in the cookie, the record in a store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _sync, engine, telemetry
from ._http import CACHE_HEADERS, NO_HEADERS, RequestInfo, SessionHeaders
from .audit import watch_store
from .config import Settings
from .cookies import first_cookie
from .errors import SessionStoreError
from .runtime import RuntimeBase
from .session import Session
from .stores.base import FlashClaiming, PatchingStore, Store, SyncTwin

if TYPE_CHECKING:
    from .layout import Layout
    from .record import Record

logger = logging.getLogger("coatcheck")
T = TypeVar("T")


class ServerSideRuntime(RuntimeBase):
    """Loads by the verified id in the cookie, commits plans to the store, signs the id."""

    def __init__(
        self, settings: Settings, store: Store, layout: Layout, session_class: type[Session] = Session
    ) -> None:
        super().__init__(settings, session_class)
        self.layout = layout
        self.record_format = layout.record_format
        self._key = layout.key
        self._sign = layout.sign or self.keyring.sign_id
        self._verify = layout.verify or self.keyring.verify_id
        self._cookie_defaults = layout.cookie_defaults
        self._store = self._adopted(store)
        self._twin: tuple[Store | None, SyncTwin | None] = (None, None)  # (its store, its twin)

    @property
    def store(self) -> Store:
        return self._store

    def _adopted(self, store: Store) -> Store:
        """The store, told to encode records with the `serializer` option when one is named
        ("tagged", or an object), so what comes back from it has the types that went in."""
        self.can_patch = isinstance(store, PatchingStore)
        self.can_claim_flashes = isinstance(store, FlashClaiming)
        watch_store(store, self.audit)  # destroy_user() events reach this middleware's hook
        if self.settings.serializer != "json":
            use = getattr(store, "use_serializer", None)
            if use is None:  # a third-party or compat store: it encodes records its own way
                logger.warning(
                    "coatcheck: %s encodes records itself; serializer=%r is not applied to it "
                    "(give the store that serializer, or values may come back with other types)",
                    type(store).__name__,
                    self.settings.serializer,
                )
            else:
                use(self.serializer)
        return store

    def renew_store(self) -> None:
        """After fork(): a store given as a URL is opened again, so no connection is shared
        between processes (the parent's is kept, never closed, since it holds its sockets)."""
        if isinstance(self.settings.store, str):
            _sync.keep_forever(self._store)
            self._store = self._adopted(cast(Store, self.layout.open_store(self.settings.store)))

    # ---- request start ------------------------------------------------------------------
    def load_without_io(self, request: RequestInfo, *, read_only: bool = False) -> Session | None:
        cookie = request.cookie
        if cookie and self.cookie_name in cookie:
            return None
        return self.session_class.fresh(
            self.settings, self.serializer, self.clock(), self, request, read_only
        )

    async def load(self, request: RequestInfo, *, read_only: bool = False) -> Session:
        """Loaded if the cookie verifies and the record is live; otherwise a new session."""
        now = self.clock()
        located = self._locate(request)
        if located is None:
            return self.new_session(request, now, read_only)
        record = await self.bounded("loading a session", self._store.get(located[2]), self._store)
        return self._loaded(request, now, read_only, located, record)

    def _locate(self, request: RequestInfo) -> tuple[str, bool, str] | None:
        """(id, signed with the current secret?, storage key) of the request's verified
        cookie, or None; the key is remembered on `request` for the commit."""
        value = first_cookie(request.cookie, self.cookie_name) if request.cookie else None
        verified = None if value is None else self._verify(value)
        if verified is None:
            return None
        session_id, current_key = verified
        key = self._key(session_id)
        request.storage_key = (session_id, key)
        return session_id, current_key, key

    def _loaded(
        self,
        request: RequestInfo,
        now: float,
        read_only: bool,
        located: tuple[str, bool, str],
        record: Record | None,
    ) -> Session:
        """The session for what the store gave for a verified cookie: it, if live; else new."""
        session_id, current_key, _ = located
        if record is not None and engine.is_live(record.meta, now):
            return self.session_class.loaded(
                self.settings,
                self.serializer,
                now,
                self,
                request,
                read_only,
                session_id,
                record.data,
                record.meta,
                not current_key,  # stale_signature: re-issued under the current secret
            )
        self.audit.expired(session_id, "gone" if record is None else "deadline", request.path)
        return self.new_session(request, now, read_only)

    def _stored_as(self, request: RequestInfo, session_id: str) -> str:
        """The storage key of `session_id`: the one hashed at load, if it is that id's."""
        loaded = request.storage_key
        return loaded[1] if loaded is not None and loaded[0] == session_id else self._key(session_id)

    def _record_gone(self, session: Session, request: RequestInfo, plan: engine.Plan) -> engine.Plan:
        """The plan after a patch found its record gone (destroyed or expired meanwhile)."""
        session.after_commit(plan, record_gone=True)
        return engine.decide(session.snapshot(), self.settings, self.facts(request, record_gone=True))

    # ---- request end --------------------------------------------------------------------
    def prepare(
        self, session: Session, request: RequestInfo, *, unset: bool = False, force: bool = False
    ) -> engine.Plan:
        secure = self.is_secure(request)
        if not (unset or force) and (secure or self.settings.cookie.secure is not True):
            # a session of which only data changed: `decide`'s plan without its inputs
            new_hints = self._hints(request) if self.settings.client_hints and session.meta is None else None
            plan = session.data_plan(self.clock(), self._cookie_defaults[secure], self.can_patch, new_hints)
            if plan is not None:
                return plan
        snapshot = session.snapshot()
        # Client hints only ever go into a new session's metadata: not parsed for loaded ones.
        hints = self._hints(request) if self.settings.client_hints and snapshot.meta is None else None
        facts = engine.Facts(
            now=self.clock(),
            secure=secure,
            unset=unset,
            force=force,
            can_patch=self.can_patch,
            hints=hints,
            cookie_defaults=self._cookie_defaults[secure],
        )
        return engine.decide(snapshot, self.settings, facts)

    async def apply(self, session: Session, request: RequestInfo, plan: engine.Plan) -> engine.Plan:
        store, key = self._store, self._key
        for retired in plan.destroy:
            await self.bounded("destroying a session", store.destroy(key(retired)), store)
        record, session_id = plan.record, plan.session_id
        if record is None or session_id is None:
            return plan
        loaded = request.storage_key  # `_stored_as`, inline: the key hashed at load, if it is this id's
        stored_as = loaded[1] if loaded is not None and loaded[0] == session_id else key(session_id)
        if plan.write == "set":
            await self.bounded("saving a session", store.set(stored_as, record), store)
        elif plan.write == "patch":
            patching = cast(PatchingStore, store)  # can_patch was checked once, at start-up
            call = patching.patch(stored_as, dict(plan.changed), plan.removed, record.meta)
            if not await self.bounded("saving a session", call, store):
                return self._record_gone(session, request, plan)
        elif plan.write == "touch":
            await self.bounded("touching a session", store.touch(stored_as, record.meta), store)
        return plan

    def finish(self, session: Session, request: RequestInfo, plan: engine.Plan) -> SessionHeaders:
        self.audit.committed(session, plan)
        session.after_commit(plan)
        if plan.cookie == "none":
            return CACHE_HEADERS if plan.cache_headers else NO_HEADERS
        secure, now = self.is_secure(request), self.clock()
        if plan.cookie == "expire" or plan.session_id is None:
            value = engine.session_cookie(self.settings, "", 0, secure, now)
        else:
            signed = self._sign(plan.session_id)
            value = engine.session_cookie(self.settings, signed, plan.max_age, secure, now)
        return SessionHeaders(cache=True, cookies=(value,))

    # ---- explicit I/O -------------------------------------------------------------------
    async def save_now(self, session: Session) -> None:
        """`await session.save()`: write now; the Set-Cookie still goes out with the response."""
        request = session.request
        if request is None:
            raise RuntimeError("session.save() needs the request the session was loaded for")
        plan = self.prepare(session, request, force=True)  # a destroyed session's destroy wins
        plan = await self.apply(session, request, plan)
        self.audit.committed(session, plan)
        session.after_commit(plan)

    async def reload(self, session: Session) -> None:
        """`await session.reload()`: drop this request's changes, read the record again."""
        stored_id = session.stored_id
        record = None
        if stored_id is not None:
            record = await self.bounded(
                "reloading a session", self._store.get(self._key(stored_id)), self._store
            )
        if record is None or not engine.is_live(record.meta, self.clock()):
            session.replace(None, {}, None)
        else:
            session.replace(stored_id, record.data, record.meta)

    async def claim_flashes(self, session: Session, names: list[str]) -> set[str]:
        """Take flash messages out of the stored record (`FlashClaiming`); the ones returned
        are this caller's to show. Names the store never held (queued by this request) are
        not asked for: the caller shows those itself."""
        stored_id = session.stored_id
        if not names or stored_id is None:
            return set()
        store = cast(FlashClaiming, self._store)
        call = store.claim(self._key(stored_id), names)
        return set(await self.bounded("claiming flash messages", call, store))

    async def close(self) -> None:
        await self._store.close()

    # ---- the direct path of WSGI threads: `load` and `apply` through the store's twin ----
    def sync_store(self) -> SyncTwin | None:
        """The store's blocking twin (`stores.base.SyncTwin`), or None: the caller takes the
        event-loop bridge (a store without a twin, or OpenTelemetry set up, whose spans the
        async path emits)."""
        store = self._store
        of, twin = self._twin
        if of is not store:  # first use, or a store opened again after fork()
            make = getattr(store, "sync_twin", None)
            twin = make(self.settings.timeout_seconds) if make is not None else None
            self._twin = (store, twin)
        return None if twin is None or telemetry.instrumented() else twin

    def load_direct(self, request: RequestInfo, twin: SyncTwin, *, read_only: bool = False) -> Session:
        """`load`, blocking, through `twin`."""
        now = self.clock()
        located = self._locate(request)
        if located is None:
            return self.new_session(request, now, read_only)
        record = self._direct("loading a session", twin.get, located[2])
        return self._loaded(request, now, read_only, located, record)

    def apply_direct(
        self, session: Session, request: RequestInfo, plan: engine.Plan, twin: SyncTwin
    ) -> engine.Plan:
        """`apply`, blocking, through `twin`."""
        key, direct = self._key, self._direct
        for retired in plan.destroy:
            direct("destroying a session", twin.destroy, key(retired))
        record, session_id = plan.record, plan.session_id
        if record is None or session_id is None:
            return plan
        stored_as = self._stored_as(request, session_id)
        if plan.write == "set":
            direct("saving a session", twin.set, stored_as, record)
        elif plan.write == "patch":
            if not direct(
                "saving a session", twin.patch, stored_as, dict(plan.changed), plan.removed, record.meta
            ):
                return self._record_gone(session, request, plan)
        elif plan.write == "touch":
            direct("touching a session", twin.touch, stored_as, record.meta)
        return plan

    def _direct(self, what: str, call: Callable[..., T], *args: Any) -> T:
        """One blocking store call; its failure is audited as `bounded` audits it."""
        try:
            return call(*args)
        except SessionStoreError as exc:
            self.audit.store_error(what, exc)
            raise
        except (OSError, ConnectionError) as exc:
            error = SessionStoreError(f"{what} failed on {self._store!r}: {exc}")
            self.audit.store_error(what, error)
            raise error from exc

    @staticmethod
    def _hints(request: RequestInfo) -> dict[str, str]:
        hints = {}
        if request.user_agent:
            hints["ua"] = request.user_agent.decode("latin-1")[:200]
        if request.client_ip:
            hints["ip"] = request.client_ip
        return hints
