"""coatcheck's Flask extension on Redis; handlers use ``flask.session`` as usual."""

from benchmarks.apps.common import SECRET, redis_url
from benchmarks.apps.flask_common import make_app
from coatcheck.flask import Session

app = make_app()
app.secret_key = SECRET
app.config["SESSION_STORE"] = redis_url()
Session(app)
