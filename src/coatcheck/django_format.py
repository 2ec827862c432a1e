"""`compat="django"`: Django's session format, without Django.

What Django's session backends keep, and how coatcheck maps it:

- **Session keys** are 32 characters of ``[a-z0-9]`` (`new_id`); the database backend's
  cookie (``sessionid``) carries the key itself, unsigned, and the ``django_session`` row is
  keyed by it (`DjangoFormat.storage_key` is the identity).
- **session_data** is `django.core.signing.dumps(data, salt="django.contrib.sessions." +
  SessionStore.__qualname__, compress=True)` with the JSON serializer: for the database
  (and cached_db) backend the salt is ``django.contrib.sessions.SessionStore``. The
  signed_cookies backend puts the same kind of signed object in the cookie itself, under the
  salt ``django.contrib.sessions.backends.signed_cookies``. The secrets are ``SECRET_KEY``
  (signs) and ``SECRET_KEY_FALLBACKS`` (verify), i.e. the middleware's `secret` list.
- **Data** keeps Django's keys, so everything round-trips. ``_auth_user_id`` is the session's
  user (`Meta.user_id`, the primary key as a string); it and ``_auth_user_backend`` /
  ``_auth_user_hash`` are Django's to write: coatcheck refuses to change them (a clear
  ValueError at commit), because only Django can compute the hash its auth middleware checks.
  Logging out from coatcheck (`session.logout()` / `destroy()`) deletes the row, which Django
  sees as logged out; Django's logout deletes it too, which coatcheck sees.
- **Deadlines.** A row lives until ``expire_date``: the last save plus the session's expiry
  age (``_session_expiry`` seconds, an ISO date, or ``SESSION_COOKIE_AGE``, 1209600 s by
  default: `cookie_age`). coatcheck reads ``expire_date`` as the idle deadline, writes it the
  same way on every save and touch, and never past its own absolute deadline. What coatcheck
  needs and Django has no column for (when it first saw the session, client hints) lives in
  one extra data key, ``_coatcheck``, that Django carries along like any other.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._django_signing import DjangoSigner
from .config import DJANGO_COOKIE_AGE, DJANGO_KEY_CHARS, Settings, django_key
from .record import Meta, Record

if TYPE_CHECKING:
    from .session import Session

COOKIE_NAME = "sessionid"  # Django's SESSION_COOKIE_NAME default
COOKIE_AGE = DJANGO_COOKIE_AGE
DB_SALT = "django.contrib.sessions.SessionStore"  # db and cached_db backends (key_salt)
SIGNED_COOKIES_SALT = "django.contrib.sessions.backends.signed_cookies"
AUTH_KEYS = ("_auth_user_id", "_auth_user_backend", "_auth_user_hash")
EXPIRY_KEY = "_session_expiry"
META_FIELD = "_coatcheck"
DJANGO_EXPIRY = "django"  # Meta.cookie key: the session's Django expiry ({"age": s} or {"at": ts})
KEY_CHARS = DJANGO_KEY_CHARS
KEY_LENGTH = 32
_KEY = re.compile(r"^[a-z0-9]{8,40}\Z")


new_id = django_key  # a new session key like Django's: 32 characters of [a-z0-9] (165 bits)


def valid_id(value: str | bytes) -> bool:
    """True for a value that may be a Django session key (8-40 characters of [a-z0-9]: what
    Django generates, within its column), so anything else never reaches the store."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return False
    return bool(_KEY.match(value))


def check_changed(changed: Collection[str], removed: Collection[str] = ()) -> None:
    """Refuse a commit that writes Django's auth keys."""
    for key in (*changed, *removed):
        if key in AUTH_KEYS:
            raise ValueError(
                f"session key {key!r} is Django's (django.contrib.auth) and read-only with compat='django': "
                "log users in with Django's login(); session.logout() logs out on both sides"
            )
        if key == META_FIELD:
            raise ValueError(f"session key {META_FIELD!r} is coatcheck's own metadata: use another key")


def _user(data: Mapping[str, Any]) -> str | None:
    user = data.get("_auth_user_id")
    return None if user is None else str(user)


def _timestamp(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True, slots=True)
class DjangoFormat:
    """Django's session format bound to the middleware's settings and secrets.

    `keys` are ``SECRET_KEY`` then ``SECRET_KEY_FALLBACKS`` (the middleware's keyring);
    `cookie_age` is Django's ``SESSION_COOKIE_AGE`` and `expire_at_browser_close` its
    ``SESSION_EXPIRE_AT_BROWSER_CLOSE``; `salt` is the session_data salt (the default is the
    database backend's; a custom session store class has its own qualname in it).
    """

    settings: Settings
    keys: Sequence[bytes]
    cookie_age: float = COOKIE_AGE
    expire_at_browser_close: bool = False
    salt: str = DB_SALT
    name: str = "django"
    signer: DjangoSigner = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.cookie_age > 0:
            raise ValueError(f"cookie_age (SESSION_COOKIE_AGE) must be positive, got {self.cookie_age!r}")
        object.__setattr__(self, "signer", DjangoSigner(list(self.keys), self.salt))

    # ---- identity ---------------------------------------------------------------------
    @staticmethod
    def storage_key(session_id: str) -> str:
        """Django keys ``django_session`` rows by the session key itself."""
        return session_id

    new_id = staticmethod(new_id)
    valid_id = staticmethod(valid_id)

    @staticmethod
    def id_from_cookie(value: bytes | None) -> str | None:
        """The session key in the database backend's cookie (the raw key, unsigned: Django's
        wire format), or None for anything that is not a Django session key."""
        if value is None or not valid_id(value):
            return None
        return value.decode("ascii")

    @staticmethod
    def cookie_value(session_id: str) -> str:
        """The database backend's cookie value: the key itself (Django does not sign it)."""
        return session_id

    def prepare(self, session: Session, *, secure: bool) -> None:
        """Nothing to fix per session (the hook `ExpressFormat` uses for its cookie attributes)."""

    # ---- session_data -----------------------------------------------------------------
    def encode(self, data: Mapping[str, Any], *, now: float | None = None) -> str:
        """`SessionBase.encode(data)`: what Django stores in ``session_data``."""
        return self.signer.sign_object(dict(data), now=now)

    def decode(self, session_data: str | bytes) -> dict[str, Any] | None:
        """`SessionBase.decode`, or None if the value is forged, signed with an unknown secret or
        not a JSON object (Django would log "Session data corrupted" and start empty)."""
        opened = self.signer.unsign_object(session_data)
        if opened is None or not isinstance(opened.value, dict):
            return None
        return opened.value

    # ---- deadlines --------------------------------------------------------------------
    def expiry(self, data: Mapping[str, Any]) -> dict[str, float]:
        """The session's Django expiry: ``{"age": seconds}`` after the last save, or
        ``{"at": timestamp}`` for an ISO ``_session_expiry`` (SessionBase.get_expiry_date)."""
        value = data.get(EXPIRY_KEY)
        if isinstance(value, str):
            at = _timestamp(value)
            if at is not None:
                return {"at": at}
        elif isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return {"age": float(value)}
        return {"age": self.cookie_age}

    def cookie_max_age(self, data: Mapping[str, Any], now: float) -> float | None:
        """Max-Age of Django's cookie for this session; None: a browser-session cookie."""
        value = data.get(EXPIRY_KEY)
        if value == 0 or (value is None and self.expire_at_browser_close):
            return None
        expiry = self.expiry(data)
        return max(expiry["at"] - now, 0.0) if "at" in expiry else expiry["age"]

    def deadline(self, meta: Meta, data: Mapping[str, Any] | None = None) -> float:
        """``expire_date`` for a save (with `data`) or a touch (the expiry read at load), as
        Django computes it, never past coatcheck's absolute deadline."""
        expiry = self.expiry(data) if data is not None else meta.cookie.get(DJANGO_EXPIRY)
        if not isinstance(expiry, dict):
            expiry = {"age": self.cookie_age}
        at = expiry.get("at")
        deadline = float(at) if at is not None else meta.last_seen + float(expiry.get("age", self.cookie_age))
        absolute = meta.absolute_deadline
        return deadline if absolute is None else min(deadline, absolute)

    # ---- reading ----------------------------------------------------------------------
    def record(self, stored: Mapping[str, Any], *, now: float, expires_at: float | None) -> Record:
        """A decoded Django session as a coatcheck record. `expires_at` is ``expire_date``
        (the database backend), or the signature time plus `cookie_age` (signed_cookies)."""
        data = {k: v for k, v in stored.items() if k != META_FIELD}
        own = stored.get(META_FIELD)
        own = own if isinstance(own, dict) else {}
        expiry = self.expiry(data)
        age = expiry.get("age")
        # Django sets expire_date to "last save + age", so the last save is recoverable from it
        last_seen = now if expires_at is None or age is None else min(now, expires_at - age)
        created = own.get("created")
        if isinstance(created, bool) or not isinstance(created, int | float) or created > now:
            created = now  # never saved by coatcheck: its absolute timeout starts now
        absolute = self.settings.absolute_seconds
        hints = own.get("hints")
        meta = Meta(
            created=float(created),
            last_seen=last_seen,
            idle_deadline=expires_at,
            absolute_deadline=None if absolute is None else float(created) + absolute,
            user_id=_user(data),
            cookie={"max_age": self.cookie_max_age(data, now), DJANGO_EXPIRY: expiry},
            hints={str(k): str(v) for k, v in hints.items()} if isinstance(hints, dict) else {},
        )
        return Record(data=data, meta=meta)

    # ---- writing ----------------------------------------------------------------------
    @staticmethod
    def own_fields(meta: Meta) -> dict[str, Any]:
        own: dict[str, Any] = {"created": meta.created}
        if meta.hints:
            own["hints"] = dict(meta.hints)
        return own

    def session_object(self, data: Mapping[str, Any], meta: Meta) -> dict[str, Any]:
        """The whole session as Django will load it. Raises ValueError if the session's user
        (`Meta.user_id`) is not the one Django's ``_auth_user_id`` says: coatcheck cannot log
        a user in for Django."""
        if META_FIELD in data:
            check_changed([META_FIELD])
        if meta.user_id != _user(data):
            raise ValueError(
                "with compat='django' the session's user is Django's _auth_user_id: log users in "
                "with django.contrib.auth's login() (session.login() and writing _auth_user_* are refused)"
            )
        out = dict(data)
        out[META_FIELD] = self.own_fields(meta)
        return out

    def merge(
        self, current: Mapping[str, Any], changed: Mapping[str, Any], removed: Collection[str], meta: Meta
    ) -> dict[str, Any]:
        """A delta commit applied to the stored session `current`: every key this request did
        not change, Django's included, stays as it is."""
        check_changed(changed, removed)
        out = {k: v for k, v in current.items() if k != META_FIELD}
        for key in removed:
            out.pop(key, None)
        out.update(changed)
        out[META_FIELD] = self.own_fields(meta)
        return out
