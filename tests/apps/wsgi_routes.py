"""The routes of tests.helpers (the ASGI test app), as a plain WSGI app behind
coatcheck.wsgi.SessionMiddleware, so the same HTTP behaviour tests run through both adapters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from coatcheck.wsgi import ENVIRON_KEY, SessionMiddleware, WSGISession

Handler = Callable[[Request, WSGISession], Response]


def _json(value: Any, **kwargs: Any) -> Response:
    return Response(json.dumps(value), mimetype="application/json", **kwargs)


def read(request: Request, s: WSGISession) -> Response:
    return _json({"n": s.get("n"), "new": s.is_new})


def incr(request: Request, s: WSGISession) -> Response:
    s["n"] = s.get("n", 0) + 1
    return _json({"n": s["n"]})


def plain(request: Request, s: WSGISession) -> Response:
    return _json({"ok": True})


def cart_add(request: Request, s: WSGISession) -> Response:
    s.setdefault("cart", []).append(request.args.get("item", "x"))
    return _json(s["cart"])


def login(request: Request, s: WSGISession) -> Response:
    s.login(request.args.get("user", "42"))
    return _json({"user": s.user_id})


def logout(request: Request, s: WSGISession) -> Response:
    s.logout()
    return _json({"ok": True})


def destroy_then_flash(request: Request, s: WSGISession) -> Response:
    s.destroy()
    s["flash"] = "logged out"
    return _json({"ok": True})


def regenerate(request: Request, s: WSGISession) -> Response:
    s.regenerate(keep_data=request.args.get("keep") == "1")
    return _json({"ok": True})


def remember(request: Request, s: WSGISession) -> Response:
    s.cookie.max_age = timedelta(days=30)
    return _json({"ok": True})


def touch(request: Request, s: WSGISession) -> Response:
    s.touch()
    return _json({"ok": True})


def unset(request: Request, s: WSGISession) -> Response:
    s["changed"] = True
    del request.environ[ENVIRON_KEY]
    return _json({"ok": True})


def redirect(request: Request, s: WSGISession) -> Response:
    s["saved_before_redirect"] = True
    return Response(status=303, headers={"Location": "/read"})


def own_cookie(request: Request, s: WSGISession) -> Response:
    s["n"] = 1
    response = _json({"ok": True}, headers={"cache-control": "public, max-age=60", "vary": "Accept"})
    response.set_cookie("theme", "dark")
    return response


ROUTES: dict[str, Handler] = {
    "/read": read,
    "/incr": incr,
    "/plain": plain,
    "/cart": cart_add,
    "/login": login,
    "/logout": logout,
    "/destroy-then-flash": destroy_then_flash,
    "/regenerate": regenerate,
    "/remember": remember,
    "/touch": touch,
    "/unset": unset,
    "/redirect": redirect,
    "/own-cookie": own_cookie,
    "/app/read": read,
    "/app/incr": incr,
}


def routes_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    request = Request(environ)
    handler = ROUTES.get(request.path)
    if handler is None:
        return Response("not found", status=404)(environ, start_response)
    if handler is not plain:  # like Starlette's request.session: no session installed is an error
        assert ENVIRON_KEY in environ, "SessionMiddleware must be installed to access the session"
    return handler(request, environ.get(ENVIRON_KEY))(environ, start_response)


def make_wsgi_app(**options: Any) -> SessionMiddleware:
    return SessionMiddleware(routes_app, **options)
