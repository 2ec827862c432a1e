"""The Flask app the gunicorn tests serve: configured from the environment.

COATCHECK_TEST_STORE (a store URL), COATCHECK_TEST_SECRET; with COATCHECK_TEST_WARMUP=1 the
module serves one request through the session machinery at import time, so a `--preload`ed
master holds an event loop and store connections before it forks its workers.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, session
from flask.typing import ResponseReturnValue

from coatcheck.flask import Session

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ["COATCHECK_TEST_SECRET"],
    SESSION_STORE=os.environ["COATCHECK_TEST_STORE"],
)
Session(app)


@app.get("/incr")
def incr() -> ResponseReturnValue:
    session["n"] = session.get("n", 0) + 1
    return jsonify(n=session["n"], pid=os.getpid())


@app.get("/read")
def read() -> ResponseReturnValue:
    return jsonify(n=session.get("n"), pid=os.getpid())


if os.environ.get("COATCHECK_TEST_WARMUP") == "1":
    app.test_client().get("/incr")
