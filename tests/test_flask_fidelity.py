"""coatcheck.flask behaves as Flask's own session does: lifetimes and refresh, SameSite=None,
the secret key however it is set, config read at the first request, one flash queue, tagged
values; Flask-Session's configuration is mapped; legacy sessions are adopted (migrate_from)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, flash, get_flashed_messages, jsonify, session
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from coatcheck.codec import serializer_for
from coatcheck.crypto import storage_key
from coatcheck.flask import Session, current_session, sessions_for
from coatcheck.migrate import FlaskCookie
from coatcheck.stores import MemoryStore
from coatcheck.stores.redis import RedisStore
from tests.helpers import Clock

DAY = 86400.0
LEGACY = {"user_id": "ada", "cart": [1, 2, 3]}


def set_cookies(response: Any) -> list[str]:
    return list(response.headers.getlist("Set-Cookie"))


def routes(app: Flask) -> Flask:
    @app.get("/login")
    def login() -> ResponseReturnValue:
        session["user"] = "ada"
        session.permanent = True
        return "ok"

    @app.get("/whoami")
    def whoami() -> ResponseReturnValue:
        return jsonify(dict(session))

    @app.get("/plain")
    def plain() -> ResponseReturnValue:
        return "plain"

    return app


def flask_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    Session(app)
    return routes(app)


def record_for(store: MemoryStore, client: Any) -> Any:
    """The stored record behind the client's session cookie (`s:<id>.<mac>`)."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    session_id = cookie.value.removeprefix("s%3A").removeprefix("s:").rsplit(".", 1)[0]
    return asyncio.run(store.get(storage_key(session_id)))


# ---- lifetimes ------------------------------------------------------------------------------
@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tagged_store() -> MemoryStore:
    return MemoryStore(serializer=serializer_for("tagged"))


@pytest.fixture
def clocked_store(clock: Clock) -> MemoryStore:
    return MemoryStore(serializer=serializer_for("tagged"), clock=clock)


def test_permanent_session_lives_its_lifetime_refreshed_on_every_request(
    secret: str, clock: Clock, clocked_store: MemoryStore
) -> None:
    tagged_store = clocked_store
    app = flask_app(
        SECRET_KEY=secret, SESSION_STORE=tagged_store, SESSION_CLOCK=clock, PERMANENT_SESSION_LIFETIME=3 * DAY
    )
    client = app.test_client()
    (cookie,) = set_cookies(client.get("/login"))
    assert "Max-Age=259200" in cookie
    for _ in range(3):  # two days apart: past coatcheck's 1-day idle default, within Flask's lifetime
        clock.advance(2 * DAY)
        response = client.get("/whoami")
        assert response.json == {"user": "ada"}
        (cookie,) = set_cookies(response)  # the cookie is re-sent with a fresh expiry ...
        assert "Max-Age=259200" in cookie
        meta = record_for(tagged_store, client).meta
        assert meta.idle_deadline == clock.now + 3 * DAY  # ... and the server-side deadline extended
        assert meta.absolute_deadline is None  # Flask has no absolute lifetime
    clock.advance(3 * DAY + 1)
    assert client.get("/whoami").json == {}  # unused for longer than the lifetime: ended, as in Flask


def test_refresh_also_happens_on_requests_that_do_not_touch_the_session(
    secret: str, tagged_store: MemoryStore
) -> None:
    client = flask_app(SECRET_KEY=secret, SESSION_STORE=tagged_store).test_client()
    client.get("/login")
    response = client.get("/plain")
    assert len(set_cookies(response)) == 1 and response.headers["Vary"] == "Cookie"


@pytest.mark.parametrize(
    ("permanent", "refresh", "resent"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_refresh_each_request_applies_to_permanent_sessions_only(
    secret: str, tagged_store: MemoryStore, permanent: bool, refresh: bool, resent: bool
) -> None:
    app = flask_app(
        SECRET_KEY=secret,
        SESSION_STORE=tagged_store,
        SESSION_PERMANENT=permanent,
        SESSION_REFRESH_EACH_REQUEST=refresh,
    )

    @app.get("/write")
    def write() -> ResponseReturnValue:
        session["n"] = 1
        return "ok"

    client = app.test_client()
    assert len(set_cookies(client.get("/write"))) == 1
    assert (set_cookies(client.get("/whoami")) != []) is resent


def test_explicit_timeouts_win_over_the_flask_lifetime(
    secret: str, clocked_store: MemoryStore, clock: Clock
) -> None:
    tagged_store = clocked_store
    app = flask_app(
        SECRET_KEY=secret,
        SESSION_STORE=tagged_store,
        SESSION_CLOCK=clock,
        SESSION_IDLE_TIMEOUT=3600,
        SESSION_ABSOLUTE_TIMEOUT=timedelta(days=2),
    )
    client = app.test_client()
    client.get("/login")
    meta = record_for(tagged_store, client).meta
    assert meta.idle_deadline == clock.now + 3600 and meta.absolute_deadline == clock.now + 2 * DAY


# ---- cookie attributes ----------------------------------------------------------------------
def test_samesite_none_is_sent_with_secure(secret: str) -> None:
    app = flask_app(
        SECRET_KEY=secret,
        SESSION_STORE=MemoryStore(),
        SESSION_COOKIE_SAMESITE="None",
        SESSION_COOKIE_SECURE=True,
    )
    (cookie,) = set_cookies(app.test_client().get("/login", base_url="https://localhost"))
    assert "SameSite=None" in cookie and "; Secure" in cookie


# ---- the secret key and the config, however and whenever they are set ------------------------------
def test_secret_key_as_a_class_attribute_is_used(secret: str) -> None:
    class App(Flask):
        secret_key = secret

    app = App(__name__)
    app.config["SESSION_STORE"] = MemoryStore()
    Session(app)
    client = routes(app).test_client()
    client.get("/login")
    assert client.get("/whoami").json == {"user": "ada"}


def test_secret_key_and_config_set_after_session_init_are_honoured(secret: str) -> None:
    app = Flask(__name__)
    Session(app)
    app.secret_key = secret
    app.config.update(SESSION_STORE=MemoryStore(), SESSION_COOKIE_NAME="sid", SESSION_COOKIE_PATH="/")
    client = routes(app).test_client()
    (cookie,) = set_cookies(client.get("/login"))
    assert cookie.startswith("sid=s%3A")
    assert client.get("/whoami").json == {"user": "ada"}


def test_without_a_secret_the_session_is_flasks_null_session() -> None:
    app = Flask(__name__)
    Session(app)

    @app.get("/write")
    def write() -> ResponseReturnValue:
        session["x"] = 1
        return "ok"

    app.testing = True
    client = routes(app).test_client()
    assert client.get("/whoami").json == {}
    with pytest.raises(RuntimeError, match="secret"):
        client.get("/write")


def test_a_config_change_after_the_first_request_keeps_the_store(secret: str) -> None:
    store = MemoryStore()
    app = flask_app(SECRET_KEY=secret, SESSION_STORE=store)
    client = app.test_client()
    client.get("/login")
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.config["SESSION_REFRESH_EACH_REQUEST"] = True
    response = client.get("/whoami")
    assert response.json == {"user": "ada"}  # same store: still logged in
    assert "SameSite=Strict" in set_cookies(response)[0]
    assert sessions_for(app).store is store


def test_every_way_of_changing_the_config_after_requests_is_honoured(secret: str) -> None:
    # Requests skip the key comparison while the config is unchanged: each kind of change
    # made after the runtime was built and reused must still reach the next request.
    app = flask_app(SECRET_KEY=secret, SESSION_STORE=MemoryStore())
    client = app.test_client()
    sessions = sessions_for(app)
    client.get("/plain")
    first = sessions.current()
    assert client.get("/plain") and sessions.current() is first  # unchanged: reused

    def cookie_after_login() -> str:
        client.delete_cookie("session")
        client.delete_cookie("sid")
        return set_cookies(client.get("/login"))[0]

    app.config["SESSION_COOKIE_NAME"] = "sid"  # item assignment
    assert cookie_after_login().startswith("sid=")
    app.config.update(SESSION_COOKIE_SAMESITE="Strict")  # update
    assert "SameSite=Strict" in cookie_after_login()
    app.config.from_mapping(SESSION_COOKIE_SAMESITE="Lax")  # Flask's from_* loaders
    assert "SameSite=Lax" in cookie_after_login()
    app.config |= {"SESSION_COOKIE_PATH": "/other"}  # in-place union
    assert set_cookies(client.get("/login")) == []  # outside the cookie path: no session
    del app.config["SESSION_COOKIE_PATH"]
    assert "Path=/;" in cookie_after_login()
    app.config.setdefault("SESSION_COOKIE_PATH", "/elsewhere")
    assert set_cookies(client.get("/login")) == []
    app.config.pop("SESSION_COOKIE_PATH")
    app.secret_key = secrets.token_urlsafe(32)  # a ConfigAttribute setter
    rekeyed = sessions.current()
    assert rekeyed.key[0] == app.secret_key
    app.config = type(app.config)(app.config.root_path, dict(app.config))  # a new config object
    app.config["SESSION_COOKIE_NAME"] = "renamed"
    assert cookie_after_login().startswith("renamed=")
    app.config["SESSION_COOKIE_NAME"] = "renamed2"  # the new object is watched from then on
    assert cookie_after_login().startswith("renamed2=")


def test_concurrent_first_requests_build_the_runtime_once(secret: str) -> None:
    app = Flask(__name__)
    Session(app)
    app.config.update(SECRET_KEY=secret, SESSION_STORE=MemoryStore())  # changed: the next use builds
    sessions = sessions_for(app)
    barrier = threading.Barrier(8)
    built: list[Any] = []

    def first_request() -> None:
        barrier.wait()
        built.append(sessions.current())

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 8 and all(b is built[0] for b in built)


# ---- flash ----------------------------------------------------------------------------------
def flash_app(secret: str) -> Flask:
    app = flask_app(SECRET_KEY=secret, SESSION_STORE=MemoryStore(serializer=serializer_for("tagged")))

    @app.get("/flash")
    def both() -> ResponseReturnValue:
        flash("from flask")
        current_session().flash("from coatcheck", "warning")
        flash(Markup("<em>markup</em>"), "error")
        return "ok"

    @app.get("/flask-reader")
    def flask_reader() -> ResponseReturnValue:
        return jsonify([list(m) for m in get_flashed_messages(with_categories=True)])

    @app.get("/coatcheck-reader")
    def coatcheck_reader() -> ResponseReturnValue:
        return jsonify([[f.category, str(f.message)] for f in current_session().flashes()])

    @app.get("/both-readers")
    def both_readers() -> ResponseReturnValue:
        first = [str(f) for f in current_session().flashes("warning")]
        rest = [str(m) for m in get_flashed_messages()]
        return jsonify(first=first, rest=rest, again=[str(f) for f in current_session().flashes()])

    return app


EXPECTED_FLASHES = [["message", "from flask"], ["warning", "from coatcheck"], ["error", "<em>markup</em>"]]


@pytest.mark.parametrize("reader", ["/flask-reader", "/coatcheck-reader"])
def test_both_flash_apis_write_one_queue_each_message_read_once(secret: str, reader: str) -> None:
    client = flash_app(secret).test_client()
    client.get("/flash")
    assert client.get(reader).json == EXPECTED_FLASHES
    assert client.get("/flask-reader").json == [] and client.get("/coatcheck-reader").json == []


def test_flashed_markup_keeps_its_type(secret: str) -> None:
    app = flash_app(secret)
    seen: list[Any] = []

    @app.get("/types")
    def types() -> ResponseReturnValue:
        seen.extend(get_flashed_messages())
        return "ok"

    client = app.test_client()
    client.get("/flash")
    client.get("/types")
    assert type(seen[2]) is Markup


def test_mixing_readers_in_one_request_shows_each_message_once(secret: str) -> None:
    client = flash_app(secret).test_client()
    client.get("/flash")
    assert client.get("/both-readers").json == {
        "first": ["from coatcheck"],
        "rest": ["from flask", "<em>markup</em>"],
        "again": [],
    }


# ---- tagged values, with the default store ---------------------------------------------------
JSON_TAG_VALUES = [  # Flask's tests/test_json_tag.py test_dump_load_unchanged values
    {" t": (1, 2, 3)},
    {" t__": b"a"},
    {" di": " di"},
    {"x": (1, 2, 3), "y": 4},
    (1, 2, 3),
    [(1, 2, 3)],
    b"\xff",
    Markup("<html>"),
    uuid.uuid4(),
    datetime.now(tz=UTC).replace(microsecond=0),
    datetime(2024, 5, 6, 7, 8, 9),
]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # the default store is sessions.db in the working directory
    yield tmp_path


@pytest.mark.parametrize("value", JSON_TAG_VALUES, ids=lambda v: type(v).__name__)
def test_flasks_json_tag_values_round_trip_through_flask_session(
    secret: str, in_tmp: Path, value: Any
) -> None:
    app = flask_app(SECRET_KEY=secret)  # no SESSION_STORE: the default store, tagged
    seen: list[Any] = []

    @app.get("/put")
    def put() -> ResponseReturnValue:
        session["v"] = value
        return "ok"

    @app.get("/get")
    def get() -> ResponseReturnValue:
        seen.append(session["v"])
        return "ok"

    client = app.test_client()
    client.get("/put")
    client.get("/get")
    assert seen == [value] and type(seen[0]) is type(value)
    assert (in_tmp / "sessions.db").exists()


# ---- Flask-Session's configuration ----------------------------------------------------------
@pytest.fixture
def prefix() -> str:
    return f"cc-flaskfid-{secrets.token_hex(6)}:"


@pytest.fixture
def sync_redis(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def test_flask_session_redis_config_is_mapped_and_unmapped_keys_are_named(
    secret: str, sync_redis: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "coatcheck")
    app = flask_app(
        SECRET_KEY=secret,
        SESSION_TYPE="redis",
        SESSION_REDIS=sync_redis,
        SESSION_KEY_PREFIX=prefix,
        SESSION_USE_SIGNER=True,
        SESSION_ID_LENGTH=16,
        SESSION_CLEANUP_N_REQUESTS=100,
    )
    store = sessions_for(app).store
    assert isinstance(store, RedisStore) and store.prefix == prefix
    client = app.test_client()
    (cookie,) = set_cookies(client.get("/login"))
    assert "Max-Age=2678400" in cookie  # Flask-Session's SESSION_PERMANENT default: True
    assert client.get("/whoami").json == {"user": "ada"}
    assert any(key.startswith(prefix.encode()) for key in sync_redis.scan_iter(match=prefix + "*"))
    (warning,) = [r.getMessage() for r in caplog.records if "no coatcheck equivalent" in r.getMessage()]
    assert "SESSION_ID_LENGTH" in warning and "SESSION_CLEANUP_N_REQUESTS" in warning
    assert "SESSION_USE_SIGNER" not in warning  # coatcheck always signs


def test_switching_from_flask_session_logs_nobody_out(
    secret: str, sync_redis: redis.Redis, prefix: str
) -> None:
    from flask_session import Session as FlaskSessionExtension

    config = {"SESSION_TYPE": "redis", "SESSION_REDIS": sync_redis, "SESSION_KEY_PREFIX": prefix}
    old = Flask(__name__)
    old.config.update(SECRET_KEY=secret, **config)
    FlaskSessionExtension(old)
    routes(old)
    old_client = old.test_client()
    old_client.get("/login")
    legacy_cookie = old_client.get_cookie("session")
    assert legacy_cookie is not None and sync_redis.exists(prefix + legacy_cookie.value)

    new = flask_app(SECRET_KEY=secret, **config)  # the only change: coatcheck's Session
    client = new.test_client()
    client.set_cookie("session", legacy_cookie.value)
    response = client.get("/whoami")
    assert response.json == {"user": "ada", "_permanent": True}
    assert legacy_cookie.value not in set_cookies(response)[0]
    assert not sync_redis.exists(prefix + legacy_cookie.value)  # the legacy record is gone
    assert client.get("/whoami").json == {"user": "ada", "_permanent": True}


def test_session_serialization_format_json_selects_plain_json(secret: str) -> None:
    app = flask_app(SECRET_KEY=secret, SESSION_STORE=MemoryStore(), SESSION_SERIALIZATION_FORMAT="json")
    assert sessions_for(app).runtime.settings.serializer == "json"


# ---- migrate_from through Flask -------------------------------------------------------------
def legacy_flask_cookie(secret: str, data: dict[str, Any]) -> str:
    old = Flask(__name__)
    old.secret_key = secret

    @old.get("/login")
    def login() -> ResponseReturnValue:
        session.update(data)
        return "ok"

    client = old.test_client()
    client.get("/login")
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def migrating_app(secret: str, store: MemoryStore) -> Flask:
    return flask_app(
        SECRET_KEY="new-" + secret, SESSION_STORE=store, SESSION_MIGRATE_FROM=[FlaskCookie(secret)]
    )


def test_flask_cookie_users_keep_their_session_under_a_new_id(secret: str, tagged_store: MemoryStore) -> None:
    legacy = legacy_flask_cookie(secret, {**LEGACY, "pair": (1, 2)})
    client = migrating_app(secret, tagged_store).test_client()
    client.set_cookie("session", legacy)
    response = client.get("/whoami")
    assert response.json == {**LEGACY, "pair": [1, 2]}
    (cookie,) = set_cookies(response)
    assert cookie.startswith("session=s%3A") and legacy not in cookie
    assert asyncio.run(tagged_store.count()) == 1  # one record, under the new id
    assert client.get("/whoami").json == {**LEGACY, "pair": [1, 2]}


def test_a_forged_flask_cookie_gives_a_fresh_empty_session(secret: str, tagged_store: MemoryStore) -> None:
    forged = legacy_flask_cookie("someone-else-" + secret, LEGACY)
    client = migrating_app(secret, tagged_store).test_client()
    client.set_cookie("session", forged)
    response = client.get("/whoami")
    assert response.json == {} and set_cookies(response) == []
    assert asyncio.run(tagged_store.count()) == 0


def test_migrate_from_as_a_keyword_argument(secret: str) -> None:
    store = MemoryStore(serializer=serializer_for("tagged"))
    app = Flask(__name__)
    app.secret_key = "new-" + secret
    Session(app, store=store, migrate_from=[FlaskCookie(secret)])
    client = routes(app).test_client()
    client.set_cookie("session", legacy_flask_cookie(secret, LEGACY))
    assert client.get("/whoami").json == LEGACY


def test_a_config_change_keeps_the_default_store_open(secret: str, in_tmp: Path) -> None:
    app = flask_app(SECRET_KEY=secret)
    client = app.test_client()
    client.get("/login")
    store = sessions_for(app).store
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    assert client.get("/whoami").json == {"user": "ada"}
    assert sessions_for(app).store is store


def test_a_malformed_flash_queue_is_dropped_not_an_error(secret: str) -> None:
    app = flash_app(secret)

    @app.get("/garbage")
    def garbage() -> ResponseReturnValue:
        session["_flashes"] = [("message", "kept"), "not a pair", (1, "no category")]
        return "ok"

    client = app.test_client()
    client.get("/garbage")
    assert client.get("/coatcheck-reader").json == [["message", "kept"]]


def test_tagged_values_round_trip_through_a_redis_url_store(
    secret: str, redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    app = flask_app(SECRET_KEY=secret, SESSION_STORE=f"{redis_url}?prefix={prefix}")
    value = {"pair": (1, 2), "raw": b"\xff", "when": datetime(2024, 1, 2, tzinfo=UTC), "m": Markup("<b>")}
    seen: list[Any] = []

    @app.get("/put")
    def put() -> ResponseReturnValue:
        session.update(value)
        return "ok"

    @app.get("/get")
    def get() -> ResponseReturnValue:
        seen.append({key: session[key] for key in value})
        return "ok"

    client = app.test_client()
    client.get("/put")
    client.get("/get")
    assert seen == [value] and type(seen[0]["pair"]) is tuple and type(seen[0]["m"]) is Markup
    assert any(True for _ in sync_redis.scan_iter(match=prefix + "*"))


def test_a_session_shared_with_express_stays_plain_json(secret: str, redis_url: str, prefix: str) -> None:
    store = f"{redis_url}?prefix={prefix}"
    app = flask_app(SECRET_KEY=secret, SESSION_STORE=store, SESSION_COMPAT="express")
    assert sessions_for(app).runtime.settings.serializer == "json"
