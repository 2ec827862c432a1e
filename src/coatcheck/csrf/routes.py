"""Which Starlette/FastAPI endpoint a request will reach, to honour `@csrf_exempt`.

The walk mirrors Starlette's router: the first route that matches fully wins, else the
first partial match (a path that matches with another method), through `Mount` and `Host`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .paths import is_marked_exempt

_MAX_DEPTH = 16  # nested Mounts; deeper trees are not looked into


def starlette_endpoint_exempt(app: Any, scope: Mapping[str, Any]) -> bool:
    """True if the Starlette/FastAPI route this request will reach is marked `csrf_exempt`.
    Apps without a Starlette router return False."""
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
    if isinstance(inner, list) and inner and depth < _MAX_DEPTH:  # Mount / Host: look inside
        return _routes_exempt(inner, scope, depth + 1)
    return False
