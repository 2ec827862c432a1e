"""Bare Flask (no secret key, no session extension): the baseline for the Flask cases."""

from benchmarks.apps.flask_common import make_app

app = make_app(with_session_routes=False)
