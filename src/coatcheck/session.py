"""The Session object handlers see: a mapping that knows which keys changed, plus intents."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .codec import Serializer
from .crypto import new_session_id
from .record import Meta

if TYPE_CHECKING:
    from .config import Settings
    from .runtime import RequestInfo, SessionManager

CSRF_KEY = "_csrf"
# Each flash message is its own top-level key ("_flash.<time><random>" -> [category, message]),
# so a request that adds one and a concurrent request that takes another write disjoint keys
# and a delta commit keeps both.
FLASH_PREFIX = "_flash."


class Flash(NamedTuple):
    """One flash message; `str(flash)` is the message."""

    category: str
    message: Any

    def __str__(self) -> str:
        return str(self.message)


class FlashClaims:
    """Flash messages already taken by some request in this process.

    Two requests that loaded a session before either committed both hold its messages;
    the first `flashes()` call claims each one here and the other request skips it. A claim
    is kept `ttl` seconds (at most `max_entries` claims, oldest dropped first), long after
    the claiming request has committed and the store has stopped returning the message.
    """

    def __init__(self, ttl: float = 300.0, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}  # insertion order is expiry order (constant ttl)
        self._lock = threading.Lock()  # WSGI servers call flashes() from several threads

    def claim(self, key: str) -> bool:
        """True exactly once per key (within `ttl`): the caller may show the message."""
        now = time.monotonic()
        with self._lock:
            expiry = self._expiry
            while expiry:
                oldest = next(iter(expiry))
                if expiry[oldest] > now and len(expiry) < self.max_entries:
                    break
                del expiry[oldest]
            if key in expiry:
                return False
            expiry[key] = now + self.ttl
            return True


FLASH_CLAIMS = FlashClaims()
_last_flash_seq = 0


def _flash_key() -> str:
    """A new, unique message key that sorts in the order messages were flashed."""
    global _last_flash_seq
    seq = max(time.time_ns(), _last_flash_seq + 1)
    _last_flash_seq = seq
    return f"{FLASH_PREFIX}{seq:016x}{secrets.token_hex(8)}"


class SessionCookie:
    """The session cookie as this session will send it. Only `max_age` is per-session."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def _settings(self) -> Settings:
        return self._session._settings

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
        self._session._cookie_overrides["max_age"] = None if value is None else float(value)
        self._session._cookie_changed = True
        self._session._accessed = True

    @property
    def max_age_seconds(self) -> float | None:
        overrides = self._session._cookie_overrides
        if "max_age" in overrides:
            return overrides["max_age"]  # type: ignore[no-any-return]
        return self._settings.cookie.max_age  # type: ignore[return-value]

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
        return self._settings.name

    @property
    def secure(self) -> bool | str:
        return self._settings.cookie.secure

    @property
    def http_only(self) -> bool:
        return self._settings.cookie.http_only

    @property
    def same_site(self) -> str | None:
        return self._settings.cookie.same_site

    @property
    def path(self) -> str:
        return self._settings.cookie.path

    @property
    def domain(self) -> str | None:
        return self._settings.cookie.domain


class Session(MutableMapping[str, Any]):
    """One request's view of a session: a mutable mapping of JSON-able values.

    Change tracking compares each top-level key's serialized value at first access and at
    commit, so in-place mutation (`s["cart"].append(x)`) is a change, and the engine knows
    which keys changed. Intents (`regenerate`, `destroy`, `login`...) are applied at commit,
    before the response headers are sent.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        serializer: Serializer,
        now: float,
        session_id: str | None = None,
        data: dict[str, Any] | None = None,
        meta: Meta | None = None,
        manager: SessionManager | None = None,
        request: RequestInfo | None = None,
        read_only: bool = False,
    ) -> None:
        self._settings = settings
        self._request = request
        self._client_id = session_id if meta is not None else None
        self._serializer = serializer
        self._now = now
        self._manager = manager
        self._read_only = read_only
        self._reset(session_id, data or {}, meta)

    def _reset(self, session_id: str | None, data: dict[str, Any], meta: Meta | None) -> None:
        self._id = session_id
        self._stored_id = session_id if meta is not None else None
        self._data = data
        self._meta = meta
        self._loaded_keys = frozenset(data)
        self._baseline: dict[str, bytes] = {}
        self._cookie_overrides: dict[str, Any] = dict(meta.cookie) if meta else {}
        self._cookie_changed = False
        self._send_cookie = False  # set by an explicit save() that planned a Set-Cookie
        default_max_age = cast("float | None", self._settings.cookie.max_age)  # seconds once validated
        self._original_max_age: float | None = self._cookie_overrides.get("max_age", default_max_age)
        self._retired_ids: list[str] = []
        self._destroyed = False
        self._touch = False
        self._intent_modified = False
        self._accessed = False
        self._user_id = meta.user_id if meta else None

    # ---- identity -------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The session id (generated on first use for a new session). Never log it."""
        if self._id is None:
            self._id = new_session_id(self._settings.id_bytes)
        return self._id

    @property
    def is_new(self) -> bool:
        """True until the session exists in the store under its current id."""
        return self._stored_id is None or self._stored_id != self._id

    @property
    def modified(self) -> bool:
        """True if data, the cookie or the identity changed during this request."""
        changed, removed = self.changes()
        return bool(changed or removed or self._intent_modified or self._cookie_changed)

    @property
    def user_id(self) -> str | None:
        """The user bound by `login()`, or None."""
        return self._user_id

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

    # ---- mapping ----------------------------------------------------------------------
    def _snapshot(self, key: str) -> None:
        if key in self._loaded_keys and key not in self._baseline:
            self._baseline[key] = self._serializer.dumps(self._data[key])

    def _writing(self) -> None:
        if self._read_only:
            raise RuntimeError("this session is read-only (WebSocket scopes cannot change the session)")
        self._accessed = True
        if self._destroyed:  # writing after destroy() starts a fresh session
            self._destroyed = False
            self._id = None

    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        value = self._data[key]
        if key not in self._baseline and key in self._loaded_keys:
            self._baseline[key] = self._serializer.dumps(value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be strings, got {type(key).__name__}")
        self._writing()
        self._snapshot(key)
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        self._writing()
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        self._accessed = True
        return iter(list(self._data))

    def __len__(self) -> int:
        self._accessed = True
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._accessed = True
        return key in self._data

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"<Session {'new' if self.is_new else 'loaded'} keys={sorted(self._data)}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Session):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def clear(self) -> None:
        self._writing()
        self._data.clear()

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the data."""
        self._accessed = True
        return dict(self._data)

    # ---- change tracking ---------------------------------------------------------------
    def changes(self) -> tuple[dict[str, Any], set[str]]:
        """(changed or added keys with their values, removed keys) since load."""
        dumps = self._serializer.dumps
        changed: dict[str, Any] = {}
        for key, value in self._data.items():
            if key not in self._loaded_keys:
                changed[key] = value
            else:
                before = self._baseline.get(key)
                if before is not None:
                    try:
                        after = dumps(value)
                    except TypeError as exc:
                        raise TypeError(f"session[{key!r}] is not JSON-serializable: {exc}") from None
                    if after != before:
                        changed[key] = value
        removed = set(self._loaded_keys.difference(self._data))
        return changed, removed

    # ---- intents ----------------------------------------------------------------------
    def regenerate(self, keep_data: bool = False) -> None:
        """Issue a new id; the old record is deleted at commit. Data is dropped unless kept."""
        self._writing()
        if self._stored_id is not None:
            self._retired_ids.append(self._stored_id)
        self._stored_id = None
        self._id = new_session_id(self._settings.id_bytes)
        self._meta = None
        self._loaded_keys = frozenset()
        self._baseline = {}
        self._intent_modified = keep_data  # carried data must reach the new id; an empty session need not
        if not keep_data:
            self._data = {}
            self._user_id = None
        self._data.pop(CSRF_KEY, None)

    def destroy(self) -> None:
        """Delete the record at commit and expire the cookie. Writing again starts a new session."""
        if self._read_only:
            raise RuntimeError("this session is read-only (WebSocket scopes cannot change the session)")
        self._accessed = True
        if self._stored_id is not None:
            self._retired_ids.append(self._stored_id)
        self._stored_id = None
        self._id = None
        self._meta = None
        self._data = {}
        self._loaded_keys = frozenset()
        self._baseline = {}
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
        if self._manager is None:
            raise RuntimeError("this session is not attached to a middleware")
        await self._manager.save_now(self)

    async def reload(self) -> None:
        """Discard this request's changes and read the session from the store again."""
        if self._manager is None:
            raise RuntimeError("this session is not attached to a middleware")
        await self._manager.reload(self)

    # ---- flash and CSRF ------------------------------------------------------------------
    def flash(self, message: Any, category: str = "info") -> None:
        """Queue a JSON-able message for the next page that calls `flashes()`."""
        if not isinstance(category, str):
            raise TypeError(f"flash category must be a string, got {type(category).__name__}")
        self[_flash_key()] = [category, message]

    def flashes(self, category: str | None = None) -> list[Flash]:
        """Return and clear queued messages (only `category`'s, if given), oldest first.

        Each message is returned once: by the first call in this process that takes it
        (`FLASH_CLAIMS`), and never after the taking request has committed.
        """
        self._accessed = True
        taken: list[Flash] = []
        for key in sorted(k for k in self._data if k.startswith(FLASH_PREFIX)):
            entry = self._data[key]
            valid = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
            if valid and category is not None and entry[0] != category:
                continue
            del self[key]  # also when another request claimed it: the store copy is stale
            if valid and FLASH_CLAIMS.claim(key):
                taken.append(Flash(entry[0], entry[1]))
        return taken

    @property
    def csrf_token(self) -> str:
        """The session's synchronizer token (created on first use, rotated by login/regenerate)."""
        token = self.get(CSRF_KEY)
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            self[CSRF_KEY] = token
        return token
