"""`coatcheck.django`: a Django session engine on coatcheck's stores.

    # settings.py
    SESSION_ENGINE = "coatcheck.django"
    COATCHECK_STORE = "redis://localhost:6379/0"    # any store URL, or a Store instance
    COATCHECK_ABSOLUTE_TIMEOUT = 30 * 86400          # seconds or timedelta; None: no limit

`request.session`, `django.contrib.auth` (login, logout, cycle_key, flush),
`django.contrib.messages` and ``SESSION_SAVE_EVERY_REQUEST`` work as with Django's own
backends; the cookie is Django's (``SESSION_COOKIE_*`` settings). What coatcheck adds:

- records in coatcheck's format on any of its stores (memory, SQLite, Redis, SQL, Mongo...),
  keyed by a hash of the session key, so a store dump yields no live cookie;
- an idle deadline (Django's expiry age after the last save, as Django's own backends) and
  an absolute one (`COATCHECK_ABSOLUTE_TIMEOUT`, 30 days by default) that no save extends;
- the user index: ``_auth_user_id`` is the record's user, so `sessions_for(user_id)` and
  `destroy_user(user_id)` ("log out everywhere") work on stores that keep one;
- delta saves on stores that patch: only the keys this request changed are written, so two
  concurrent requests that change different keys both keep their change, and a session
  deleted meanwhile (a logout in another tab) raises Django's `SessionInterrupted` instead
  of coming back.

The async stores run on coatcheck's sync bridge (`coatcheck._sync.run_sync`), from the
thread Django calls the session from (Django's async session API hands work to a thread).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

try:
    from django.conf import settings
    from django.contrib.sessions.backends.base import SessionBase, UpdateError
    from django.core.exceptions import ImproperlyConfigured
    from django.core.signals import setting_changed
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("coatcheck.django needs Django: pip install 'coatcheck[django]'") from exc

from ._sync import run_sync
from .crypto import storage_key
from .record import Meta, Record, SessionInfo
from .stores.base import ClientSideStore, PatchingStore, Store, UserIndex
from .stores.url import from_url

DEFAULT_ABSOLUTE_TIMEOUT = 30 * 86400.0
_lock = threading.Lock()
_store: Store | None = None


def _configured_store() -> Store:
    """The store named by ``COATCHECK_STORE``, built once per process."""
    global _store
    store = _store
    if store is not None:
        return store
    with _lock:
        if _store is None:
            _store = _build_store(getattr(settings, "COATCHECK_STORE", None))
        return _store


def _build_store(value: object) -> Store:
    if value is None:
        raise ImproperlyConfigured(
            "SESSION_ENGINE = 'coatcheck.django' needs COATCHECK_STORE in settings: a store URL "
            "('redis://localhost:6379/0', 'sqlite:///sessions.db', 'postgresql://...') or a Store"
        )
    store = from_url(value) if isinstance(value, str) else value
    if isinstance(store, ClientSideStore) or not isinstance(store, Store):
        raise ImproperlyConfigured(
            f"COATCHECK_STORE must be a server-side store, got {type(store).__name__}; for sessions in "
            "the cookie use Django's 'django.contrib.sessions.backends.signed_cookies'"
        )
    return store


def _absolute_timeout() -> float | None:
    value = getattr(settings, "COATCHECK_ABSOLUTE_TIMEOUT", DEFAULT_ABSOLUTE_TIMEOUT)
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ImproperlyConfigured(
            f"COATCHECK_ABSOLUTE_TIMEOUT must be positive seconds, a timedelta or None, got {value!r}"
        )
    return float(seconds)


def _reset(*, setting: str, **_: Any) -> None:
    """Settings changed (tests' override_settings): the next session builds its store anew."""
    global _store
    if setting == "COATCHECK_STORE":
        with _lock:
            _store = None


setting_changed.connect(_reset)


def _fingerprint(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


class SessionStore(SessionBase):
    """Django's `SessionBase` over a coatcheck store (``SESSION_ENGINE = "coatcheck.django"``)."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._record_meta: Meta | None = None
        self._baseline: dict[str, str] = {}
        self._created: float | None = None  # carried over by cycle_key

    @property
    def store(self) -> Store:
        return _configured_store()

    # ---- reading ----------------------------------------------------------------------
    def _fetch(self, session_key: str) -> Record | None:
        record = run_sync(self.store.get(storage_key(session_key)))
        if record is None or record.meta.is_expired(time.time()):
            return None
        return record

    def load(self) -> dict[str, Any]:
        record = None if self.session_key is None else self._fetch(self.session_key)
        if record is None:
            self._session_key = None
            self._record_meta, self._baseline = None, {}
            return {}
        self._record_meta = record.meta
        self._baseline = {k: _fingerprint(v) for k, v in record.data.items()}
        return record.data

    def exists(self, session_key: str | None) -> bool:
        return session_key is not None and self._fetch(session_key) is not None

    # ---- writing ----------------------------------------------------------------------
    def create(self) -> None:
        # 165 random bits per key: a collision with a live session is not a practical event,
        # so the key is not re-checked between exists() and the write.
        self._session_key = self._get_new_session_key()
        self._record_meta, self._baseline = None, {}
        self.save(must_create=True)
        self.modified = True

    def _meta(self, data: Mapping[str, Any]) -> Meta:
        now = time.time()
        previous = self._record_meta
        created = previous.created if previous is not None else (self._created or now)
        expiry = self.get_expiry_date(expiry=data.get("_session_expiry"))
        absolute = _absolute_timeout()
        user = data.get("_auth_user_id")
        return Meta(
            created=created,
            last_seen=now,
            idle_deadline=_timestamp(expiry),
            absolute_deadline=None if absolute is None else created + absolute,
            user_id=None if user is None else str(user),
            hints=dict(previous.hints) if previous is not None else {},
        )

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)
        meta = self._meta(data)
        key = storage_key(self.session_key)
        store = self.store
        if must_create or self._record_meta is None or not isinstance(store, PatchingStore):
            run_sync(store.set(key, Record(data=dict(data), meta=meta)))
        else:
            changed = {k: v for k, v in data.items() if self._baseline.get(k) != _fingerprint(v)}
            removed = [k for k in self._baseline if k not in data]
            if not run_sync(store.patch(key, changed, removed, meta)):
                raise UpdateError  # deleted meanwhile: Django raises SessionInterrupted
        self._record_meta = meta
        self._baseline = {k: _fingerprint(v) for k, v in data.items()}

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        run_sync(self.store.destroy(storage_key(session_key)))
        if session_key == self.session_key:
            self._record_meta, self._baseline = None, {}

    def cycle_key(self) -> None:
        """A new key for the same data (`django.contrib.auth.login`); the old record is deleted.
        The new record keeps the session's creation time, so the absolute timeout holds."""
        if self._record_meta is not None:
            self._created = self._record_meta.created
        try:
            super().cycle_key()
        finally:
            self._created = None

    @classmethod
    def clear_expired(cls) -> None:
        """`manage.py clearsessions`: purge the store if it can (Redis and memcached expire
        records themselves)."""
        purge = getattr(_configured_store(), "purge_expired", None)
        if purge is not None:
            run_sync(purge())


def _timestamp(when: datetime) -> float:
    # timezone-aware with USE_TZ (the default); naive local time otherwise, which .timestamp() reads as local
    return when.timestamp()


# ---- the operations a Django project can call ----------------------------------------------
def _user_index() -> UserIndex:
    store = _configured_store()
    if not isinstance(store, UserIndex):
        raise ImproperlyConfigured(
            f"{store!r} keeps no user index: use memory, SQLite, Redis, SQL or MongoDB for COATCHECK_STORE"
        )
    return store


def sessions_for(user_id: object) -> list[SessionInfo]:
    """The live sessions of a Django user (its primary key)."""
    return run_sync(_user_index().sessions_for(str(user_id)))


def destroy_user(user_id: object) -> int:
    """Log a Django user out everywhere: delete every session bound to it; returns how many."""
    return run_sync(_user_index().destroy_user(str(user_id)))
