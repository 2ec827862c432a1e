"""Request lifecycle policy, with no I/O: which id to load, what to commit, which cookie to send.

`decide` is the one function that answers "is this session saved, touched, destroyed, and
does the response carry its cookie?" for server-side *and* client-side sessions, from a
frozen `Snapshot` of what the request did, the `Settings` and the request's `Facts`.
Express-session's `shouldSave`, `shouldTouch`, `shouldSetCookie` and `shouldDestroy` are the
named rules it combines. Whether the cookie is a signed id or a sealed record is a rendering
step the runtime performs on the returned `Plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from .config import Settings
from .cookies import RenderCookie, render_set_cookie
from .record import Meta, Record

Write = Literal["none", "set", "patch", "touch"]
CookieAction = Literal["none", "send", "expire"]
_EMPTY: Mapping[str, Any] = MappingProxyType({})
# One empty set for every plan that removes no key: `frozenset()` makes a new, GC-tracked object.
_NO_KEYS: frozenset[str] = frozenset()


# ---- request start ------------------------------------------------------------------------
def path_in_scope(request_path: str, cookie_path: str) -> bool:
    """True if the cookie would be sent for this path (RFC 6265 path-match)."""
    if cookie_path == "/" or request_path == cookie_path:
        return True
    prefix = cookie_path if cookie_path.endswith("/") else cookie_path + "/"
    return request_path.startswith(prefix)


def is_secure(scheme: str, forwarded_proto: bytes | None, trust_proxy: bool) -> bool:
    """HTTPS as the client saw it; X-Forwarded-Proto (first value) only when the proxy is trusted."""
    if trust_proxy and forwarded_proto:
        return forwarded_proto.split(b",", 1)[0].strip().lower() == b"https"
    return scheme in ("https", "wss")


def is_live(meta: Meta, now: float) -> bool:
    """A record is dead past either deadline, whether or not the store has reaped it
    (`not meta.is_expired(now)`, without its two calls: this runs on every load)."""
    idle, absolute = meta.idle_deadline, meta.absolute_deadline
    return (idle is None or now < idle) and (absolute is None or now < absolute)


# ---- what the engine is given ---------------------------------------------------------------
# Snapshot, Facts and Plan are immutable named tuples rather than frozen dataclasses: one of
# each is built per request, and a frozen dataclass pays a setattr call per field.
class Snapshot(NamedTuple):
    """What one request did to its session, frozen at commit time (made by `Session.snapshot`)."""

    session_id: str
    client_id: str | None  # the verified id the request carried, if its record was loaded
    stored_id: str | None  # the id the store holds the data under (None: not stored yet)
    accessed: bool
    read_only: bool = False
    data: Mapping[str, Any] = _EMPTY
    changed: Mapping[str, Any] = _EMPTY
    removed: frozenset[str] = frozenset()
    intent_modified: bool = False  # regenerate(keep_data)/login, save() on a cookie, Flask's modified=True
    cookie_changed: bool = False  # the per-session max-age changed
    cookie_pending: bool = False  # an explicit save() decided a Set-Cookie this response still owes
    destroyed: bool = False
    touch: bool = False  # touch() was called
    stale_signature: bool = False  # the cookie verified with an older secret: re-issue it
    retired_ids: tuple[str, ...] = ()
    max_age: float | None = None  # this session's cookie max-age, seconds
    cookie_overrides: Mapping[str, Any] = _EMPTY
    meta: Meta | None = None
    user_id: str | None = None

    @property
    def is_new(self) -> bool:
        return self.stored_id is None or self.stored_id != self.session_id

    @property
    def modified(self) -> bool:
        return bool(self.changed or self.removed or self.intent_modified or self.cookie_changed)


class Facts(NamedTuple):
    """What the engine needs to know about the request and the runtime."""

    now: float
    secure: bool
    unset: bool = False  # the handler removed the session from the request (scope/environ)
    force: bool = False  # an explicit save(): write even if nothing changed
    can_patch: bool = False  # the store applies delta commits
    self_contained: bool = False  # client-side: the cookie carries the whole record
    record_gone: bool = False  # a delta commit found the record destroyed or expired meanwhile
    hints: Mapping[str, str] | None = None  # client hints for a new session's metadata
    cookie_defaults: Mapping[str, Any] = _EMPTY  # attributes a format pins


class Plan(NamedTuple):
    """What the runtime must do before the response starts: destroy, write, then the cookie."""

    destroy: tuple[str, ...] = ()
    write: Write = "none"
    session_id: str | None = None
    record: Record | None = None  # data (for "set" and sealing) and the new meta
    changed: Mapping[str, Any] = _EMPTY
    removed: frozenset[str] = frozenset()
    cookie: CookieAction = "none"
    max_age: float | None = None
    cache_headers: bool = False

    @property
    def store_work(self) -> bool:
        return bool(self.destroy) or self.write != "none"


NOTHING = Plan()
CACHE_ONLY = Plan(cache_headers=True)  # used, unchanged, nothing to write or send


# ---- the rules ------------------------------------------------------------------------------
def should_save(*, is_new: bool, modified: bool, accessed: bool, settings: Settings, force: bool) -> bool:
    """New sessions are saved when modified (or, with save_uninitialized, when used at all);
    loaded ones when modified (or always, with resave). An explicit `save()` forces it."""
    if force:
        return True
    if is_new:
        return modified or (settings.save_uninitialized and accessed)
    return modified or settings.resave


def should_touch(
    *, is_new: bool, saving: bool, explicit: bool, meta: Meta | None, now: float, settings: Settings
) -> bool:
    """Slide the idle deadline of a loaded, unsaved session: on `touch()`, or at most once
    per `touch_after` for read-only traffic."""
    if is_new or saving or meta is None:
        return False
    return explicit or now - meta.last_seen >= settings.touch_seconds


def should_set_cookie(
    *,
    id_changed: bool,
    stored: bool,
    modified: bool,
    cookie_changed: bool,
    max_age: float | None,
    settings: Settings,
) -> bool:
    """An id the client does not hold yet is sent only if it is stored; a known id is re-sent
    when rolling, when the cookie changed (or must be re-signed), or when a persistent
    cookie's session was modified (refreshes Expires)."""
    if id_changed:
        return stored
    return settings.rolling or cookie_changed or (max_age is not None and modified)


def should_destroy(*, destroyed: bool, unset: bool, settings: Settings) -> bool:
    """`destroy()`/`logout()`, or the handler removed the session with unset="destroy"."""
    return destroyed or (unset and settings.unset == "destroy")


def new_meta(snapshot: Snapshot, facts: Facts, settings: Settings) -> Meta:
    """The metadata written now: deadlines from `now`, creation time kept across commits."""
    previous, now = snapshot.meta, facts.now
    created = previous.created if previous is not None else now
    idle, absolute = settings.idle_seconds, settings.absolute_seconds
    defaults, overrides = facts.cookie_defaults, snapshot.cookie_overrides
    return Meta(  # created, last_seen, idle and absolute deadlines, user_id, cookie, hints
        created,
        now,
        None if idle is None else now + idle,
        None if absolute is None else created + absolute,
        snapshot.user_id,
        {**defaults, **overrides} if defaults or overrides else {},
        dict(previous.hints) if previous is not None else dict(facts.hints or {}),
    )


# ---- the decision ---------------------------------------------------------------------------
def read_plans_nothing(meta: Meta, settings: Settings, now: float) -> bool:
    """For a loaded session the request only read (`Session.only_read`), not unset nor
    saved explicitly: True if `decide` would plan no store work and no cookie, only the cache
    headers (`CACHE_ONLY`'s effect). That holds unless `resave` or `rolling` is on or the idle
    deadline is due to slide (`should_touch`); tests/test_engine.py checks it against `decide`."""
    return not (settings.resave or settings.rolling) and now - meta.last_seen < settings.touch_seconds


def decide(snapshot: Snapshot, settings: Settings, facts: Facts) -> Plan:
    """Everything the end of a request (or an explicit `save()`) must do. Pure."""
    s = snapshot
    if s.read_only:
        return CACHE_ONLY if s.accessed else NOTHING
    if not (
        s.accessed or s.retired_ids or s.stale_signature or facts.unset or facts.force or facts.record_gone
    ):
        return NOTHING  # never used: no I/O, no headers
    if settings.cookie.secure is True and not facts.secure:
        return Plan(cache_headers=s.accessed)  # never a Secure cookie on plain HTTP, and then no write
    if facts.record_gone:  # destroyed concurrently: never resurrect it, and drop its cookie
        return Plan(cookie="expire", cache_headers=True)

    # (The rules below are only asked when their answer is not already known: each is a call.)
    if (s.destroyed or facts.unset) and should_destroy(
        destroyed=s.destroyed, unset=facts.unset, settings=settings
    ):
        gone = (s.stored_id,) if facts.unset and s.stored_id is not None else ()
        return Plan(destroy=_stored(s.retired_ids + gone, facts), cookie="expire", cache_headers=True)
    if facts.unset:  # unset="keep": the stored session stays, this request's changes are dropped
        return Plan(destroy=_stored(s.retired_ids, facts), cache_headers=s.accessed)

    stored_id = s.stored_id
    is_new = stored_id is None or stored_id != s.session_id  # Snapshot.is_new and .modified, inline
    modified = bool(s.changed or s.removed or s.intent_modified or s.cookie_changed)
    saving = should_save(
        is_new=is_new, modified=modified, accessed=s.accessed, settings=settings, force=facts.force
    )
    touching = (
        False
        if saving or is_new
        else should_touch(
            is_new=is_new, saving=saving, explicit=s.touch, meta=s.meta, now=facts.now, settings=settings
        )
    )
    id_changed = s.client_id is None or s.client_id != s.session_id
    send = should_set_cookie(
        id_changed=id_changed,
        stored=saving or not is_new,
        modified=modified,
        cookie_changed=s.cookie_changed or s.cookie_pending or s.stale_signature,
        max_age=s.max_age,
        settings=settings,
    )
    if facts.self_contained:
        return _self_contained(s, settings, facts, send=send or saving or touching, id_changed=id_changed)

    cookie: CookieAction = "send" if send else "none"
    cache = s.accessed or send
    if saving:
        if facts.can_patch and not is_new:
            record = Record({}, new_meta(s, facts, settings))
            return Plan(s.retired_ids, "patch", s.session_id, record, s.changed, s.removed,
                        cookie, s.max_age, cache)  # fmt: skip
        record = Record(dict(s.data), new_meta(s, facts, settings))
        return Plan(s.retired_ids, "set", s.session_id, record, _EMPTY, _NO_KEYS,
                    cookie, s.max_age, cache)  # fmt: skip
    if touching:
        record = Record({}, new_meta(s, facts, settings))
        return Plan(s.retired_ids, "touch", s.session_id, record, _EMPTY, _NO_KEYS,
                    cookie, s.max_age, cache)  # fmt: skip
    return Plan(
        destroy=s.retired_ids,
        session_id=s.session_id if send else None,
        cookie=cookie,
        max_age=s.max_age,
        cache_headers=cache,
    )


def data_plan(
    session_id: str,
    meta: Meta | None,
    user_id: str | None,
    cookie_overrides: Mapping[str, Any],
    changed: Mapping[str, Any],
    removed: set[str] | frozenset[str],
    data: dict[str, Any] | None,
    settings: Settings,
    now: float,
    cookie_defaults: Mapping[str, Any],
    hints: Mapping[str, str] | None = None,
) -> Plan:
    """`decide`'s plan, without building its inputs, for the commit of a session whose
    request changed its data and nothing else (`Session.data_plan` checks: no intent, no
    cookie owed, not read-only, some key `changed` or `removed`; loaded under the same id, or
    new with `meta` None), neither unset nor forced, on a server-side runtime allowed to send
    the cookie (not `secure=True` over plain HTTP). `data`: a copy of the session's data for
    a whole-record write, or None when the store patches a loaded one; `hints`: a new
    session's client hints. tests/test_engine.py checks it against `decide`."""
    # `new_meta`: a loaded session keeps its creation time and hints
    idle, absolute = settings.idle_seconds, settings.absolute_seconds
    created = now if meta is None else meta.created
    record_meta = Meta(
        created,
        now,
        None if idle is None else now + idle,
        None if absolute is None else created + absolute,
        user_id,
        {**cookie_defaults, **cookie_overrides} if cookie_defaults or cookie_overrides else {},
        dict(hints or {}) if meta is None else dict(meta.hints),
    )
    max_age = cookie_overrides.get("max_age", settings.cookie_max_age)
    if meta is None or data is not None:
        # `should_set_cookie`: a new id is sent once stored; a known one when rolling, or for
        # a persistent cookie's new Expires (the session was modified)
        send = meta is None or settings.rolling or max_age is not None
        return Plan((), "set", session_id, Record(data or {}, record_meta), _EMPTY, _NO_KEYS,
                    "send" if send else "none", max_age, True)  # fmt: skip
    cookie: CookieAction = "send" if settings.rolling or max_age is not None else "none"
    return Plan((), "patch", session_id, Record({}, record_meta), changed, frozenset(removed) if removed else _NO_KEYS,
                cookie, max_age, True)  # fmt: skip


def _stored(ids: tuple[str, ...], facts: Facts) -> tuple[str, ...]:
    """Ids whose records must be deleted: none when the cookie is the record."""
    return () if facts.self_contained else ids


def _self_contained(s: Snapshot, settings: Settings, facts: Facts, *, send: bool, id_changed: bool) -> Plan:
    """A client-side session: every save or touch is a re-seal of the whole record into the
    cookie, and nothing is stored. A cookie of a session this request retired (regenerate()
    to an empty session) still opens by itself, so it is expired rather than left alone."""
    if send:
        record = Record(data=dict(s.data), meta=new_meta(s, facts, settings))
        return Plan(
            session_id=s.session_id, record=record, cookie="send", max_age=s.max_age, cache_headers=True
        )
    if id_changed and s.client_id is not None:
        return Plan(cookie="expire", cache_headers=True)
    return Plan(cache_headers=s.accessed)


# ---- rendering the session cookie -------------------------------------------------------------
def cookie_renderer(settings: Settings, secure: bool, now: float) -> RenderCookie:
    """Render Set-Cookie values with the session cookie's attributes under any name (chunks)."""
    cookie = settings.cookie
    same_site = cookie.same_site
    if same_site == "auto":
        same_site = "none" if secure else "lax"
    secure_attr = secure if cookie.secure == "auto" else bool(cookie.secure)

    def render(name: str, value: str, max_age: float | None) -> bytes:
        return render_set_cookie(
            name,
            value,
            max_age=max_age,
            path=cookie.path,
            domain=cookie.domain,
            secure=secure_attr,
            http_only=cookie.http_only,
            same_site=same_site,
            partitioned=cookie.partitioned,
            priority=cookie.priority,
            now=now,
        )

    return render


def session_cookie(settings: Settings, value: str, max_age: float | None, secure: bool, now: float) -> bytes:
    """The Set-Cookie value for the session cookie (an empty value with max-age 0 expires it)."""
    return cookie_renderer(settings, secure, now)(settings.cookie_name, value, max_age)
