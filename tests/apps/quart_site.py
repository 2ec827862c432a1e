"""The Quart app of tests/test_quart.py: coatcheck sessions, flash and Quart-Auth login.

`create_app(...)` builds it for Quart's test client; `app` (configured from the environment:
COATCHECK_TEST_SECRET, COATCHECK_TEST_STORE) is what Hypercorn serves in the real-server test.
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, flash, get_flashed_messages, jsonify, redirect, request, session, websocket
from quart_auth import AuthUser, current_user, login_required, login_user, logout_user

from coatcheck.quart import Session, current_session
from coatcheck.quart_auth import SessionAuth


def create_app(**config: Any) -> Quart:
    app = Quart(__name__)
    app.config.update(config)
    Session(app)
    SessionAuth(app)

    @app.get("/")
    async def home() -> Any:
        return jsonify(user=current_user.auth_id, flashes=get_flashed_messages())

    @app.get("/incr")
    async def incr() -> Any:
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"])

    @app.post("/login")
    async def login() -> Any:
        form = await request.form
        login_user(AuthUser(form["user"]), remember=form.get("remember") == "1")
        await flash(f"Welcome, {form['user']}")
        return redirect("/")

    @app.get("/private")
    @login_required
    async def private() -> Any:
        return jsonify(secret=f"for {current_user.auth_id}")

    @app.post("/logout")
    async def logout() -> Any:
        logout_user()
        return redirect("/")

    @app.get("/save-now")
    async def save_now() -> Any:
        own = current_session()
        assert own is not None
        own["saved"] = True
        await own.save()  # the explicit save is the runtime's own coroutine: no bridge
        return jsonify(saved=own.get("saved"), new=own.new)

    @app.websocket("/ws")
    async def ws() -> None:
        await websocket.send_json({"n": session.get("n"), "user": current_user.auth_id})
        try:
            session["n"] = 0
        except RuntimeError as exc:  # a WebSocket's session is read-only
            await websocket.send(str(exc))

    return app


if "COATCHECK_TEST_SECRET" in os.environ:
    app = create_app(
        SECRET_KEY=os.environ["COATCHECK_TEST_SECRET"], SESSION_STORE=os.environ["COATCHECK_TEST_STORE"]
    )
