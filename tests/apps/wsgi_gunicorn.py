"""A plain WSGI app behind coatcheck.wsgi.SessionMiddleware, for the gunicorn tests
(configured like tests/apps/flask_gunicorn.py, from the environment)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from coatcheck.wsgi import ENVIRON_KEY, SessionMiddleware


def counter(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session = environ[ENVIRON_KEY]
    if environ.get("PATH_INFO") == "/incr":
        session["n"] = session.get("n", 0) + 1
    body = json.dumps({"n": session.get("n"), "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


app = SessionMiddleware(
    counter, secret=os.environ["COATCHECK_TEST_SECRET"], store=os.environ["COATCHECK_TEST_STORE"]
)
