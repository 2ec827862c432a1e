"""CSRF protection: a synchronizer token in the session, checked with the request's origin.

One concept per module: `rules` (the pure decision, `evaluate`, which every adapter calls),
`origins`, `paths` (exemptions), `forms` (finding the token field in a body, incrementally),
`routes` (the `@csrf_exempt` lookup through Starlette's router), `tokens` (`get_token`),
and the adapters: `asgi` (`CSRFMiddleware`) and `wsgi` (body reading shared by
`coatcheck.wsgi.CSRFMiddleware` and `coatcheck.flask.CSRFProtect`). Token masking lives in
`coatcheck.masking`. The names below are the ones this package has always offered.
"""

from __future__ import annotations

from ..masking import MAX_MASKED_LENGTH, mask_token, new_secret, tokens_match, unmask_token
from .asgi import CSRFMiddleware
from .forms import FormKind, FormScanner, find_form_token, form_kind, parse_content_type
from .origins import normalize_origin, referer_origin, trusted_origin_set
from .paths import (
    EXEMPT_ATTRIBUTE,
    csrf_exempt,
    exempt_path_list,
    is_marked_exempt,
    normalize_path,
    path_is_exempt,
)
from .routes import starlette_endpoint_exempt
from .rules import (
    ALLOWED_EXEMPT,
    ALLOWED_SAFE,
    ALLOWED_TOKEN,
    DEFAULT_FIELD_NAME,
    DEFAULT_HEADER_NAME,
    DEFAULT_MAX_BODY_SIZE,
    NO_SESSION,
    READ_FORM,
    SAFE_METHODS,
    CSRFPolicy,
    CSRFRequest,
    Verdict,
    check_origin,
    check_request,
    check_token,
    checked_trust_proxy,
    evaluate,
)
from .tokens import get_token

__all__ = [
    "ALLOWED_EXEMPT",
    "ALLOWED_SAFE",
    "ALLOWED_TOKEN",
    "DEFAULT_FIELD_NAME",
    "DEFAULT_HEADER_NAME",
    "DEFAULT_MAX_BODY_SIZE",
    "EXEMPT_ATTRIBUTE",
    "MAX_MASKED_LENGTH",
    "NO_SESSION",
    "READ_FORM",
    "SAFE_METHODS",
    "CSRFMiddleware",
    "CSRFPolicy",
    "CSRFRequest",
    "FormKind",
    "FormScanner",
    "Verdict",
    "check_origin",
    "check_request",
    "check_token",
    "checked_trust_proxy",
    "csrf_exempt",
    "evaluate",
    "exempt_path_list",
    "find_form_token",
    "form_kind",
    "get_token",
    "is_marked_exempt",
    "mask_token",
    "new_secret",
    "normalize_origin",
    "normalize_path",
    "parse_content_type",
    "path_is_exempt",
    "referer_origin",
    "starlette_endpoint_exempt",
    "tokens_match",
    "trusted_origin_set",
    "unmask_token",
]
