"""CSRF protection: a synchronizer token in the session, checked with the request's origin.

The decisions are pure functions of plain values (`CSRFRequest`, `CSRFPolicy`, the session's
token, the submitted token) that return a `Verdict` with a reason, so the ASGI middleware here
and the WSGI/Flask twin share every rule; the adapters only read headers and bodies.

Rules, in order, for every method except GET, HEAD, OPTIONS and TRACE (unknown methods
included, whatever the Content-Type):

1. `Sec-Fetch-Site: cross-site` is refused.
2. An `Origin` header must equal one of the configured `trusted_origins` (never the Host
   header); `Origin: null` is refused.
3. Without `Origin`, a `Referer` is required on HTTPS and, when present, must be on a
   trusted origin (and HTTPS when the request is).
4. The token, from the `X-CSRF-Token` header or the `csrf_token` field of a form body
   (urlencoded or multipart), must unmask to the session's token (constant-time compare).

Tokens are sent masked (a fresh random XOR pad per render, against BREACH), so no two pages
carry the same bytes. Exemptions are explicit: `exempt_paths` or the `csrf_exempt` decorator.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar
from urllib.parse import unquote_to_bytes, urlsplit

from .engine import is_secure
from .errors import ConfigurationError
from .masking import MAX_MASKED_LENGTH as MAX_MASKED_LENGTH
from .masking import mask_token as mask_token
from .masking import tokens_match as tokens_match
from .masking import unmask_token as unmask_token
from .session import CSRF_KEY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
DEFAULT_FIELD_NAME = "csrf_token"
DEFAULT_HEADER_NAME = "X-CSRF-Token"
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
EXEMPT_ATTRIBUTE = "_coatcheck_csrf_exempt"

FormKind = Literal["urlencoded", "multipart"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])$"
)
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_PARAM = re.compile(r';\s*([A-Za-z0-9_*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


# ---- tokens --------------------------------------------------------------------------------
def get_token(session: MutableMapping[str, Any]) -> str:
    """A freshly masked token for this session, for a form field or the X-CSRF-Token header.

    Creates the session's token on first use (which saves the session). Call it once per
    render: every call returns different bytes that all verify.
    """
    token = session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return mask_token(token)


# ---- origins -------------------------------------------------------------------------------
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


# ---- exemptions ----------------------------------------------------------------------------
def csrf_exempt(endpoint: T) -> T:
    """Mark a Starlette/FastAPI endpoint (function, HTTPEndpoint class or mounted app) as not
    needing a CSRF token or a trusted origin. Use it for webhooks and token-authenticated APIs."""
    try:
        setattr(endpoint, EXEMPT_ATTRIBUTE, True)
    except (AttributeError, TypeError):
        raise TypeError(
            f"csrf_exempt cannot mark {endpoint!r}: decorate a function, a class or an app object"
        ) from None
    return endpoint


def is_marked_exempt(endpoint: object) -> bool:
    """True if `endpoint` (or the function a bound method wraps) was decorated with `csrf_exempt`."""
    return bool(getattr(endpoint, EXEMPT_ATTRIBUTE, False))


def exempt_path_list(paths: Iterable[str]) -> tuple[str, ...]:
    """Validate `exempt_paths`: exact paths ("/webhook") or prefixes ending in "/*" ("/hooks/*")."""
    if isinstance(paths, str):
        paths = [paths]
    result = []
    for path in paths:
        if (
            not isinstance(path, str)
            or not path.startswith("/")
            or ("*" in path and "*" in path[:-1])
            or (path.endswith("*") and not path.endswith("/*"))
        ):
            raise ConfigurationError(
                f"exempt_paths entry {path!r} must be an exact path like '/webhook' "
                "or a prefix ending in '/*' like '/hooks/*' (no other wildcards)"
            )
        result.append(path)
    return tuple(result)


def path_is_exempt(path: str, exempt_paths: Iterable[str]) -> bool:
    """True if `path` equals an exact entry, or lies under a "/prefix/*" entry (the prefix
    itself included)."""
    for entry in exempt_paths:
        if entry.endswith("/*"):
            prefix = entry[:-1]  # keeps the trailing slash: "/hooks/*" does not exempt "/hooksmith"
            if path.startswith(prefix) or path == prefix[:-1]:
                return True
        elif path == entry:
            return True
    return False


# ---- the decision --------------------------------------------------------------------------
def checked_trust_proxy(trust_proxy: object) -> bool | None:
    """The CSRF middlewares' `trust_proxy` option: True, False, or None (follow the session's)."""
    if trust_proxy is not None and not isinstance(trust_proxy, bool):
        raise ConfigurationError(
            f"trust_proxy must be True, False or None (same as the session), got {trust_proxy!r}"
        )
    return trust_proxy


@dataclass(frozen=True, slots=True)
class CSRFPolicy:
    """The validated CSRF settings. Build it with `CSRFPolicy.build(...)`."""

    trusted_origins: frozenset[str]
    field_name: str = DEFAULT_FIELD_NAME
    header_name: str = DEFAULT_HEADER_NAME.lower()
    exempt_paths: tuple[str, ...] = ()
    max_body_size: int = DEFAULT_MAX_BODY_SIZE

    @classmethod
    def build(
        cls,
        *,
        trusted_origins: Iterable[str],
        field_name: str = DEFAULT_FIELD_NAME,
        header_name: str = DEFAULT_HEADER_NAME,
        exempt_paths: Iterable[str] = (),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> CSRFPolicy:
        if not isinstance(field_name, str) or not _FIELD_NAME.match(field_name):
            raise ConfigurationError(
                f"field_name {field_name!r} must be 1-100 characters of letters, digits and _.:-"
            )
        if not isinstance(header_name, str) or not _HEADER_NAME.match(header_name):
            raise ConfigurationError(f"header_name {header_name!r} must be a header name like 'X-CSRF-Token'")
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) or max_body_size < 1024:
            raise ConfigurationError(
                f"max_body_size must be a whole number of bytes of at least 1024, got {max_body_size!r}"
            )
        return cls(
            trusted_origins=trusted_origin_set(trusted_origins),
            field_name=field_name,
            header_name=header_name.lower(),
            exempt_paths=exempt_path_list(exempt_paths),
            max_body_size=max_body_size,
        )


@dataclass(frozen=True, slots=True)
class CSRFRequest:
    """What the CSRF rules look at in a request, extracted by an adapter.

    `origin`, `referer` and `sec_fetch_site` are the header values (None when absent;
    several `Origin` headers arrive as `origin_count` > 1). `header_token` is the value of the
    token header. `secure` is HTTPS as the client saw it.
    """

    method: str
    path: str
    secure: bool
    origin: str | None = None
    origin_count: int = 0
    referer: str | None = None
    sec_fetch_site: str | None = None
    content_type: str | None = None
    header_token: str | None = None

    @classmethod
    def from_headers(
        cls,
        *,
        method: str,
        path: str,
        secure: bool,
        headers: Iterable[tuple[bytes, bytes]],
        header_name: str = DEFAULT_HEADER_NAME,
    ) -> CSRFRequest:
        """Build from lower-case (name, value) byte pairs, as in an ASGI scope."""
        token_header = header_name.lower().encode("latin-1")
        origins: list[str] = []
        referer = fetch_site = content_type = token = None
        for name, raw in headers:
            if name == b"origin":
                origins.append(raw.decode("latin-1").strip())
            elif name == b"referer" and referer is None:
                referer = raw.decode("latin-1").strip()
            elif name == b"sec-fetch-site":
                value = raw.decode("latin-1").strip().lower()
                fetch_site = value if fetch_site != "cross-site" else fetch_site
            elif name == b"content-type" and content_type is None:
                content_type = raw.decode("latin-1")
            elif name == token_header and token is None:
                token = raw.decode("latin-1").strip()
        return cls(
            method=method,
            path=path,
            secure=secure,
            origin=origins[0] if origins else None,
            origin_count=len(origins),
            referer=referer,
            sec_fetch_site=fetch_site,
            content_type=content_type,
            header_token=token,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check: `allowed`, a stable machine `reason`, and a human `detail`
    that never repeats a token. `status` is the HTTP status to answer a refusal with."""

    allowed: bool
    reason: str
    detail: str
    status: int = 403


ALLOWED_SAFE = Verdict(True, "safe-method", "GET, HEAD, OPTIONS and TRACE are not checked", 200)
ALLOWED_EXEMPT = Verdict(True, "exempt", "this endpoint is exempt from CSRF checks", 200)
ALLOWED_TOKEN = Verdict(True, "token-valid", "the CSRF token matches the session", 200)


def _refuse(reason: str, detail: str, status: int = 403) -> Verdict:
    return Verdict(False, reason, detail, status)


_MALFORMED = _refuse(
    "token-malformed",
    "the CSRF token is not a masked token: render it with csrf_input()/csrf_token() "
    "(coatcheck.csrf.get_token), not session.csrf_token",
)


def check_origin(request: CSRFRequest, policy: CSRFPolicy) -> Verdict | None:
    """Sec-Fetch-Site, Origin and Referer rules: a refusal, or None if they pass."""
    if request.sec_fetch_site == "cross-site":
        return _refuse(
            "sec-fetch-site",
            "the browser says this request comes from another site (Sec-Fetch-Site: cross-site)",
        )
    if request.origin_count > 1:
        return _refuse("origin-malformed", "the request has more than one Origin header")
    if request.origin is not None:
        if request.origin == "null":
            return _refuse(
                "origin-null",
                "the request comes from an opaque origin (Origin: null: a sandboxed frame, "
                "a file: page or a cross-origin redirect)",
            )
        origin = normalize_origin(request.origin)
        if origin is None:
            return _refuse("origin-malformed", "the Origin header is not a valid origin")
        if origin not in policy.trusted_origins:
            return _refuse(
                "origin-untrusted",
                "the Origin header is not one of the trusted origins (CSRFMiddleware(trusted_origins=...))",
            )
        return None
    if request.referer is None:
        if request.secure:
            return _refuse(
                "referer-missing",
                "an HTTPS request without an Origin or Referer header (browsers send one of them; "
                "a Referrer-Policy of no-referrer on the form's page causes this)",
            )
        return None  # plain HTTP without either header: not a browser's form post; the token decides
    origin = referer_origin(request.referer)
    if origin is None:
        return _refuse("referer-malformed", "the Referer header is not a valid http(s) URL")
    if request.secure and not origin.startswith("https://"):
        return _refuse("referer-insecure", "an HTTPS request whose Referer is a plain-HTTP page")
    if origin not in policy.trusted_origins:
        return _refuse(
            "referer-untrusted",
            "the Referer header is not on one of the trusted origins (CSRFMiddleware(trusted_origins=...))",
        )
    return None


def check_request(request: CSRFRequest, policy: CSRFPolicy, *, exempt: bool = False) -> Verdict | None:
    """Everything decidable without the token: allowed (safe method, exempt), refused (origin
    rules), or None: the token must be checked next (`check_token`)."""
    if request.method in SAFE_METHODS:
        return ALLOWED_SAFE
    if exempt or path_is_exempt(request.path, policy.exempt_paths):
        return ALLOWED_EXEMPT
    return check_origin(request, policy)


def check_token(session_token: str | None, submitted: str | None, policy: CSRFPolicy) -> Verdict:
    """Compare the submitted (masked) token with the session's, in constant time."""
    if submitted is None or submitted == "":
        return _refuse(
            "token-missing",
            f"no CSRF token: send it in the {_header_title(policy.header_name)} header or in the "
            f"{policy.field_name!r} field of a urlencoded or multipart form",
        )
    raw = unmask_token(submitted)
    if raw is None:
        return _MALFORMED
    if not isinstance(session_token, str) or not session_token:
        return _refuse(
            "session-token-missing",
            "this session has no CSRF token (it is new, expired or logged out): reload the page and retry",
        )
    expected = session_token.encode()
    if len(raw) != len(expected):  # lengths are public; this catches an unmasked token sent as is
        return _MALFORMED
    if not hmac.compare_digest(raw, expected):
        return _refuse(
            "token-mismatch",
            "the CSRF token does not belong to this session (it predates a login or comes from "
            "another session): reload the page and retry",
        )
    return ALLOWED_TOKEN


def evaluate(
    request: CSRFRequest,
    policy: CSRFPolicy,
    *,
    session_token: str | None,
    form_token: str | None = None,
    exempt: bool = False,
) -> Verdict:
    """The whole decision, for callers that already hold the form field's value (if any).
    The header token wins over the form field."""
    verdict = check_request(request, policy, exempt=exempt)
    if verdict is not None:
        return verdict
    submitted = request.header_token if request.header_token else form_token
    return check_token(session_token, submitted, policy)


def _header_title(name: str) -> str:
    return "-".join("CSRF" if part == "csrf" else part.capitalize() for part in name.split("-"))


# ---- finding the field in a form body --------------------------------------------------------
def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """(lower-case media type, parameters) of a Content-Type value; ("", {}) if absent."""
    if not value:
        return "", {}
    media, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        raw = match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(match.group(1).lower(), raw)
    return media.strip().lower(), params


def form_kind(content_type: str | None) -> FormKind | None:
    """Which kind of form body can carry the token field; None for every other body."""
    media, params = parse_content_type(content_type)
    if media == "application/x-www-form-urlencoded":
        return "urlencoded"
    if media == "multipart/form-data" and 0 < len(params.get("boundary", "")) <= 200:
        return "multipart"
    return None


def find_form_token(
    body: bytes, content_type: str | None, field_name: str, *, complete: bool = True
) -> str | None:
    """The first value of form field `field_name` in `body`, or None.

    With `complete=False`, `body` is a prefix of a longer body and only fields that are
    certainly whole are considered, so the caller can stop reading once the field is found.
    """
    kind = form_kind(content_type)
    if kind == "urlencoded":
        return _urlencoded_field(body, field_name.encode(), complete)
    if kind == "multipart":
        boundary = parse_content_type(content_type)[1]["boundary"]
        return _multipart_field(body, boundary.encode("latin-1"), field_name, complete)
    return None


def _urlencoded_field(body: bytes, name: bytes, complete: bool) -> str | None:
    pairs = body.split(b"&")
    if not complete:
        pairs.pop()  # may be cut short
    for pair in pairs:
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            return unquote_to_bytes(value.replace(b"+", b" ")).decode("latin-1")
    return None


def _multipart_field(body: bytes, boundary: bytes, name: str, complete: bool) -> str | None:
    sections = body.split(b"--" + boundary)
    whole = sections[1:] if complete else sections[1:-1]  # the last one may be cut short
    for section in whole:
        if section.startswith(b"--"):
            break  # the closing delimiter
        head, blank, content = section.partition(b"\r\n\r\n")
        if not blank:
            continue
        disposition = None
        for line in head.split(b"\r\n"):
            header, colon, value = line.partition(b":")
            if colon and header.strip().lower() == b"content-disposition":
                disposition = value.decode("latin-1")
        if disposition is None:
            continue
        kind, params = parse_content_type(disposition)
        if (
            kind == "form-data"
            and params.get("name") == name
            and not any(k.startswith("filename") for k in params)
        ):
            return (content[:-2] if content.endswith(b"\r\n") else content).decode("latin-1")
    return None


# ---- Starlette endpoint lookup (for the decorator) --------------------------------------------
def starlette_endpoint_exempt(app: Any, scope: Scope) -> bool:
    """True if the Starlette/FastAPI route this request will reach is marked `csrf_exempt`.

    Resolves the route the way Starlette's router does (first full match, else the first
    partial one), through `Mount` and `Host`. Apps without a Starlette router return False.
    """
    router = getattr(app, "router", None)
    routes = getattr(router, "routes", None) if router is not None else getattr(app, "routes", None)
    if not isinstance(routes, list):
        return False
    return _routes_exempt(routes, dict(scope), depth=0)


def _routes_exempt(routes: list[Any], scope: dict[str, Any], depth: int) -> bool:
    try:
        from starlette.routing import Match
    except ImportError:  # pragma: no cover - routes came from Starlette, so it is installed
        return False
    partial: tuple[Any, dict[str, Any]] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return _route_exempt(route, {**scope, **child}, child, depth)
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:
        route, child = partial
        return _route_exempt(route, {**scope, **child}, child, depth)
    return False


def _route_exempt(route: Any, scope: dict[str, Any], child: Mapping[str, Any], depth: int) -> bool:
    endpoint = child.get("endpoint")
    if is_marked_exempt(endpoint) or is_marked_exempt(getattr(route, "endpoint", None)):
        return True
    inner = getattr(route, "routes", None)
    if isinstance(inner, list) and inner and depth < 16:  # Mount / Host: look inside
        return _routes_exempt(inner, scope, depth + 1)
    return False


# ---- the ASGI middleware ---------------------------------------------------------------------
class CSRFMiddleware:
    """CSRF protection for ASGI apps. Goes *inside* `SessionMiddleware` (it reads
    `scope["session"]`).

    Refusals are `403 Forbidden` (`text/plain`, naming the failed check, never a token; the
    machine-readable reason is in the `X-CSRF-Failure` header); a form body that does not
    reveal the token within `max_body_size` bytes gets `413`. WebSocket handshakes from an
    untrusted `Origin` are refused (cross-site WebSocket hijacking) unless
    `check_websockets=False`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_origins: Iterable[str],
        field_name: str = DEFAULT_FIELD_NAME,
        header_name: str = DEFAULT_HEADER_NAME,
        exempt_paths: Iterable[str] = (),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        trust_proxy: bool | None = None,
        check_websockets: bool = True,
    ) -> None:
        self.app = app
        self.policy = CSRFPolicy.build(
            trusted_origins=trusted_origins,
            field_name=field_name,
            header_name=header_name,
            exempt_paths=exempt_paths,
            max_body_size=max_body_size,
        )
        self.trust_proxy = checked_trust_proxy(trust_proxy)
        self.check_websockets = bool(check_websockets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" and self.check_websockets:
            await self._websocket(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        session = scope.get("session")
        if not isinstance(session, MutableMapping):
            raise ConfigurationError(
                "CSRFMiddleware found no session in scope['session']: it must run inside SessionMiddleware. "
                "With Starlette, call app.add_middleware(CSRFMiddleware, ...) before "
                "app.add_middleware(SessionMiddleware, ...) (the last one added runs first), or list "
                "Middleware(SessionMiddleware, ...) before Middleware(CSRFMiddleware, ...)"
            )
        request = self._request(scope, session)
        verdict = check_request(request, self.policy, exempt=self._exempt_endpoint(scope, request))
        if verdict is not None:
            if verdict.allowed:
                await self.app(scope, receive, send)
            else:
                await _refuse_http(send, verdict)
            return

        submitted = request.header_token or None
        if submitted is None and form_kind(request.content_type) is not None:
            read = await self._read_form(request, receive)
            if read is None:
                return  # the client went away while sending the body
            if isinstance(read, Verdict):
                await _refuse_http(send, read)
                return
            submitted, receive = read
        verdict = check_token(session.get(CSRF_KEY), submitted, self.policy)
        if not verdict.allowed:
            await _refuse_http(send, verdict)
            return
        await self.app(scope, receive, send)

    def _request(self, scope: Scope, session: Any) -> CSRFRequest:
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
        trust = self.trust_proxy
        if trust is None:  # follow the session middleware's setting
            settings = getattr(session, "_settings", None)
            trust = bool(getattr(settings, "trust_proxy", False))
        forwarded = next((v for n, v in headers if n == b"x-forwarded-proto"), None)
        return CSRFRequest.from_headers(
            method=scope.get("method", "GET"),
            path=scope.get("path", "/"),
            secure=is_secure(scope.get("scheme", "http"), forwarded, trust),
            headers=headers,
            header_name=self.policy.header_name,
        )

    def _exempt_endpoint(self, scope: Scope, request: CSRFRequest) -> bool:
        if request.method in SAFE_METHODS:
            return False  # not needed: safe methods pass anyway
        # scope["app"] is the Starlette app this middleware was added to; self.app is the app
        # it wraps directly (a Starlette app when composed by hand, or mounted under another).
        outer = scope.get("app")
        if outer is not None and starlette_endpoint_exempt(outer, scope):
            return True
        return outer is not self.app and starlette_endpoint_exempt(self.app, scope)

    async def _read_form(
        self, request: CSRFRequest, receive: Receive
    ) -> tuple[str | None, Receive] | Verdict | None:
        """Read the body until the token field is certainly found or the body ends; return the
        token and a `receive` that replays what was read. None if the client disconnected."""
        buffer = bytearray()
        more = True
        token = None
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            if message["type"] != "http.request":
                continue
            buffer += message.get("body", b"")
            more = bool(message.get("more_body", False))
            token = find_form_token(
                bytes(buffer), request.content_type, self.policy.field_name, complete=not more
            )
            if token is not None:
                break
            if len(buffer) > self.policy.max_body_size:
                return _refuse(
                    "body-too-large",
                    f"no {self.policy.field_name!r} field in the first {self.policy.max_body_size} bytes "
                    "of the form: put csrf_input() first in the form, send the X-CSRF-Token header, "
                    "or raise CSRFMiddleware(max_body_size=...)",
                    413,
                )
        return token, _replay(bytes(buffer), more, receive)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = None
        count = 0
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                origin = value.decode("latin-1").strip()
                count += 1
        if count:
            normal = normalize_origin(origin or "")
            if count > 1 or normal is None or normal not in self.policy.trusted_origins:
                await send({"type": "websocket.close", "code": 1008, "reason": "untrusted Origin"})
                return
        await self.app(scope, receive, send)


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A `receive` that first hands the app the body already read, then continues the stream."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _refuse_http(send: Send, verdict: Verdict) -> None:
    title = "Payload Too Large" if verdict.status == 413 else "Forbidden"
    body = f"{title}: CSRF check failed ({verdict.reason}): {verdict.detail}.\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": verdict.status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-csrf-failure", verdict.reason.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
