"""The HTTP edge every adapter shares: session headers and plain error responses, as data.

Adapters (ASGI, WSGI, Flask, and the framework plugins) only translate these values to
their framework's types; what a 503, a CSRF refusal or the session's cache headers look
like is decided here, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus

RawHeaders = list[tuple[bytes, bytes]]
StrHeaders = list[tuple[str, str]]


@dataclass(slots=True)
class RequestInfo:
    """What the runtime needs to know about a request, extracted by the adapter.

    `storage_key` is the runtime's own note, never the adapter's: (id, its storage key) of
    the record loaded for this request, so the commit does not hash the id a second time."""

    path: str
    scheme: str
    cookie: bytes | None
    forwarded_proto: bytes | None = None
    user_agent: bytes | None = None
    client_ip: str | None = None
    storage_key: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class SessionHeaders:
    """What the session adds to a response: cache headers (Vary: Cookie, private) and cookies."""

    cache: bool = False
    cookies: tuple[bytes, ...] = ()

    def __bool__(self) -> bool:
        return self.cache or bool(self.cookies)


NO_HEADERS = SessionHeaders()
CACHE_HEADERS = SessionHeaders(cache=True)

UNAVAILABLE_BODY = b"Service Unavailable: the session store did not answer. Please retry shortly.\n"
CACHE_HEADER_NAMES = ("vary", "cache-control")  # what `with_session_headers` merges into


@dataclass(frozen=True, slots=True)
class PlainResponse:
    """A short, uncacheable text/plain response sent in place of the app's."""

    status: int
    body: bytes
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def status_line(self) -> str:
        """WSGI's status string, e.g. "503 Service Unavailable"."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"

    @property
    def headers(self) -> RawHeaders:
        return [
            (b"content-type", b"text/plain; charset=utf-8"),
            *self.extra_headers,
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(self.body)).encode()),
        ]

    @property
    def str_headers(self) -> StrHeaders:
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.headers]


def unavailable() -> PlainResponse:
    """The 503 for a store that could not load or save (one log line goes with it)."""
    return PlainResponse(503, UNAVAILABLE_BODY, ((b"retry-after", b"5"),))


def too_large(reason: object) -> PlainResponse:
    """The 500 for a client-side session that does not fit its cookies (debug mode only)."""
    return PlainResponse(500, f"Internal Server Error: {reason}\n".encode())


def refused(status: int, reason: str, detail: str) -> PlainResponse:
    """A CSRF refusal (403, or 413 for a form whose token is past the body limit): names the
    failed check in the body and in `X-CSRF-Failure`, never echoes a token."""
    title = HTTPStatus(status).phrase
    body = f"{title}: CSRF check failed ({reason}): {detail}.\n".encode()
    return PlainResponse(status, body, ((b"x-csrf-failure", reason.encode("latin-1")),))


# ---- the session's response headers ---------------------------------------------------------
def add_cache_headers(headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """Add `Vary: Cookie` and make caching private, keeping what the app already said."""
    out: RawHeaders = []
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


def with_session_headers(headers: Iterable[tuple[bytes, bytes]], session: SessionHeaders) -> RawHeaders:
    """The response headers with the session's: Vary/Cache-Control when asked, then one
    Set-Cookie per value (client-side sessions may send several: chunks)."""
    out = add_cache_headers(headers) if session.cache else list(headers)
    for value in session.cookies:
        out.append((b"set-cookie", value))
    return out


def with_session_str_headers(headers: Iterable[tuple[str, str]], session: SessionHeaders) -> StrHeaders:
    """`with_session_headers` for str headers (WSGI, Werkzeug), latin-1 as PEP 3333 says."""
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in with_session_headers(raw, session)]


def cache_headers_of(headers: Iterable[tuple[str, str]]) -> StrHeaders:
    """The response's own Vary and Cache-Control headers: what an adapter holding a mutable
    header mapping takes out before adding `with_session_str_headers(these, session)`."""
    return [(name, value) for name, value in headers if name.lower() in CACHE_HEADER_NAMES]
