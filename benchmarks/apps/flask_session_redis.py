"""Flask-Session with its Redis backend (sync redis-py), default settings."""

from flask_session import Session  # type: ignore[import-untyped]
from redis import Redis

from benchmarks.apps.common import SECRET, redis_url
from benchmarks.apps.flask_common import make_app

app = make_app()
app.secret_key = SECRET
app.config["SESSION_TYPE"] = "redis"
app.config["SESSION_REDIS"] = Redis.from_url(redis_url())
Session(app)
