"""What the demo's inspector panel shows: the session cookie as the browser holds it, the
record as the store holds it, and the store in use.

A request carries only `name=value`: the server never learns a cookie's flags or expiry
from the browser. To show what DevTools shows, `CookieWitness` remembers what the server
last told the browser in `Set-Cookie` for each cookie value it sent.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..codec import Serializer
from ..cookies import parse_cookie_header
from ..crypto import Keyring, storage_key
from ..record import Meta
from ..session import CSRF_KEY, Session
from ..stores.base import Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREVIEW_CHARS = 12
_WITNESS_ENTRIES = 2048


@dataclass(frozen=True, slots=True)
class SetCookie:
    """The attributes of one Set-Cookie header the server sent, and when."""

    name: str
    attributes: dict[str, str]  # lower-cased attribute name -> value ("" for flags)
    sent_at: float

    @property
    def max_age(self) -> float | None:
        raw = self.attributes.get("max-age")
        try:
            return None if raw is None else float(raw)
        except ValueError:
            return None


def parse_set_cookie(header: bytes, now: float) -> tuple[SetCookie, bytes]:
    """Split a Set-Cookie value into its attributes and the cookie value."""
    first, *rest = header.split(b";")
    name, _, value = first.partition(b"=")
    attributes: dict[str, str] = {}
    for part in rest:
        key, _, val = part.strip().partition(b"=")
        attributes[key.decode("latin-1").lower()] = val.decode("latin-1")
    return SetCookie(name.strip().decode("latin-1"), attributes, now), value.strip()


def _fingerprint(name: str, value: bytes) -> str:
    # Only a hash of the value is kept: the witness holds no usable cookie.
    return hashlib.sha256(name.encode("latin-1") + b"=" + value).hexdigest()


class CookieWitness:
    """ASGI wrapper that remembers the Set-Cookie attributes sent with each cookie value.

    Bounded (least recently used entries go first) and in memory: after a restart the
    server no longer knows the flags of cookies set by the previous process, and says so.
    """

    def __init__(self, app: ASGIApp, *, names: Callable[[], frozenset[str]]) -> None:
        self.app = app
        self._names = names
        self._seen: OrderedDict[str, SetCookie] = OrderedDict()

    def lookup(self, name: str, value: bytes) -> SetCookie | None:
        return self._seen.get(_fingerprint(name, value))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def witness(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = self._names()
                now = time.time()
                for key, raw in message.get("headers", ()):
                    if key.lower() == b"set-cookie":
                        sent, value = parse_set_cookie(raw, now)
                        if sent.name in names:
                            self._remember(_fingerprint(sent.name, value), sent)
            await send(message)

        await self.app(scope, receive, witness)

    def _remember(self, fingerprint: str, sent: SetCookie) -> None:
        self._seen[fingerprint] = sent
        self._seen.move_to_end(fingerprint)
        while len(self._seen) > _WITNESS_ENTRIES:
            self._seen.popitem(last=False)


# ---- what the panel shows ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BrowserCookie:
    """One cookie as the browser holds it, the way DevTools lists it."""

    name: str
    preview: str  # the value, truncated
    value_note: str  # what the value is
    size: int  # name + value, as DevTools counts it
    domain: str
    path: str
    expires: str  # "Session" or a date
    expires_note: str
    http_only: bool
    secure: bool
    same_site: str
    known: bool  # False: set by another server process, flags not remembered


@dataclass(frozen=True, slots=True)
class CookieStatus:
    """What became of the session cookie the browser sent with this request."""

    sent: bool
    signature_ok: bool
    loaded: bool
    client_side: bool = False

    @property
    def verdict(self) -> str:
        """none, loaded, forged (bad signature), unknown (no record), unopened (cookie://)."""
        if not self.sent:
            return "none"
        if self.loaded:
            return "loaded"
        if self.client_side:
            return "unopened"
        return "unknown" if self.signature_ok else "forged"


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    value: str
    note: str = ""


@dataclass(slots=True)
class RecordView:
    """The session's record: as the store holds it (after this request's changes), or for
    client-side sessions as the server read it out of the cookie (with this request's changes)."""

    key_hint: str | None
    data_json: str
    meta: list[Row] = field(default_factory=list)
    in_cookie: bool = False
    data_bytes: int = 0


def request_cookies(header: bytes | None, names: frozenset[str]) -> dict[str, bytes]:
    """The first value of each session cookie (or chunk) the browser sent."""
    found: dict[str, bytes] = {}
    for key, value in parse_cookie_header(header or b""):
        name = key.decode("latin-1")
        if name in names and name not in found:
            found[name] = value
    return found


def preview(value: bytes) -> str:
    text = value.decode("latin-1")
    if len(text) <= PREVIEW_CHARS:
        return text
    return f"{text[:PREVIEW_CHARS]}… ({len(text) - PREVIEW_CHARS} more characters)"


UNKNOWN = "unknown"


# Long because it fills DevTools' columns one by one; each branch is one attribute.
def browser_cookie(
    name: str,
    value: bytes,
    *,
    sent: SetCookie | None,
    host: str,
    fallback: dict[str, Any],
    now: float,
    value_note: str,
) -> BrowserCookie:
    """What DevTools would show for this cookie.

    `sent` is the Set-Cookie this process last sent for this value; without it (the cookie
    was set by another server process) the flags come from `fallback`, the configured
    attributes, whose "max_age" is the session's current max-age or UNKNOWN.
    """
    if sent is None:
        max_age = fallback["max_age"]
        if max_age == UNKNOWN:
            expires = "not known"
            note = "set by another server process (an earlier one, or another instance), which this one cannot ask"
        elif max_age is None:
            expires, note = "Session", "no Max-Age: the browser drops it when it closes"
        else:
            expires = "not known exactly"
            note = (
                f"Max-Age={int(max_age)}, counted from the last time another server process (an earlier "
                "one, or another instance) sent the cookie"
            )
        return BrowserCookie(
            name=name,
            preview=preview(value),
            value_note=value_note,
            size=len(name) + len(value),
            domain=host,
            path=str(fallback["path"]),
            expires=expires,
            expires_note=note,
            http_only=bool(fallback["http_only"]),
            secure=bool(fallback["secure"]),
            same_site=_SAME_SITE.get(str(fallback["same_site"]), "not set"),
            known=False,
        )
    attrs = sent.attributes
    sent_max_age = sent.max_age
    if sent_max_age is None:
        expires, note = "Session", "no Max-Age: the browser drops it when it closes"
    else:
        at = sent.sent_at + sent_max_age
        expires = format_time(at)
        note = f"Max-Age={int(sent_max_age)}: {format_delta(at - now)} from now"
    return BrowserCookie(
        name=name,
        preview=preview(value),
        value_note=value_note,
        size=len(name) + len(value),
        domain=attrs.get("domain") or host,
        path=attrs.get("path", "/"),
        expires=expires,
        expires_note=note,
        http_only="httponly" in attrs,
        secure="secure" in attrs,
        same_site=attrs.get("samesite", "not set"),
        known=True,
    )


_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None", "auto": "Lax on HTTP, None on HTTPS"}


def cookie_status(
    session: Session, cookie_value: bytes | None, keyring: Keyring, *, client_side: bool = False
) -> CookieStatus:
    """Call before any change to the session's identity (login, logout) in this request."""
    if cookie_value is None:
        return CookieStatus(sent=False, signature_ok=False, loaded=False, client_side=client_side)
    signature_ok = not client_side and keyring.unsign_id(cookie_value) is not None
    return CookieStatus(
        sent=True, signature_ok=signature_ok, loaded=not session.is_new, client_side=client_side
    )


async def record_view(session: Session, store: Store, *, touch_after: float = 0.0) -> RecordView | None:
    """Read the session's record back from the store; None if it holds none."""
    if session.is_new:
        return None
    key = storage_key(session.id)
    record = await store.get(key)
    if record is None:
        return None
    rows = meta_rows(record.meta, touch_after=touch_after)
    return RecordView(key_hint=key[:12], data_json=data_json(record.data), meta=rows)


def cookie_record_view(
    session: Session, serializer: Serializer, *, touch_after: float = 0.0
) -> RecordView | None:
    """For client-side sessions: the record as the server read it out of the cookie, with this
    request's changes (they are sealed into the response's cookie); None if there is none."""
    data = session.to_dict()
    if session.meta is None and not data:
        return None
    rows = meta_rows(session.meta, touch_after=touch_after) if session.meta is not None else []
    return RecordView(
        key_hint=None,
        data_json=data_json(data),
        meta=rows,
        in_cookie=True,
        data_bytes=len(serializer.dumps(data)),
    )


def data_json(data: dict[str, Any]) -> str:
    """The data, pretty-printed, with the CSRF token shortened (the pages carry it masked)."""
    data = dict(data)
    token = data.get(CSRF_KEY)
    if isinstance(token, str):
        data[CSRF_KEY] = token[:8] + "…"
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)


def meta_rows(meta: Meta, now: float | None = None, *, touch_after: float = 0.0) -> list[Row]:
    """The record's metadata as the panel lists it, each note exact for these settings."""
    now = time.time() if now is None else now
    if touch_after > 0:
        idle_note = (
            "moves forward when the session is saved; a visit that changes nothing moves it at most "
            f"once every {format_delta(touch_after)} (touch_after)"
        )
    else:
        idle_note = "moves forward with each visit"
    rows = [
        Row("created", format_time(meta.created), f"{format_delta(now - meta.created)} ago"),
        Row("last seen", format_time(meta.last_seen), f"{format_delta(now - meta.last_seen)} ago"),
    ]
    for label, deadline, note in (
        ("idle deadline", meta.idle_deadline, idle_note),
        ("absolute deadline", meta.absolute_deadline, "never moves"),
    ):
        if deadline is None:
            rows.append(Row(label, "none", "no limit"))
        else:
            rows.append(Row(label, format_time(deadline), f"in {format_delta(deadline - now)}; {note}"))
    rows.append(Row("user", meta.user_id or "none", "set by login()" if meta.user_id else "not logged in"))
    max_age = meta.cookie.get("max_age")
    if "max_age" in meta.cookie:
        rows.append(
            Row(
                "cookie max-age",
                "none" if max_age is None else f"{format_delta(max_age)} ({int(max_age)} s)",
                "set for this session only (remember me)",
            )
        )
    return rows


# ---- times --------------------------------------------------------------------------------
def format_time(timestamp: float) -> str:
    """Local time, to the second, with the zone: the demo runs on the learner's machine."""
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def format_delta(seconds: float) -> str:
    """A short human duration, rounded down: '45 s', '12 min', '3 h 5 min', '29 days 23 h'.
    Two units from hours on, so a deadline 30 days away minus a minute never reads as a
    round '29 days' next to a '30 days' setting."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours % 24 == 0 and minutes == 0:
        return "1 day" if hours == 24 else f"{hours // 24} days"
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"
