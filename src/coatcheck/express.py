"""`compat="express"`: share sessions with Express apps (express-session + connect-redis / connect-mongo).

In this mode coatcheck reads and writes exactly what express-session's stores keep:

- the cookie is ``connect.sid`` (unless `name=` says otherwise) holding ``s:<id>.<sig>``,
  which is already coatcheck's wire format; new ids are uid-safe's 24 random bytes
  (32 base64url characters), and any id express issued is accepted once its signature
  verifies (and only if a record exists for it);
- records are keyed by the raw id and shaped like express-session's JSON: the data's
  top-level keys next to a ``cookie`` object ``{originalMaxAge, expires, secure, httpOnly,
  domain, path, sameSite, ...}``. connect-redis keeps it as a string under ``sess:<id>``
  (`coatcheck.stores.express_redis`), connect-mongo as a document ``{_id: <id>, expires:
  Date, session: <JSON string or sub-document>}`` (`coatcheck.stores.express_mongo`).

`ExpressFormat` is the codec the runtime hands to the store (`coatcheck.stores.compat.adopt_store`), so the store
knows the layout and nothing else in coatcheck special-cases it. Metadata express has no
place for (when coatcheck first saw the session, the user bound by `login()`, client
hints) lives in one extra field, ``_coatcheck``, that Node carries along like any other.

Deadlines. express has one: the record lives until ``cookie.expires`` when the cookie is
persistent (``maxAge`` set), else for the store's ``ttl`` after the last write or touch.
coatcheck maps its settings onto that: ``Cookie(max_age=...)`` (or the per-session
``session.cookie.max_age``) is ``originalMaxAge``; for browser-session cookies
``idle_timeout`` plays the store ``ttl``; ``absolute_timeout`` caps what coatcheck writes
and is checked by coatcheck on every load (Node does not know it). On reading, the store's
own expiry (Redis TTL, Mongo ``expires``) is the idle deadline, since Node slides it
without rewriting the JSON.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .codec import JSONSerializer
from .config import Settings
from .errors import SessionStoreError
from .record import Meta, Record

COOKIE_NAME = "connect.sid"  # express-session's default cookie name
ID_BYTES = 24  # uid-safe(24), as express-session's generateSessionId
META_FIELD = "_coatcheck"
EXPRESS_ATTRIBUTES = "express"  # Meta.cookie key: the cookie attributes express keeps per session
_TIMING = ("originalMaxAge", "expires")

# Keys a handler cannot use in this mode: express-session keeps the cookie under "cookie",
# and on load it skips every key its Session object already has (its methods, id, req), so
# Node would silently drop them at its next save.
RESERVED_KEYS: dict[str, str] = {
    "cookie": "express-session keeps the session cookie there",
    "id": "express-session's Session.id is the session id",
    "req": "express-session's Session.req is the request",
    "regenerate": "a method of express-session's Session",
    "destroy": "a method of express-session's Session",
    "reload": "a method of express-session's Session",
    "save": "a method of express-session's Session",
    "touch": "a method of express-session's Session",
    "resetMaxAge": "a method of express-session's Session",
    META_FIELD: "coatcheck keeps its own metadata there",
}

_json = JSONSerializer()


def new_id() -> str:
    """A new session id like express-session's: 24 random bytes, base64url (32 characters)."""
    return secrets.token_urlsafe(ID_BYTES)


def js_date(timestamp: float) -> str:
    """JavaScript's `Date.prototype.toJSON`: UTC, milliseconds, "Z" ("2030-01-02T03:04:05.678Z")."""
    ms = math.floor(timestamp * 1000)
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def dumps(value: Any) -> bytes:
    """JSON as Node's JSON.stringify writes it (compact, UTF-8)."""
    try:
        return _json.dumps(value)
    except TypeError:  # orjson refuses integers beyond 64 bits; the standard library does not
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads(blob: bytes | str) -> dict[str, Any]:
    """A stored express session object; anything else raises SessionStoreError."""
    try:
        value = _json.loads(blob.encode() if isinstance(blob, str) else blob)
    except (ValueError, TypeError) as exc:
        raise SessionStoreError(f"corrupt express-session record: {exc}") from None
    if not isinstance(value, dict):
        raise SessionStoreError("corrupt express-session record: not a JSON object")
    return value


def check_keys(keys: Iterable[str]) -> None:
    """Refuse session keys express-session would lose or misread (see RESERVED_KEYS)."""
    for key in keys:
        why = RESERVED_KEYS.get(key)
        if why is not None:
            raise ValueError(
                f"session key {key!r} cannot be stored with compat='express' ({why}): use another key"
            )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class ExpressFormat:
    """express-session's record layout, bound to the middleware's settings.

    Stores that can keep this layout (`RedisStore`, `MongoStore`) receive it through
    `with_format` and use `session_object` / `merge` to write, `record` to read and
    `deadline` for their native expiry.
    """

    settings: Settings
    name: str = "express"

    # ---- identity ---------------------------------------------------------------------
    @staticmethod
    def storage_key(session_id: str) -> str:
        """Node's stores key records by the id itself (connect-redis: prefix + id)."""
        return session_id

    def cookie_defaults(self, secure: bool) -> dict[str, Any]:
        """The per-session cookie metadata a session created here pins, as express-session
        does when it generates one (``secure: "auto"`` is resolved from that request, once)."""
        return {EXPRESS_ATTRIBUTES: self.default_attributes(secure)}

    def default_attributes(self, secure: bool) -> dict[str, Any]:
        """express-session's cookie options (minus timing) for coatcheck's `Cookie` settings."""
        cookie = self.settings.cookie
        is_secure = secure if cookie.secure == "auto" else bool(cookie.secure)
        attributes: dict[str, Any] = {"secure": is_secure, "httpOnly": cookie.http_only}
        if cookie.domain is not None:
            attributes["domain"] = cookie.domain
        attributes["path"] = cookie.path
        same_site = cookie.same_site
        if same_site == "auto":
            same_site = "none" if secure else "lax"
        if same_site is not None:
            attributes["sameSite"] = same_site
        if cookie.partitioned:
            attributes["partitioned"] = True
        if cookie.priority is not None:
            attributes["priority"] = cookie.priority
        return attributes

    # ---- deadlines --------------------------------------------------------------------
    def max_age(self, meta: Meta) -> float | None:
        """The session cookie's lifetime in seconds (express's originalMaxAge); None: browser session."""
        if "max_age" in meta.cookie:
            return _number(meta.cookie["max_age"])
        return self.default_max_age

    @property
    def default_max_age(self) -> float | None:
        """`Cookie(max_age=...)` in seconds."""
        return self.settings.cookie_max_age

    def deadline(self, meta: Meta) -> float | None:
        """When the record dies, as express would have it: the cookie's expiry for persistent
        cookies, else `idle_timeout` (connect-redis's and connect-mongo's `ttl`) after the
        last activity; never past the absolute deadline. None: no expiry."""
        max_age = self.max_age(meta)
        lifetime = max_age if max_age is not None else self.settings.idle_seconds
        deadline = None if lifetime is None else meta.last_seen + lifetime
        absolute = meta.absolute_deadline
        if absolute is not None and (deadline is None or absolute < deadline):
            deadline = absolute
        return deadline

    # ---- writing ----------------------------------------------------------------------
    def cookie_object(self, meta: Meta, current: Any = None) -> dict[str, Any]:
        """express-session's ``cookie``: its attributes kept as they are (`current`, else those
        the session was loaded or created with), timing fields from `meta`."""
        if isinstance(current, dict):
            attributes = current
        else:
            stored = meta.cookie.get(EXPRESS_ATTRIBUTES)
            attributes = stored if isinstance(stored, dict) else self.default_attributes(False)
        max_age = self.max_age(meta)
        cookie: dict[str, Any] = {
            "originalMaxAge": None if max_age is None else round(max_age * 1000),
            "expires": None if max_age is None else js_date(meta.last_seen + max_age),
        }
        cookie.update((k, v) for k, v in attributes.items() if k not in _TIMING)
        return cookie

    @staticmethod
    def own_fields(meta: Meta) -> dict[str, Any]:
        """The ``_coatcheck`` field: what coatcheck needs and express has no place for."""
        own: dict[str, Any] = {"created": meta.created}
        if meta.user_id is not None:
            own["user_id"] = meta.user_id
        if meta.hints:
            own["hints"] = dict(meta.hints)
        return own

    def session_object(self, data: Mapping[str, Any], meta: Meta) -> dict[str, Any]:
        """The whole stored session, as express-session would save it. Raises ValueError for
        a key express reserves."""
        check_keys(data)
        out: dict[str, Any] = {"cookie": self.cookie_object(meta)}
        out.update(data)
        out[META_FIELD] = self.own_fields(meta)
        return out

    def merge(
        self, current: Mapping[str, Any], changed: Mapping[str, Any], removed: Collection[str], meta: Meta
    ) -> dict[str, Any]:
        """A delta commit applied to the stored object `current`: every field this request did
        not change, Node's included, stays exactly as it is."""
        check_keys(changed)
        out = dict(current)
        for key in removed:
            if key not in RESERVED_KEYS:
                out.pop(key, None)
        out.update(changed)
        out["cookie"] = self.cookie_object(meta, current.get("cookie"))
        out[META_FIELD] = self.own_fields(meta)
        return out

    # ---- reading ----------------------------------------------------------------------
    def record(self, stored: Mapping[str, Any], *, now: float, expires_at: float | None) -> Record:
        """A stored express session as a coatcheck record. `expires_at` is the store's own
        expiry (Redis TTL, Mongo ``expires``): the deadline both sides slide."""
        cookie = stored.get("cookie")
        cookie = cookie if isinstance(cookie, dict) else {}
        own = stored.get(META_FIELD)
        own = own if isinstance(own, dict) else {}
        data = {k: v for k, v in stored.items() if k != "cookie" and k != META_FIELD}

        overrides: dict[str, Any] = {}
        if "originalMaxAge" in cookie:
            ms = _number(cookie["originalMaxAge"])
            overrides["max_age"] = None if ms is None else max(ms, 0.0) / 1000
        overrides[EXPRESS_ATTRIBUTES] = {k: v for k, v in cookie.items() if k not in _TIMING}
        max_age = overrides.get("max_age", self.default_max_age)
        lifetime = max_age if max_age is not None else self.settings.idle_seconds
        # Both sides set the expiry to "last activity + lifetime", so the activity is recoverable
        # from it; coatcheck's touch throttling then works for sessions Node keeps alive.
        last_seen = now if expires_at is None or lifetime is None else min(now, expires_at - lifetime)
        created = _number(own.get("created"))
        if created is None:  # never saved by coatcheck: its absolute timeout starts now
            created = now
        absolute = self.settings.absolute_seconds
        user_id = own.get("user_id")
        hints = own.get("hints")
        meta = Meta(
            created=created,
            last_seen=last_seen,
            idle_deadline=expires_at,
            absolute_deadline=None if absolute is None else created + absolute,
            user_id=None if user_id is None else str(user_id),
            cookie=overrides,
            hints={str(k): str(v) for k, v in hints.items()} if isinstance(hints, dict) else {},
        )
        return Record(data=data, meta=meta)


# ---- connect-mongo's document -----------------------------------------------------------------
def mongo_date(timestamp: float) -> datetime:
    """A BSON date (millisecond precision, UTC), as the Node driver writes a JavaScript Date."""
    return datetime.fromtimestamp(math.floor(timestamp * 1000) / 1000, UTC)


def from_mongo_date(value: object) -> float | None:
    """Unix seconds of a BSON date; pymongo hands out naive UTC datetimes unless tz_aware."""
    if not isinstance(value, datetime):
        return None
    when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return when.timestamp()


def jsonable(value: Any) -> Any:
    """A value read from a BSON sub-document as JSON.parse would see it after JSON.stringify
    (Dates become ISO strings; other BSON types their string form)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        seconds = from_mongo_date(value)
        return js_date(seconds) if seconds is not None else None
    return str(value)


def mongo_session(stored: dict[str, Any] | str, fmt: ExpressFormat, *, now: float, expires: Any) -> Record:
    """A connect-mongo document's ``session`` (JSON string, or sub-document with
    ``stringify: false``) and ``expires`` as a coatcheck record."""
    obj = loads(stored) if isinstance(stored, str) else jsonable(stored)
    if not isinstance(obj, dict):
        raise SessionStoreError("corrupt connect-mongo document: session is not an object")
    return fmt.record(obj, now=now, expires_at=from_mongo_date(expires))


def mongo_fields(obj: dict[str, Any], deadline: float | None, *, stringify: bool) -> dict[str, Any]:
    """The document fields connect-mongo's `set` writes: ``session`` and ``expires`` (absent
    when there is no deadline: connect-mongo's queries treat a missing ``expires`` as live)."""
    fields: dict[str, Any] = {"session": dumps(obj).decode() if stringify else bson_session(obj)}
    if deadline is not None:
        fields["expires"] = mongo_date(deadline)
    return fields


def bson_session(obj: dict[str, Any]) -> dict[str, Any]:
    """The session as connect-mongo stores it with ``stringify: false``: like the object
    itself, with ``cookie.expires`` a Date."""
    out = dict(obj)
    cookie = out.get("cookie")
    if isinstance(cookie, dict) and isinstance(cookie.get("expires"), str):
        try:
            when = datetime.fromisoformat(cookie["expires"].replace("Z", "+00:00"))
        except ValueError:
            return out
        out["cookie"] = {**cookie, "expires": when}
    return out
