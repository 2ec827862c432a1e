"""The Session object handlers see: a dict that knows which keys changed, plus intents.

Only this module reads or writes a Session's private state. The engine sees a session
through `Session.snapshot()`; the runtime reports back through `after_commit()` and
`replace()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ._http import RequestInfo
from ._session_flash import CSRF_KEY, FlashingDict
from .engine import Plan, Snapshot, data_plan
from .flash import FLASH_PREFIX, Flash, FlashClaims

if TYPE_CHECKING:
    from .codec import Serializer
    from .config import Settings
    from .record import Meta

_READ_ONLY = "this session is read-only (WebSocket scopes cannot change the session)"

__all__ = ["CSRF_KEY", "FLASH_PREFIX", "Flash", "FlashClaims", "Session", "SessionCookie", "SessionHost"]


class SessionHost(Protocol):
    """What a session needs from the runtime that made it: explicit I/O."""

    async def save_now(self, session: Session) -> None: ...

    async def reload(self, session: Session) -> None: ...


class SessionCookie:
    """The session cookie as this session will send it. Only `max_age` is per-session."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def max_age(self) -> timedelta | None:
        """Lifetime of the browser cookie; None means a browser-session cookie."""
        seconds = self.max_age_seconds
        return None if seconds is None else timedelta(seconds=seconds)

    @max_age.setter
    def max_age(self, value: timedelta | float | None) -> None:
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if value is not None and (isinstance(value, bool) or value < 0):
            raise ValueError("cookie.max_age must be a timedelta, a non-negative number or None")
        session = self._session
        session._cookie_overrides["max_age"] = None if value is None else float(value)
        session._cookie_changed = True
        session._accessed = True

    @property
    def max_age_seconds(self) -> float | None:
        overrides = self._session._cookie_overrides
        if "max_age" in overrides:
            return overrides["max_age"]  # type: ignore[no-any-return]
        return self._session._settings.cookie_max_age

    @property
    def original_max_age(self) -> timedelta | None:
        """The max-age the session had when it was loaded or created (express's originalMaxAge)."""
        seconds = self._session._original_max_age
        return None if seconds is None else timedelta(seconds=seconds)

    @property
    def expires(self) -> datetime | None:
        """When the browser will drop the cookie if it is sent on this response."""
        seconds = self.max_age_seconds
        if seconds is None:
            return None
        return datetime.fromtimestamp(self._session._now, UTC) + timedelta(seconds=seconds)

    @property
    def name(self) -> str:
        return self._session._settings.cookie_name

    @property
    def secure(self) -> bool | str:
        return self._session._settings.cookie.secure

    @property
    def http_only(self) -> bool:
        return self._session._settings.cookie.http_only

    @property
    def same_site(self) -> str | None:
        return self._session._settings.cookie.same_site

    @property
    def path(self) -> str:
        return self._session._settings.cookie.path

    @property
    def domain(self) -> str | None:
        return self._session._settings.cookie.domain


class Session(FlashingDict):
    """One request's session: a `dict` of JSON-able (or, with the tagged serializer, richer)
    values that knows what changed.

    Change tracking compares each loaded key's serialized value at first access and at
    commit, so in-place mutation (`s["cart"].append(x)`) is a change, and the engine knows
    which keys changed. Intents (`regenerate`, `destroy`, `login`...) are applied at commit,
    before the response headers are sent.
    """

    __slots__ = (
        "_client_id",
        "_cookie_changed",
        "_cookie_overrides",
        "_cookie_pending",
        "_destroyed",
        "_host",
        "_id",
        "_intent_modified",
        "_loaded_user_id",
        "_meta",
        "_now",
        "_original_max_age",
        "_read_only",
        "_request",
        "_retired_ids",
        "_settings",
        "_stale_signature",
        "_stored_id",
        "_touch",
        "_user_id",
    )
    _host: SessionHost | None

    def __init__(
        self,
        *,
        settings: Settings,
        serializer: Serializer,
        now: float,
        session_id: str | None = None,
        data: dict[str, Any] | None = None,
        meta: Meta | None = None,
        host: SessionHost | None = None,
        request: RequestInfo | None = None,
        read_only: bool = False,
        stale_signature: bool = False,
    ) -> None:
        self._serializer = serializer  # TrackedDict's own state: set by _reset's track()
        self._settings = settings
        self._now = now
        self._host = host
        self._request = request
        self._read_only = read_only
        self._client_id = session_id if meta is not None else None
        self._reset(session_id, data or {}, meta)
        self._stale_signature = stale_signature and meta is not None
        self._accessed = self._stale_signature  # a stale signature is re-issued even if unused

    @classmethod
    def fresh(cls, settings: Settings, serializer: Serializer, now: float, host: SessionHost | None,
              request: RequestInfo | None, read_only: bool = False) -> Session:  # fmt: skip
        """What `Session(settings=..., serializer=..., now=..., host=..., request=...,
        read_only=...)` builds (a new, empty session) by plain slot stores: every request
        without a session cookie gets one."""
        self = dict.__new__(cls)
        self.start_tracking(serializer)
        self._settings, self._now, self._host, self._request = settings, now, host, request
        self._client_id = self._id = self._stored_id = self._meta = self._user_id = self._loaded_user_id = (
            None
        )
        self._read_only, self._cookie_overrides, self._retired_ids = read_only, {}, ()
        self._cookie_changed = self._cookie_pending = self._destroyed = self._touch = False
        self._intent_modified = self._stale_signature = False
        self._original_max_age = settings.cookie_max_age
        return self

    @classmethod
    def loaded(cls, settings: Settings, serializer: Serializer, now: float, host: SessionHost | None,
               request: RequestInfo | None, read_only: bool, session_id: str, data: dict[str, Any],
               meta: Meta, stale_signature: bool = False) -> Session:  # fmt: skip
        """What `Session(settings=..., serializer=..., now=..., host=..., request=...,
        read_only=..., session_id=..., data=..., meta=..., stale_signature=...)` builds for a
        record just loaded, by plain slot stores: every request with a live session gets one."""
        self = dict.__new__(cls)
        self._serializer = serializer
        self.track(data)
        self._settings, self._now, self._host, self._request = settings, now, host, request
        self._read_only, self._meta, self._retired_ids = read_only, meta, ()
        self._client_id = self._id = self._stored_id = session_id
        overrides = self._cookie_overrides = dict(meta.cookie)
        self._original_max_age = overrides.get("max_age", settings.cookie_max_age)
        self._cookie_changed = self._cookie_pending = self._destroyed = self._touch = False
        self._intent_modified = False
        self._user_id = self._loaded_user_id = meta.user_id
        self._stale_signature = self._accessed = stale_signature  # a stale signature is re-issued
        return self

    def _reset(self, session_id: str | None, data: dict[str, Any], meta: Meta | None) -> None:
        self.track(data)
        self._id, self._meta = session_id, meta
        self._stored_id = session_id if meta is not None else None
        overrides = self._cookie_overrides = dict(meta.cookie) if meta else {}
        self._original_max_age = overrides.get("max_age", self._settings.cookie_max_age)
        # a tuple, not a list: nearly always empty, and the empty tuple is not an object of
        # its own for the garbage collector to track
        self._retired_ids: tuple[str, ...] = ()
        self._cookie_changed = self._cookie_pending = self._destroyed = self._touch = False
        self._intent_modified = self._stale_signature = False
        self._user_id = self._loaded_user_id = meta.user_id if meta else None

    # ---- identity -------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The session id (generated on first use for a new session). Never log it."""
        if self._id is None:
            self._id = self._settings.new_id()
        return self._id

    @property
    def is_new(self) -> bool:
        """True until the session exists in the store under its current id."""
        return self._stored_id is None or self._stored_id != self._id

    @property
    def stored_id(self) -> str | None:
        """The id the store holds this session under (None until it is saved). Never log it."""
        return self._stored_id

    @property
    def modified(self) -> bool:
        """True if data, the cookie or the identity changed during this request."""
        changed, removed = self.changes()
        return bool(changed or removed or self._intent_modified or self._cookie_changed)

    @property
    def untouched(self) -> bool:
        """True if the handler never used this session and it owes nothing (no retired id, no
        re-signing): `engine.decide` then plans nothing unless the session was unset or a
        save forced, so adapters may skip building its inputs."""
        return not (self._accessed or self._retired_ids or self._stale_signature)

    @property
    def only_read(self) -> bool:
        """True if this loaded session was read and nothing more (no write, no container handed
        out, no intent, no cookie owed, same id): see `engine.read_plans_nothing`."""
        return bool(
            self._accessed
            and self._meta is not None
            and not (self._written or self._baseline)  # `unchanged`, without a property call
            and not (self._owes() or self._stale_signature or self._read_only)
            and self._id is not None
            and self._id == self._stored_id == self._client_id
        )

    def _owes(self) -> bool:
        """True if an intent or a cookie change is pending (the commit has more to do than data)."""
        return bool(
            self._intent_modified
            or self._cookie_changed
            or self._cookie_pending
            or self._destroyed
            or self._touch
            or self._retired_ids
        )

    @property
    def accessed(self) -> bool:
        """True once the handler read or wrote the session (decides Vary: Cookie)."""
        return self._accessed

    @property
    def user_id(self) -> str | None:
        """The user bound by `login()`, or None."""
        return self._user_id

    @property
    def loaded_user_id(self) -> str | None:
        """The user the stored record was bound to when loaded (or last saved), for audit events."""
        return self._loaded_user_id

    @property
    def client_id(self) -> str | None:
        """The verified id the request's cookie carried, if its record was loaded. Never log it."""
        return self._client_id

    @property
    def meta(self) -> Meta | None:
        """The stored metadata (created, last seen, deadlines), or None for a new session."""
        return self._meta

    @property
    def cookie(self) -> SessionCookie:
        return SessionCookie(self)

    @property
    def settings(self) -> Settings:
        """The middleware settings this session was made under (read-only)."""
        return self._settings

    @property
    def request(self) -> RequestInfo | None:
        """What the adapter told the runtime about the request this session belongs to."""
        return self._request

    @property
    def host(self) -> SessionHost | None:
        """The runtime that performs this session's explicit I/O (`save`, `reload`)."""
        return self._host

    # ---- the dict -------------------------------------------------------------------
    def _before_write(self) -> None:
        if self._read_only:
            raise RuntimeError(_READ_ONLY)
        self._accessed = True
        if self._destroyed:  # writing after destroy() starts a fresh session
            self._destroyed = False
            self._id = None

    def __repr__(self) -> str:
        return f"<Session {'new' if self.is_new else 'loaded'} keys={sorted(dict.keys(self))}>"

    # ---- commit -----------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """What this request did, frozen for `engine.decide`."""
        if not self._accessed and not self._retired_ids:  # untouched: nothing can have changed
            return Snapshot(
                session_id=self._id or "",
                client_id=self._client_id,
                stored_id=self._stored_id,
                accessed=False,
                read_only=self._read_only,
                stale_signature=self._stale_signature,
                meta=self._meta,
            )
        if not (self._written or self._baseline or self._owes()):  # read only: nothing to compare
            overrides = self._cookie_overrides
            snapshot = Snapshot(
                session_id=self.id,
                client_id=self._client_id,
                stored_id=self._stored_id,
                accessed=True,
                read_only=self._read_only,
                data=dict(dict.items(self)),
                stale_signature=self._stale_signature,
                max_age=overrides.get("max_age", self._settings.cookie_max_age),
                meta=self._meta,
                user_id=self._user_id,
            )
            return snapshot._replace(cookie_overrides=dict(overrides)) if overrides else snapshot
        changed, removed = self.changes()
        return Snapshot(
            session_id=self._id if self._id is not None else self.id,
            client_id=self._client_id,
            stored_id=self._stored_id,
            accessed=self._accessed,
            read_only=self._read_only,
            data=dict(dict.items(self)),
            changed=changed,
            removed=frozenset(removed),
            intent_modified=self._intent_modified,
            cookie_changed=self._cookie_changed,
            cookie_pending=self._cookie_pending,
            destroyed=self._destroyed,
            touch=self._touch,
            stale_signature=self._stale_signature,
            retired_ids=self._retired_ids,
            max_age=self._cookie_overrides.get("max_age", self._settings.cookie_max_age),
            cookie_overrides=dict(self._cookie_overrides),
            meta=self._meta,
            user_id=self._user_id,
        )

    def data_plan(self, now: float, cookie_defaults: Mapping[str, Any], can_patch: bool,
                  hints: Mapping[str, str] | None = None) -> Plan | None:  # fmt: skip
        """`engine.data_plan` for this session if its request changed some of its data and
        nothing else (no intent, no cookie owed, not read-only), and it is either loaded (under
        the id it was loaded by) or new (never stored); else None: the runtime then asks
        `engine.decide` with a `snapshot()`. `hints`: a new session's client hints."""
        if not (self._written or self._baseline) or self._read_only or self._stale_signature:
            return None
        if self._owes():  # one list of intents, shared with the general path
            return None
        meta, session_id = self._meta, self._id
        if meta is None:  # new: never stored, no id from the client
            if self._stored_id is not None or self._client_id is not None:
                return None
        elif session_id is None or not session_id == self._stored_id == self._client_id:
            return None
        changed, removed = self.changes()
        if not (changed or removed):
            return None
        data = None if can_patch and meta is not None else dict(dict.items(self))
        if session_id is None:
            session_id = self.id  # a new session's id is made now
        overrides = self._cookie_overrides
        return data_plan(session_id, meta, self._user_id, overrides, changed, removed, data,
                         self._settings, now, cookie_defaults, hints)  # fmt: skip

    def after_commit(self, plan: Plan, *, record_gone: bool = False) -> None:
        """The runtime performed `plan` (an explicit save(), or the end of the request): the
        session continues from what was written, owing the cookie the plan decided to send."""
        self._retired_ids = ()
        if record_gone:
            self._reset(None, {}, None)
            return
        record = plan.record
        if plan.write in ("set", "patch") and record is not None:
            self._stored_id = plan.session_id
            self._meta = record.meta
            self._loaded_user_id = record.meta.user_id
            self.settle()
            self._intent_modified = False
            self._cookie_changed = False
            self._cookie_pending = self._cookie_pending or plan.cookie == "send"
        elif plan.write == "touch" and record is not None:
            self._meta = record.meta
            self._touch = False

    def replace(self, session_id: str | None, data: dict[str, Any], meta: Meta | None) -> None:
        """Start over from what the store holds (`reload()`); None/empty: a new session."""
        self._reset(session_id, data, meta)

    def mark_modified(self) -> None:
        """Save this session even if no key changed (Flask's `session.modified = True`)."""
        if self._read_only:
            raise RuntimeError(_READ_ONLY)
        self._accessed = True
        self._intent_modified = True

    # ---- intents ----------------------------------------------------------------------
    def regenerate(self, keep_data: bool = False) -> None:
        """Issue a new id; the old record is deleted at commit. Data is dropped unless kept."""
        self._before_write()
        if self._stored_id is not None:
            self._retired_ids += (self._stored_id,)
        self._stored_id = None
        self._id = self._settings.new_id()
        self._meta = None
        self.all_new()
        self._intent_modified = keep_data  # carried data must reach the new id; an empty session need not
        if not keep_data:
            dict.clear(self)
            self._user_id = None
        dict.pop(self, CSRF_KEY, None)

    def destroy(self) -> None:
        """Delete the record at commit and expire the cookie. Writing again starts a new session."""
        if self._read_only:
            raise RuntimeError(_READ_ONLY)
        self._accessed = True
        if self._stored_id is not None:
            self._retired_ids += (self._stored_id,)
        self._stored_id = None
        self._id = None
        self._meta = None
        dict.clear(self)
        self.all_new()
        self._user_id = None
        self._cookie_overrides = {}
        self._destroyed = True

    def touch(self) -> None:
        """Reset the idle deadline at commit, even if nothing else changed."""
        self._accessed = True
        self._touch = True

    def login(self, user_id: str | int) -> None:
        """Fixation-safe login: new id, data kept, session bound to `user_id`, CSRF token rotated."""
        self.regenerate(keep_data=True)
        self._user_id = str(user_id)

    def logout(self) -> None:
        """Destroy the session record and expire the cookie."""
        self.destroy()

    async def save(self) -> None:
        """Commit now instead of at the end of the request."""
        await self._require_host().save_now(self)

    async def reload(self) -> None:
        """Discard this request's changes and read the session from the store again."""
        await self._require_host().reload(self)

    def _require_host(self) -> SessionHost:
        if self._host is None:
            raise RuntimeError("this session is not attached to a middleware")
        return self._host
