"""The CSRF decision as pure functions of plain values: every adapter calls `evaluate`.

Rules, in order, for every method except GET, HEAD, OPTIONS and TRACE (unknown methods
included, whatever the Content-Type):

1. An exempt endpoint or path (`exempt_paths`, matched on the normalised path) passes.
2. `Sec-Fetch-Site: cross-site` is refused.
3. An `Origin` header must equal one of the configured `trusted_origins` (never the Host
   header); `Origin: null` is refused.
4. Without `Origin`, a `Referer` is required on HTTPS and, when present, must be on a
   trusted origin (and HTTPS when the request is).
5. A request that has no session (its path is outside the session cookie's path) is refused.
6. The token, from the `X-CSRF-Token` header or the `csrf_token` field of a form body
   (urlencoded or multipart), must unmask to the session's token (constant-time compare).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import ConfigurationError
from ..masking import unmask_token
from .forms import form_kind
from .origins import normalize_origin, referer_origin, trusted_origin_set
from .paths import exempt_path_list, path_is_exempt

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
DEFAULT_FIELD_NAME = "csrf_token"
DEFAULT_HEADER_NAME = "X-CSRF-Token"
DEFAULT_MAX_BODY_SIZE = 1024 * 1024

_FIELD_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}\Z")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}\Z")

SessionToken = str | None | Callable[[], str | None]


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
    origins_setting: str = "CSRFMiddleware(trusted_origins=...)"  # what a refusal tells users to change

    @classmethod
    def build(
        cls,
        *,
        trusted_origins: Iterable[str],
        field_name: str = DEFAULT_FIELD_NAME,
        header_name: str = DEFAULT_HEADER_NAME,
        exempt_paths: Iterable[str] = (),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        origins_setting: str = "CSRFMiddleware(trusted_origins=...)",
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
            origins_setting=origins_setting,
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
# Not a final answer: the token can only be in the form body, which the adapter must read
# (through a FormScanner, within max_body_size) and then call `evaluate` again with.
READ_FORM = Verdict(False, "read-form", "the token must be looked for in the form body", 0)


def _refuse(reason: str, detail: str, status: int = 403) -> Verdict:
    return Verdict(False, reason, detail, status)


_MALFORMED = _refuse(
    "token-malformed",
    "the CSRF token is not a masked token: render it with csrf_input()/csrf_token() "
    "(coatcheck.csrf.get_token), not the raw secret stored in the session",
)
NO_SESSION = _refuse(
    "no-session",
    "this request has no session: its path is outside the session cookie's path (Cookie(path=...)), "
    "or CSRFMiddleware does not run inside SessionMiddleware (with Starlette, call "
    "add_middleware(CSRFMiddleware, ...) before add_middleware(SessionMiddleware, ...)). "
    "Exempt such endpoints explicitly if they need no token",
)


def body_too_large(policy: CSRFPolicy) -> Verdict:
    """The 413 for a form that does not reveal the token field within `max_body_size` bytes."""
    return _refuse(
        "body-too-large",
        f"no {policy.field_name!r} field in the first {policy.max_body_size} bytes of the form: "
        "put the token field first in the form, send the X-CSRF-Token header, "
        "or raise CSRFMiddleware(max_body_size=...)",
        413,
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
                f"the Origin {origin} is not one of the trusted origins: add it to {policy.origins_setting} "
                "if your pages are served from there",
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
            f"the Referer's origin {origin} is not one of the trusted origins: add it to "
            f"{policy.origins_setting} if your pages are served from there",
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
    session_token: SessionToken = None,
    has_session: bool = True,
    form_token: str | None = None,
    form_read: bool = False,
    exempt: bool = False,
) -> Verdict:
    """The whole decision; every adapter calls this.

    `session_token` is the session's raw secret, or a function returning it (called only
    when the token is compared, so requests decided earlier never touch the session).
    `has_session=False`: the request has no session at all. The header token wins over the
    form field. Returns `READ_FORM` when the token can only be in a form body that the
    caller has not read yet (`form_read=False`): read it, then call again with
    `form_token=` and `form_read=True`.
    """
    verdict = check_request(request, policy, exempt=exempt)
    if verdict is not None:
        return verdict
    if not has_session:
        return NO_SESSION
    submitted = request.header_token or None
    if submitted is None:
        if not form_read and form_kind(request.content_type) is not None:
            return READ_FORM
        submitted = form_token
    secret = session_token() if callable(session_token) else session_token
    return check_token(secret, submitted, policy)


def _header_title(name: str) -> str:
    return "-".join("CSRF" if part == "csrf" else part.capitalize() for part in name.split("-"))
