"""coatcheck's Flask extension on Redis (``BENCH_FLASK_STORE=sqlite``: on SQLite); handlers
use ``flask.session`` as usual."""

import os

from benchmarks.apps.common import SECRET, redis_url, sqlite_path
from benchmarks.apps.flask_common import make_app
from coatcheck.flask import Session

app = make_app()
app.secret_key = SECRET
app.config["SESSION_STORE"] = (
    f"sqlite:///{sqlite_path()}" if os.environ.get("BENCH_FLASK_STORE") == "sqlite" else redis_url()
)
Session(app)
