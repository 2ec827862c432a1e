"""The routes of tests.helpers (the ASGI test app) as a Flask app using flask.session, so the
same HTTP behaviour tests also run through coatcheck.flask."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, redirect, request, session
from flask.typing import ResponseReturnValue

from coatcheck.flask import Session, current_session


def make_flask_app(**options: Any) -> Flask:
    """`options` are SessionMiddleware options, passed to coatcheck.flask.Session."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = None  # the secret comes from the options, like the other twins
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False  # the middleware's cookie rules, not Flask's refresh
    Session(app, **options)

    def route(path: str) -> Any:
        return app.get(path, endpoint=path)

    @route("/read")
    def read() -> ResponseReturnValue:
        return jsonify(n=session.get("n"), new=session.new)

    @route("/incr")
    def incr() -> ResponseReturnValue:
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"])

    @route("/plain")
    def plain() -> ResponseReturnValue:
        return jsonify(ok=True)

    @route("/cart")
    def cart() -> ResponseReturnValue:
        session.setdefault("cart", []).append(request.args.get("item", "x"))
        return jsonify(session["cart"])

    @route("/login")
    def login() -> ResponseReturnValue:
        current_session().login(request.args.get("user", "42"))
        return jsonify(user=current_session().user_id)

    @route("/logout")
    def logout() -> ResponseReturnValue:
        current_session().logout()
        return jsonify(ok=True)

    @route("/destroy-then-flash")
    def destroy_then_flash() -> ResponseReturnValue:
        current_session().destroy()
        session["flash"] = "logged out"
        return jsonify(ok=True)

    @route("/regenerate")
    def regenerate() -> ResponseReturnValue:
        current_session().regenerate(keep_data=request.args.get("keep") == "1")
        return jsonify(ok=True)

    @route("/remember")
    def remember() -> ResponseReturnValue:
        current_session().cookie.max_age = timedelta(days=30)
        return jsonify(ok=True)

    @route("/touch")
    def touch() -> ResponseReturnValue:
        current_session().touch()
        return jsonify(ok=True)

    @route("/redirect")
    def go() -> ResponseReturnValue:
        session["saved_before_redirect"] = True
        return redirect("/read", code=303)

    @route("/own-cookie")
    def own_cookie() -> ResponseReturnValue:
        session["n"] = 1
        response = jsonify(ok=True)
        response.headers["Cache-Control"] = "public, max-age=60"
        response.headers["Vary"] = "Accept"
        response.set_cookie("theme", "dark")
        return response

    @route("/app/read")
    def app_read() -> ResponseReturnValue:
        return read()

    @route("/app/incr")
    def app_incr() -> ResponseReturnValue:
        return incr()

    return app
