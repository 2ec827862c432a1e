"""The `@csrf_exempt` lookup walks Starlette's routing as the router itself would: pinned
against real `Router`, `Route`, `Mount` and `Host` objects."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route, Router

from coatcheck.csrf import csrf_exempt, starlette_endpoint_exempt


async def plain(request: Request) -> Response:
    return PlainTextResponse("plain")


@csrf_exempt
async def exempt(request: Request) -> Response:
    return PlainTextResponse("exempt")


@csrf_exempt
class ExemptEndpoint(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        return PlainTextResponse("endpoint")


def scope(path: str, method: str = "POST", host: str = "testserver") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"host", host.encode())],
    }


ROUTER = Router(
    routes=[
        Route("/full-wins", plain, methods=["GET"]),
        Route("/full-wins", exempt, methods=["POST"]),
        Route("/partial-loses", exempt, methods=["GET"]),
        Route("/partial-loses", plain, methods=["POST"]),
        Route("/only-partial", exempt, methods=["GET"]),
        Route("/items/{id:int}", exempt, methods=["POST"]),
        Route("/endpoint", ExemptEndpoint),
        Route("/plain", plain, methods=["POST"]),
        Mount(
            "/sub", routes=[Route("/hook", exempt, methods=["POST"]), Route("/form", plain, methods=["POST"])]
        ),
        Mount("/ext", app=csrf_exempt(Starlette(routes=[Route("/in", plain, methods=["POST"])]))),
        Mount("/deep", routes=[Mount("/er", routes=[Route("/hook", exempt, methods=["POST"])])]),
        Host("api.example", app=Router(routes=[Route("/hook", exempt, methods=["POST"])])),
    ]
)


@pytest.mark.parametrize(
    ("path", "exempted"),
    [
        ("/full-wins", True),  # a full match is chosen over an earlier partial (method) match
        ("/partial-loses", False),  # ... so an exempt GET route does not exempt the POST one
        ("/only-partial", True),  # no full match: the first partial one decides, as in Starlette
        ("/items/7", True),
        ("/items/seven", False),  # the path converter must match too
        ("/endpoint", True),
        ("/plain", False),
        ("/sub/hook", True),
        ("/sub/form", False),
        ("/ext/in", True),  # a decorated mounted app exempts everything under it
        ("/ext/anything", True),
        ("/deep/er/hook", True),
        ("/missing", False),
    ],
)
def test_route_walk_matches_the_router(path: str, exempted: bool) -> None:
    assert starlette_endpoint_exempt(ROUTER, scope(path)) is exempted
    assert starlette_endpoint_exempt(Starlette(routes=ROUTER.routes), scope(path)) is exempted


def test_route_walk_follows_host_routes() -> None:
    assert starlette_endpoint_exempt(ROUTER, scope("/hook", host="api.example"))
    assert not starlette_endpoint_exempt(ROUTER, scope("/hook", host="other.example"))


def test_route_walk_ignores_apps_without_a_starlette_router() -> None:
    async def bare_app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    assert not starlette_endpoint_exempt(bare_app, scope("/anything"))
