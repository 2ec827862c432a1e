"""Cookie header parsing and Set-Cookie rendering, written for hostile input.

The standard library's `http.cookies` unquotes values, accepts odd separators and has had
quadratic-time bugs; this parser does one linear pass and never decodes anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import format_datetime

MAX_COOKIE_BYTES = 4096

RenderCookie = Callable[[str, str, float | None], bytes]
"""(cookie name, value, max_age) -> one Set-Cookie value with the session cookie's attributes."""

_NAME = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VALUE = re.compile(rb"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*\Z")  # RFC 6265 cookie-octet
_ATTR = re.compile(r"^[\x20-\x3a\x3c-\x7e]*\Z")  # printable ASCII without ';'
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_cookie_header(header: bytes) -> list[tuple[bytes, bytes]]:
    """Split a Cookie header into (name, value) pairs, in order, duplicates kept.

    Pairs are split on ';', trimmed of space and tab only, and split on the first '='.
    Names and values are returned exactly as sent: no unquoting, no percent-decoding.
    A pair without '=' or with an empty name is dropped.
    """
    pairs = []
    for part in header.split(b";"):
        name, eq, value = part.partition(b"=")
        name = name.strip(b" \t")
        if eq and name:
            pairs.append((name, value.strip(b" \t")))
    return pairs


def first_cookie(header: bytes, name: bytes) -> bytes | None:
    """Value of the first cookie called `name`, or None. Later duplicates are never tried."""
    if name not in header:
        return None
    for part in header.split(b";"):  # parse_cookie_header's rules, stopping at the first match
        key, eq, value = part.partition(b"=")
        if eq and key.strip(b" \t") == name:
            return value.strip(b" \t")
    return None


def cookies_named(header: bytes, names: Iterable[bytes]) -> dict[bytes, bytes]:
    """First value of each wanted cookie name that is present."""
    wanted = set(names)
    found: dict[bytes, bytes] = {}
    for key, value in parse_cookie_header(header):
        if key in wanted and key not in found:
            found[key] = value
    return found


def join_cookie_headers(values: Iterable[bytes]) -> bytes:
    """HTTP/2 may split Cookie into several header lines; join them as one."""
    return b"; ".join(values)


def render_set_cookie(
    name: str,
    value: str,
    *,
    max_age: float | None = None,
    path: str | None = "/",
    domain: str | None = None,
    secure: bool = False,
    http_only: bool = True,
    same_site: str | None = "lax",
    partitioned: bool = False,
    priority: str | None = None,
    now: float,
) -> bytes:
    """Render one Set-Cookie header value. Every part is validated: nothing can inject.

    `max_age` emits both Max-Age and Expires (Expires for old clients); `max_age=0`
    expires the cookie. Raises ValueError on any invalid part.
    """
    raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
    if not _NAME.match(raw_name):
        raise ValueError(f"invalid cookie name {name!r}")
    if not _VALUE.match(raw_value):
        raise ValueError(f"invalid characters in the value of cookie {name!r}")
    options = (path, domain, secure, http_only, same_site, partitioned, priority)
    suffix = _SUFFIXES.get(options)
    if suffix is None:
        suffix = _attributes(*options)
        if len(_SUFFIXES) >= _MAX_SUFFIXES:
            _SUFFIXES.clear()
        _SUFFIXES[options] = suffix
    if max_age is None:
        return raw_name + b"=" + raw_value + suffix
    whole = max(0, int(max_age))
    expires = int(_EPOCH.timestamp() if whole == 0 else now + whole)
    return b"%s=%s; Max-Age=%d; Expires=%s%s" % (raw_name, raw_value, whole, _expires_date(expires), suffix)


# Rendered attributes after Expires, per set of options: a middleware renders one or two.
_SUFFIXES: dict[tuple[object, ...], bytes] = {}
_MAX_SUFFIXES = 64


def _attributes(
    path: str | None,
    domain: str | None,
    secure: bool,
    http_only: bool,
    same_site: str | None,
    partitioned: bool,
    priority: str | None,
) -> bytes:
    parts = [b""]
    for attr, text in (("Path", path), ("Domain", domain)):
        if text is not None:
            if not _ATTR.match(text):
                raise ValueError(f"invalid {attr} attribute {text!r}")
            parts.append(f"{attr}={text}".encode())
    if secure:
        parts.append(b"Secure")
    if http_only:
        parts.append(b"HttpOnly")
    if same_site is not None:
        parts.append(b"SameSite=" + _SAME_SITE[same_site])
    if partitioned:
        parts.append(b"Partitioned")
    if priority is not None:
        parts.append(b"Priority=" + _PRIORITY[priority])
    return b"; ".join(parts) if len(parts) > 1 else b""


# The Expires date of the last second rendered: formatting a date costs more than the rest.
_last_expires: tuple[int, bytes] = (-1, b"")


def _expires_date(timestamp: int) -> bytes:
    global _last_expires
    second, text = _last_expires
    if second != timestamp:
        text = http_date(timestamp).encode()
        _last_expires = (timestamp, text)
    return text


_SAME_SITE = {"lax": b"Lax", "strict": b"Strict", "none": b"None"}
_PRIORITY = {"low": b"Low", "medium": b"Medium", "high": b"High"}


def http_date(timestamp: float) -> str:
    """IMF-fixdate, as Set-Cookie's Expires wants it."""
    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC), usegmt=True)


def is_valid_name(name: str) -> bool:
    """True if `name` is an RFC 6265 cookie name (an HTTP token)."""
    return name.isascii() and _NAME.match(name.encode()) is not None
