"""The Flask twin of tests/apps/flash_app.py for the cross-process flash test (gunicorn
gthread): `/show` waits at the same Redis barrier, then takes the messages with the sync
`session.flashes()`, which claims them through the store on the process's session loop."""

from __future__ import annotations

import os

import redis
from flask import Flask, flash, get_flashed_messages, jsonify, request, session
from flask.typing import ResponseReturnValue

from coatcheck.flask import Session

BARRIER = redis.Redis.from_url(os.environ.get("COATCHECK_TEST_BARRIER_URL", "redis://127.0.0.1:6379/0"))

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ["COATCHECK_TEST_SECRET"],
    SESSION_STORE=os.environ["COATCHECK_TEST_STORE_URL"],
)
Session(app)


@app.get("/add")
def add() -> ResponseReturnValue:
    for text in request.args.getlist("m"):
        flash(text)
    return jsonify(ok=True)


def wait_at_barrier() -> None:
    gate, parties = request.args["gate"], int(request.args["parties"])
    if BARRIER.incr(f"{gate}:arrived") == parties:
        BARRIER.rpush(f"{gate}:release", *([b"go"] * parties))
    BARRIER.blpop([f"{gate}:release"], timeout=30)


@app.get("/show")
def show() -> ResponseReturnValue:
    wait_at_barrier()
    return jsonify([str(f) for f in session.flashes()])  # type: ignore[attr-defined]


@app.get("/show-flask")
def show_flask() -> ResponseReturnValue:
    """Flask's own `get_flashed_messages()` (it pops the `_flashes` queue)."""
    wait_at_barrier()
    return jsonify([str(m) for m in get_flashed_messages()])


@app.get("/pending")
def pending() -> ResponseReturnValue:
    return jsonify(sorted(k for k in session if k.startswith("_flash")))
