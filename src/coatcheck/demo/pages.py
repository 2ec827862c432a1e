"""The demo's pages: each GET renders a page; each POST changes the session, leaves a flash
message and redirects (so reloading never repeats an action)."""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from ..crypto import storage_key
from ..stores.base import UserIndex
from .rendering import ID_CHANGE, demo_of, form_of, redirect, render, session_of

HINT = 12
REMEMBER_ME = timedelta(days=30)
MAX_NAME = 40
MAX_CART = 50
CATALOG = {
    "coat": "Wool coat",
    "scarf": "Striped scarf",
    "hat": "Felt hat",
    "umbrella": "Umbrella",
    "gloves": "Leather gloves",
}
_NAME_OK = re.compile(r"^[^\x00-\x1f\x7f]+\Z")


async def home(request: Request) -> Response:
    return await render(request, "home.html")


async def login_page(request: Request) -> Response:
    return await render(request, "login.html", forms=True)


async def login(request: Request) -> Response:
    session = session_of(request)
    name = (await form_of(request)).get("name", "").strip()
    if not name or len(name) > MAX_NAME or not _NAME_OK.match(name):
        session.flash(f"Type a name of 1 to {MAX_NAME} printable characters.", "error")
        return redirect("/login")
    before = None if session.is_new else storage_key(session.id)[:HINT]
    session.login(name)  # a new id from here on: the one a planted cookie held is worthless
    if demo_of(request).client_side is None:
        session.flash({"old": before, "new": storage_key(session.id)[:HINT]}, ID_CHANGE)
    cart = session.get("cart") or []
    came_along = f" Your cart came along ({len(cart)} item{'s' if len(cart) != 1 else ''})." if cart else ""
    session.flash(f"Welcome, {name}!{came_along}", "success")
    return redirect("/profile")


async def logout(request: Request) -> Response:
    session_of(request).logout()
    # No flash here: a flash lives in the session, and this one was just destroyed.
    return redirect("/?logged_out=1")


async def profile(request: Request) -> Response:
    session = session_of(request)
    if session.user_id is None:
        return await render(request, "unauthorized.html", status_code=401)
    store = demo_of(request).store
    sessions = None
    if demo_of(request).client_side is None and isinstance(store, UserIndex):
        sessions = await store.sessions_for(session.user_id)
    this_hint = storage_key(session.id)[:HINT] if not session.is_new else None
    return await render(request, "profile.html", forms=True, sessions=sessions, this_hint=this_hint)


async def logout_others(request: Request) -> Response:
    session = session_of(request)
    user = session.user_id
    if user is None:
        return await render(request, "unauthorized.html", status_code=401)
    store = demo_of(request).store
    if demo_of(request).client_side is not None or not isinstance(store, UserIndex):
        session.flash("This store keeps no index of users' sessions, so it cannot find your others.", "error")
        return redirect("/profile")
    # destroy_user() removes every session of the user, this one included; logging in
    # again at once gives this browser a fresh session (new id, same data).
    removed = await store.destroy_user(user)
    session.login(user)
    others = max(removed - 1, 0)
    session.flash(
        f"Logged out {others} other session{'s' if others != 1 else ''}. This one continues under a new id.",
        "success",
    )
    return redirect("/profile")


async def cart_page(request: Request) -> Response:
    return await render(request, "cart.html", forms=True, cart=list(session_of(request).get("cart") or []))


async def cart_add(request: Request) -> Response:
    session = session_of(request)
    item = (await form_of(request)).get("item", "")
    if item not in CATALOG:
        session.flash("There is no such item.", "error")
        return redirect("/cart")
    if len(session.get("cart") or []) >= MAX_CART:
        session.flash(f"Your cart is full ({MAX_CART} items): this is a demo.", "error")
        return redirect("/cart")
    # A nested change: the list inside the session is mutated in place, and coatcheck
    # notices it at commit by comparing serialized values, with no "modified" flag.
    session.setdefault("cart", []).append(item)
    session.flash(f"Added the {CATALOG[item].lower()} to your cart.", "success")
    return redirect("/cart")


async def cart_remove(request: Request) -> Response:
    session = session_of(request)
    raw = (await form_of(request)).get("index", "")
    cart = session.get("cart") or []
    if not raw.isdigit() or int(raw) >= len(cart):
        session.flash("That line is no longer in your cart.", "error")
        return redirect("/cart")
    item = cart.pop(int(raw))
    if not cart:
        del session["cart"]
    session.flash(f"Removed the {CATALOG.get(item, str(item)).lower()} from your cart.", "success")
    return redirect("/cart")


async def settings_page(request: Request) -> Response:
    session = session_of(request)
    return await render(
        request,
        "settings.html",
        forms=True,
        remembered=session.cookie.max_age is not None,
        remember_days=REMEMBER_ME.days,
    )


async def settings_save(request: Request) -> Response:
    session = session_of(request)
    remember = (await form_of(request)).get("remember") == "on"
    session.cookie.max_age = REMEMBER_ME if remember else None
    if remember:
        session.flash(f"Your browser will now keep the cookie for {REMEMBER_ME.days} days.", "success")
    else:
        session.flash("Your browser will now drop the cookie when it closes.", "success")
    return redirect("/settings")


async def restart_page(request: Request) -> Response:
    session = session_of(request)
    demo = demo_of(request)
    survived = session.meta is not None and session.meta.created < demo.started_at
    return await render(request, "restart.html", survived=survived, now=time.time(), pid=os.getpid())


async def instances_page(request: Request) -> Response:
    """The second lesson: one session seen by several app processes (`--instances N`)."""
    return await render(request, "instances.html", pid=os.getpid())
