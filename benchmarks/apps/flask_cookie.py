"""Flask's default session: a signed cookie (itsdangerous), default settings."""

from benchmarks.apps.common import SECRET
from benchmarks.apps.flask_common import make_app

app = make_app()
app.secret_key = SECRET
