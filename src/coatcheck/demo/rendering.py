"""Rendering a demo page: its flash messages, and the inspector panel beside it."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ..asgi import request_info
from ..session import CSRF_KEY, Session
from .inspector import (
    UNKNOWN,
    BrowserCookie,
    browser_cookie,
    cookie_record_view,
    cookie_status,
    record_view,
    request_cookies,
)
from .state import Demo

COOKIE_NAME = "coatcheck_demo"
ID_CHANGE = "id-change"  # the flash category of the login lesson, shown in the inspector
SECURITY_HEADERS = {
    # Everything the pages use is served from here: no CDN, no inline script.
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}
_VALUE_NOTES = {
    "server": "the signed session id, s:<id>.<signature>, URL-encoded",
    "sealed": "your whole session, encrypted and authenticated (AES-256-GCM): you cannot read or change it",
    "signed": "your whole session as base64 JSON with a signature: readable, but not changeable",
    "cookie-session": "your session as base64 JSON; its signature is in the .sig cookie",
}


def demo_of(request: Request) -> Demo:
    demo: Demo = request.app.state.demo
    return demo


def session_of(request: Request) -> Session:
    session: Session = request.session  # type: ignore[assignment]
    return session


async def render(
    request: Request, template: str, *, forms: bool = False, status_code: int = 200, **context: Any
) -> Response:
    """Render a page with its flash messages and the inspector.

    Pages with forms (and every page once logged in: the log-out button is a form) need the
    session's CSRF token, so it is created first. Then the session is committed *before*
    rendering, if this request changed it, so the inspector shows the record exactly as
    the store now holds it.
    """
    demo = demo_of(request)
    session = session_of(request)
    sent = request_cookies(_cookie_header(request), demo.cookie_names())
    # GET pages never change the session's identity before this point.
    status = cookie_status(
        session,
        sent.get(COOKIE_NAME) or next(iter(sent.values()), None),
        demo.manager.keyring,
        client_side=demo.client_side is not None,
    )
    flashes = session.flashes()
    id_changes = [flash.message for flash in flashes if flash.category == ID_CHANGE]
    had_token = CSRF_KEY in session
    if forms or session.user_id is not None:
        _ = session.csrf_token  # created on first use
    if session.modified:
        await session.save()
    touch_after = demo.manager.settings.touch_seconds
    if demo.client_side is not None:
        record = cookie_record_view(session, demo.manager.serializer, touch_after=touch_after)
    else:
        record = await record_view(session, demo.store, touch_after=touch_after)
    cookies = _browser_cookies(request, demo, sent)
    context.update(
        request=request,
        demo=demo,
        user=session.user_id,
        flashes=[flash for flash in flashes if flash.category != ID_CHANGE],
        inspector={
            "cookies": cookies,
            "cookie_bytes": sum(c.size for c in cookies),
            "status": status,
            "record": record,
            "only_csrf": record is not None and set(session) == {CSRF_KEY},
            "token_started_here": forms and not had_token,
            "id_change": id_changes[-1] if id_changes else None,
            "store": demo.view,
            "client_side": demo.client_side is not None,
            "settings": demo.manager.settings,
            "instance": demo.instance,
        },
    )
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=SECURITY_HEADERS
    )


def _browser_cookies(request: Request, demo: Demo, sent: dict[str, bytes]) -> list[BrowserCookie]:
    session = session_of(request)
    settings = demo.manager.settings
    secure = demo.manager.is_secure(request_info(request.scope))
    fallback = {
        "path": settings.cookie.path,
        "http_only": settings.cookie.http_only,
        "secure": secure if settings.cookie.secure == "auto" else settings.cookie.secure,
        "same_site": settings.cookie.same_site,
        # A loaded session's cookie was last sent with the session's current max-age.
        "max_age": UNKNOWN if session.is_new else session.cookie.max_age_seconds,
    }
    host = request.url.hostname or ""
    now = time.time()
    witness = demo.witness
    note = _VALUE_NOTES.get(demo.cookie_mode, _VALUE_NOTES["sealed"])
    return [
        browser_cookie(
            name,
            value,
            sent=witness.lookup(name, value) if witness else None,
            host=host,
            fallback=fallback,
            now=now,
            value_note=note,
        )
        for name, value in sorted(sent.items())
    ]


def _cookie_header(request: Request) -> bytes | None:
    values = [v for k, v in request.scope.get("headers", ()) if k == b"cookie"]
    return b"; ".join(values) if values else None


def redirect(url: str) -> RedirectResponse:
    """303 See Other: the browser follows with a GET, so a reload never re-posts."""
    return RedirectResponse(url, status_code=303)


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}
