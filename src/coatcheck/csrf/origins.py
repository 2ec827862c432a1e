"""Origins: the `scheme://host[:port]` form browsers send, and the `trusted_origins` option."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

from ..errors import ConfigurationError

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])\Z"
)


@lru_cache(maxsize=256)  # the same few origins arrive on every request; bounded against junk
def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case without a default port, or None if `value` is not
    an http(s) origin (a path, query, user info or non-ASCII host makes it not one)."""
    if not value or not value.isascii() or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith(("?", "#")):
        return None
    if ":" in host:  # urlsplit strips the brackets of an IPv6 literal
        host = f"[{host}]"
    if not _HOST.match(host):
        return None
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def referer_origin(referer: str) -> str | None:
    """The origin of a Referer URL (path and query dropped), or None if it has none."""
    try:
        parts = urlsplit(referer)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return normalize_origin(f"{parts.scheme}://{parts.netloc}")


def trusted_origin_set(origins: Iterable[str]) -> frozenset[str]:
    """Validate the `trusted_origins` option; raise ConfigurationError saying what to change."""
    if isinstance(origins, str):
        origins = [origins]
    result = set()
    for origin in origins:
        if not isinstance(origin, str):
            raise ConfigurationError(f"trusted_origins must hold strings, got {type(origin).__name__}")
        normal = normalize_origin(origin)
        if normal is None or "*" in origin:
            raise ConfigurationError(
                f"trusted_origins entry {origin!r} is not an origin: write scheme://host[:port] exactly as "
                "browsers send it, e.g. 'https://example.com' (no path, no wildcard; IDN hosts in xn-- form)"
            )
        result.add(normal)
    if not result:
        raise ConfigurationError(
            "CSRFMiddleware needs trusted_origins: the origins your pages are served from, "
            "e.g. trusted_origins=['https://example.com'] (it is never guessed from the Host header)"
        )
    return frozenset(result)
