"""Explicit exemptions: the `csrf_exempt` decorator and `exempt_paths`.

`exempt_paths` apply only to a path in normal form: one that an escape, a dot segment, a
double slash or a backslash could make a router resolve elsewhere is never exempt, so
`/hooks/../admin` or `/hooks%2F..%2Fadmin` cannot borrow the exemption of `/hooks/*`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar
from urllib.parse import unquote

from ..errors import ConfigurationError

T = TypeVar("T")

EXEMPT_ATTRIBUTE = "_coatcheck_csrf_exempt"
_MAX_DECODES = 4  # "%25252F" needs three rounds; a path that still changes after four matches nothing


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


def normalize_path(path: str) -> str | None:
    """`path` as the most lenient router would resolve it: %-escapes decoded (repeatedly),
    backslashes read as slashes, empty and "." segments dropped, ".." applied. A trailing
    slash is kept. None if decoding does not settle (such a path is never exempt)."""
    for _ in range(_MAX_DECODES):
        decoded = unquote(path, encoding="latin-1")
        if decoded == path:
            break
        path = decoded
    else:
        return None
    segments: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    trailing = "/" if segments and path.endswith(("/", "/.", "/..")) else ""
    return "/" + "/".join(segments) + trailing


def exempt_path_list(paths: Iterable[str]) -> tuple[str, ...]:
    """Validate `exempt_paths`: exact paths ("/webhook") or prefixes ending in "/*" ("/hooks/*"),
    written as normalised, decoded paths."""
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
        if normalize_path(path.removesuffix("*")) != path.removesuffix("*"):
            raise ConfigurationError(
                f"exempt_paths entry {path!r} must be a normalised path: no '.', '..' or empty "
                "segments, no %-escapes or backslashes (write '/hooks/a b', not '/hooks/a%20b')"
            )
        result.append(path)
    return tuple(result)


def path_is_exempt(path: str, exempt_paths: Iterable[str]) -> bool:
    """True if `path` is in normal form (`normalize_path` leaves it as is) and equals an exact
    entry or lies under a "/prefix/*" entry (the prefix itself included). A path that is not
    in normal form is never exempt: routers disagree on how to resolve it."""
    normal = normalize_path(path)
    if normal is None or normal != path:
        return False
    for entry in exempt_paths:
        if entry.endswith("/*"):
            prefix = entry[:-1]  # keeps the trailing slash: "/hooks/*" does not exempt "/hooksmith"
            if normal.startswith(prefix) or normal == prefix[:-1]:
                return True
        elif normal == entry:
            return True
    return False
