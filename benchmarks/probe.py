"""Single HTTP requests the harness makes itself: readiness, session set-up, sanity checks."""

from __future__ import annotations

import http.client
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    set_cookies: list[str]


def get(port: int, path: str, cookie: str | None = None, timeout: float = 5.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Cookie": cookie} if cookie else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return Reply(resp.status, body, resp.msg.get_all("Set-Cookie") or [])
    finally:
        conn.close()


def plain_status(port: int) -> int | None:
    """Status of GET /plain, or None while nothing answers on the port."""
    try:
        return get(port, "/plain", timeout=1.0).status
    except (OSError, http.client.HTTPException):
        return None


def cookie_header(set_cookies: list[str]) -> str:
    """What a browser's jar would send back: ``name=value`` of each live Set-Cookie."""
    jar: dict[str, str] = {}
    for header in set_cookies:
        pair, _, attrs = header.partition(";")
        name, _, value = pair.strip().partition("=")
        lowered = attrs.lower().replace(" ", "")
        expired = "max-age=0" in lowered or "expires=thu,01jan1970" in lowered
        if expired or value in ("", '""', "''"):
            jar.pop(name, None)
        else:
            jar[name] = value
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def create_session(port: int) -> str:
    """GET /incr once without a cookie and return the Cookie header for the new session.

    Raises ``RuntimeError`` when the implementation does not behave: no cookie set, or /read
    with that cookie does not see the counter.
    """
    created = get(port, "/incr")
    if created.status != 200:
        raise RuntimeError(f"GET /incr returned {created.status}: {created.body[:200]}")
    cookie = cookie_header(created.set_cookies)
    if not cookie:
        raise RuntimeError("GET /incr set no cookie")
    check = get(port, "/read", cookie)
    if check.status != 200 or check.body.strip() != "1":
        raise RuntimeError(
            f"GET /read with the new cookie returned {check.status} {check.body[:80]!r}, not '1'"
        )
    return cookie
