"""Request lifecycle policy, with no I/O: which id to load, what to commit, which headers to send.

Express-session's `shouldSave`, `shouldTouch`, `shouldSetCookie` and `shouldDestroy` are the
named functions below; `plan_commit` combines them. Adapters perform what the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .config import Settings
from .cookies import first_cookie, render_set_cookie
from .crypto import Keyring
from .record import Meta, Record
from .session import Session

if TYPE_CHECKING:
    from .stores.base import ClientSideStore, RenderCookie

Write = Literal["none", "set", "patch", "touch"]


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


def session_id_from_cookie(cookie_header: bytes | None, name: bytes, keyring: Keyring) -> str | None:
    """The verified id in the first cookie called `name`, or None (absent, malformed, forged)."""
    if not cookie_header:
        return None
    value = first_cookie(cookie_header, name)
    return None if value is None else keyring.unsign_id(value)


def is_live(meta: Meta, now: float) -> bool:
    """A record is dead past either deadline, whether or not the store has reaped it."""
    return not meta.is_expired(now)


# ---- commit decisions ---------------------------------------------------------------------
def should_save(
    *, is_new: bool, modified: bool, accessed: bool, settings: Settings, force: bool = False
) -> bool:
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
    return explicit or now - meta.last_seen >= settings.touch_after


def should_set_cookie(
    *,
    id_changed: bool,
    stored: bool,
    modified: bool,
    cookie_changed: bool,
    max_age: float | None,
    settings: Settings,
) -> bool:
    """An id the client does not hold yet is sent only if it is in the store; a known id is
    re-sent when rolling, when the cookie changed, or when a persistent cookie's session was
    modified (refreshes Expires)."""
    if id_changed:
        return stored
    return settings.rolling or cookie_changed or (max_age is not None and modified)


def should_destroy(*, destroyed: bool, unset: bool, settings: Settings) -> bool:
    """`destroy()`/`logout()`, or the handler removed the session with unset="destroy"."""
    return destroyed or (unset and settings.unset == "destroy")


# ---- the plan -----------------------------------------------------------------------------
@dataclass(slots=True)
class CommitPlan:
    """What the adapter must do before the response starts, in this order."""

    destroy: list[str] = field(default_factory=list)
    write: Write = "none"
    session_id: str | None = None
    record: Record | None = None
    changed: dict[str, Any] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    set_cookie: bytes | None = None
    cache_headers: bool = False
    more_cookies: list[bytes] = field(default_factory=list)  # client-side: chunks, stale-chunk expiry

    def set_cookies(self) -> list[bytes]:
        """Every Set-Cookie value to send, in order (a client-side session may need several)."""
        first = [] if self.set_cookie is None else [self.set_cookie]
        return first + self.more_cookies


def new_meta(
    session: Session,
    previous: Meta | None,
    now: float,
    settings: Settings,
    hints: dict[str, str] | None,
) -> Meta:
    created = previous.created if previous is not None else now
    return Meta(
        created=created,
        last_seen=now,
        idle_deadline=None if settings.idle_timeout is None else now + settings.idle_timeout,
        absolute_deadline=None if settings.absolute_timeout is None else created + settings.absolute_timeout,
        user_id=session._user_id,
        cookie=dict(session._cookie_overrides),
        hints=dict(previous.hints) if previous is not None else dict(hints or {}),
    )


def plan_commit(
    session: Session,
    *,
    settings: Settings,
    keyring: Keyring,
    secure: bool,
    now: float,
    unset: bool = False,
    can_patch: bool = False,
    hints: dict[str, str] | None = None,
    force: bool = False,
) -> CommitPlan:
    """Decide everything the end of a request must do. Pure: reads the session, does no I/O."""
    plan = CommitPlan(destroy=list(session._retired_ids), cache_headers=session._accessed)
    if settings.cookie.secure is True and not secure:
        # Never set a Secure cookie on plain HTTP, and then store nothing either.
        plan.destroy = []
        return plan

    if should_destroy(destroyed=session._destroyed, unset=unset, settings=settings):
        if unset and session._stored_id is not None:
            plan.destroy.append(session._stored_id)
        plan.set_cookie = _expired_cookie(settings, secure, now)
        plan.cache_headers = True
        return plan
    if unset:  # unset="keep": the stored session stays, this request's changes are dropped
        return plan

    changed, removed = session.changes()
    modified = bool(changed or removed or session._intent_modified or session._cookie_changed)
    is_new = session.is_new
    saving = should_save(
        is_new=is_new, modified=modified, accessed=session._accessed, settings=settings, force=force
    )
    touching = should_touch(
        is_new=is_new,
        saving=saving,
        explicit=session._touch,
        meta=session._meta,
        now=now,
        settings=settings,
    )
    max_age = session.cookie.max_age_seconds
    if saving:
        plan.session_id = session.id
        meta = new_meta(session, session._meta, now, settings, hints)
        if can_patch and not is_new:
            plan.write = "patch"
            plan.changed, plan.removed = changed, removed
            plan.record = Record(data={}, meta=meta)
        else:
            plan.write = "set"
            plan.record = Record(data=dict(session._data), meta=meta)
    elif touching:
        plan.write = "touch"
        plan.session_id = session.id
        plan.record = Record(data={}, meta=new_meta(session, session._meta, now, settings, hints))

    id_changed = session._client_id is None or session._client_id != session._id
    if should_set_cookie(
        id_changed=id_changed,
        stored=saving or not is_new,
        modified=modified,
        cookie_changed=session._cookie_changed or session._send_cookie,
        max_age=max_age,
        settings=settings,
    ):
        if plan.session_id is None:
            plan.session_id = session.id
        plan.set_cookie = session_cookie(settings, keyring.sign_id(plan.session_id), max_age, secure, now)
    if plan.set_cookie is not None:
        plan.cache_headers = True
    return plan


def _same_site(settings: Settings, secure: bool) -> str | None:
    same_site = settings.cookie.same_site
    if same_site == "auto":
        return "none" if secure else "lax"
    return same_site


def session_cookie(settings: Settings, value: str, max_age: float | None, secure: bool, now: float) -> bytes:
    """The Set-Cookie value for a live session."""
    cookie = settings.cookie
    return render_set_cookie(
        settings.name,
        value,
        max_age=max_age,
        path=cookie.path,
        domain=cookie.domain,
        secure=secure if cookie.secure == "auto" else bool(cookie.secure),
        http_only=cookie.http_only,
        same_site=_same_site(settings, secure),
        partitioned=cookie.partitioned,
        priority=cookie.priority,
        now=now,
    )


def _expired_cookie(settings: Settings, secure: bool, now: float) -> bytes:
    return session_cookie(settings, "", 0, secure, now)


# ---- client-side sessions (CookieStore) ------------------------------------------------------
def plan_client_commit(
    session: Session,
    *,
    settings: Settings,
    store: ClientSideStore,
    secure: bool,
    now: float,
    cookie_header: bytes | None,
    unset: bool = False,
) -> CommitPlan:
    """`plan_commit` for sessions kept in the cookie: the same save/touch/destroy rules, but
    every write is a re-seal sent as Set-Cookie (maybe several: chunks, stale chunks
    expired) and nothing is stored. Raises SessionTooLarge when the session does not fit."""
    plan = CommitPlan(cache_headers=session._accessed)
    if settings.cookie.secure is True and not secure:
        return plan  # never set a Secure cookie on plain HTTP
    render = cookie_renderer(settings, secure, now)

    if should_destroy(destroyed=session._destroyed, unset=unset, settings=settings):
        _put_cookies(plan, store.expire(name=settings.name, cookie_header=cookie_header, render=render))
        return plan
    if unset:
        return plan

    changed, removed = session.changes()
    modified = bool(changed or removed or session._intent_modified or session._cookie_changed)
    is_new = session.is_new
    saving = should_save(is_new=is_new, modified=modified, accessed=session._accessed, settings=settings)
    # A touch slides the idle deadline, which lives in the cookie: it is a re-seal, still
    # throttled by touch_after. An explicit touch() also asks for one (and so does a cookie
    # opened with an older secret, which the runtime marks as touched).
    touching = should_touch(
        is_new=is_new, saving=saving, explicit=session._touch, meta=session._meta, now=now, settings=settings
    )
    if saving or touching or (settings.rolling and not is_new):
        plan.session_id = session.id
        plan.record = Record(
            data=dict(session._data), meta=new_meta(session, session._meta, now, settings, None)
        )
        cookies = store.seal(
            plan.session_id,
            plan.record,
            name=settings.name,
            cookie_header=cookie_header,
            max_age=session.cookie.max_age_seconds,
            render=render,
        )
        _put_cookies(plan, cookies)
    elif session._client_id is not None and session._client_id != session._id:
        # The client holds a session this request retired (regenerate() to an empty session):
        # with nothing to seal, the old cookie must go, as a server-side record would.
        _put_cookies(plan, store.expire(name=settings.name, cookie_header=cookie_header, render=render))
    return plan


def _put_cookies(plan: CommitPlan, cookies: list[bytes]) -> None:
    if cookies:
        plan.set_cookie, plan.more_cookies = cookies[0], cookies[1:]
        plan.cache_headers = True


def cookie_renderer(settings: Settings, secure: bool, now: float) -> RenderCookie:
    """Render Set-Cookie values with the session cookie's attributes under any name (chunks)."""
    cookie = settings.cookie
    same_site = _same_site(settings, secure)
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


# ---- response headers ---------------------------------------------------------------------
def add_cache_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Add `Vary: Cookie` and make caching private, keeping what the app already said."""
    out: list[tuple[bytes, bytes]] = []
    vary_done = cache_done = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"vary":
            tokens = [t.strip().lower() for t in value.split(b",")]
            if b"cookie" not in tokens and b"*" not in tokens:
                value = value + b", Cookie"
            vary_done = True
        elif lower == b"cache-control":
            tokens = [t.strip() for t in value.split(b",") if t.strip()]
            kept = [t for t in tokens if t.lower() != b"public"]
            if not any(t.lower() in (b"private", b"no-store") for t in kept):
                kept.insert(0, b"private")
            value = b", ".join(kept)
            cache_done = True
        out.append((name, value))
    if not vary_done:
        out.append((b"vary", b"Cookie"))
    if not cache_done:
        out.append((b"cache-control", b"private"))
    return out
