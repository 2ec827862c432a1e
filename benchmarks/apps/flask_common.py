"""Flask handlers shared by the Flask cases (bare, cookie, Flask-Session, coatcheck)."""

from __future__ import annotations

from flask import Flask, session

from benchmarks.apps.common import COUNTER, FIRST_KEY, FIRST_VALUE


def make_app(with_session_routes: bool = True) -> Flask:
    """A Flask app with /plain and, unless it is the bare baseline, the three session routes."""
    app = Flask(__name__)

    @app.get("/plain")
    def plain() -> str:
        return "ok"

    if not with_session_routes:
        return app

    @app.get("/read")
    def read() -> str:
        return str(session.get(COUNTER, 0))

    @app.get("/incr")
    def incr() -> str:
        value = int(session.get(COUNTER, 0)) + 1
        session[COUNTER] = value
        return str(value)

    @app.get("/first")
    def first() -> str:
        session[FIRST_KEY] = FIRST_VALUE
        return "ok"

    return app
