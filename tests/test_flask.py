"""coatcheck.flask: flask.session is a coatcheck session; Flask's flash, Flask-Login and
Flask-WTF work unchanged; coatcheck's CSRF rules for Flask; configuration from app.config."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from coatcheck.errors import ConfigurationError
from coatcheck.flask import FlaskSession, Session, manager_for, options_from_config
from coatcheck.stores import MemoryStore, SQLiteStore
from tests.apps.flask_site import add_coatcheck_csrf, add_flask_login, add_wtf_form, make_app
from tests.helpers import CountingStore

ORIGIN = "http://localhost"


def set_cookies(response: Any) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def session_cookie(client: FlaskClient, name: str = "session") -> str | None:
    cookie = client.get_cookie(name)
    return None if cookie is None else cookie.value


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def app(secret: str, store: CountingStore) -> Flask:
    return make_app(SECRET_KEY=secret, SESSION_STORE=store)


# ---- the session itself ---------------------------------------------------------------------
def test_flask_session_is_a_coatcheck_session_that_round_trips(app: Flask, store: CountingStore) -> None:
    client = app.test_client()
    assert client.get("/incr").json == {"n": 1}
    assert client.get("/incr").json == {"n": 2}
    assert client.get("/read").json == {"n": 2, "new": False}
    with app.test_request_context():
        from flask import session

        assert isinstance(session._get_current_object(), FlaskSession)  # type: ignore[attr-defined]
    assert store.calls["set"] == 1 and store.calls["patch"] == 1  # a delta commit the second time


def test_cookie_is_signed_and_has_safe_defaults(app: Flask) -> None:
    (header,) = set_cookies(app.test_client().get("/incr"))
    assert header.startswith("session=s%3A")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Secure" not in header and "Expires" not in header


def test_untouched_request_costs_nothing(app: Flask, store: CountingStore) -> None:
    client = app.test_client()
    client.get("/incr")
    store.calls.clear()
    response = client.get("/plain")
    assert set_cookies(response) == [] and "Vary" not in response.headers
    assert store.calls == {"get": 1}  # the load; nothing written


def test_reading_sets_no_cookie_but_makes_the_response_private(app: Flask, store: CountingStore) -> None:
    client = app.test_client()
    client.get("/incr")
    store.calls.clear()
    response = client.get("/read")
    assert set_cookies(response) == []
    assert response.headers["Vary"] == "Cookie" and response.headers["Cache-Control"] == "private"
    assert store.calls == {"get": 1}


def test_flash_survives_a_redirect_and_shows_once(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/save", follow_redirects=True)
    assert response.json == [["success", "Saved!"]]
    assert client.get("/messages").json == []


def test_session_transaction_works_for_tests(app: Flask) -> None:
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["n"] = 41
    assert client.get("/incr").json == {"n": 42}


def test_permanent_without_refresh_sends_a_persistent_cookie_only_when_it_changes(secret: str) -> None:
    app = make_app(
        SECRET_KEY=secret,
        SESSION_STORE=MemoryStore(),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=2),
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    client = app.test_client()
    (header,) = set_cookies(client.get("/remember"))
    assert "Max-Age=7200" in header
    assert set_cookies(client.get("/permanent-again")) == []
    (header,) = set_cookies(client.get("/remember?on=0"))
    assert "Max-Age" not in header and "Expires" not in header


def test_session_permanent_config_makes_every_session_persistent(secret: str) -> None:
    app = make_app(
        SECRET_KEY=secret, SESSION_STORE=MemoryStore(), SESSION_PERMANENT=True, PERMANENT_SESSION_LIFETIME=600
    )
    (header,) = set_cookies(app.test_client().get("/incr"))
    assert "Max-Age=600" in header


def test_setting_modified_forces_a_save(app: Flask, store: CountingStore) -> None:
    client = app.test_client()
    client.get("/incr")
    store.calls.clear()
    client.get("/force")
    assert store.calls["patch"] == 1


def test_modified_after_the_response_says_what_the_request_did(secret: str) -> None:
    app = make_app(SECRET_KEY=secret, SESSION_STORE=MemoryStore())
    seen: list[bool] = []

    @app.route("/untouched")
    def untouched() -> str:
        return "ok"

    @app.teardown_request
    def remember(_: BaseException | None) -> None:
        from flask import session

        seen.append(session.modified)

    client = app.test_client()
    assert set_cookies(client.get("/untouched")) == []
    client.get("/incr")
    client.get("/read")
    assert seen == [False, True, False]


def test_a_request_that_never_uses_the_session_costs_no_store_call_and_no_header(
    app: Flask, store: CountingStore
) -> None:
    @app.route("/untouched-plain")
    def untouched_plain() -> str:
        return "ok"

    response = app.test_client().get("/untouched-plain")
    assert set_cookies(response) == [] and "Vary" not in response.headers
    assert "Cache-Control" not in response.headers and sum(store.calls.values()) == 0


def corrupted_after_one_session(secret: str, tmp_path: Any) -> tuple[Any, str | None]:
    """A SQLite database that held one session, then overwritten with garbage: its path and
    that session's cookie (every load of it fails)."""
    db = tmp_path / "s.db"
    client = make_app(SECRET_KEY=secret, SESSION_STORE=f"sqlite:///{db}").test_client()
    client.get("/incr")
    cookie = session_cookie(client)
    db.write_bytes(b"not a database" * 500)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"s.db{suffix}").unlink(missing_ok=True)
    return db, cookie


def test_store_failure_while_loading_is_a_503(
    secret: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db, cookie = corrupted_after_one_session(secret, tmp_path)
    broken = make_app(SECRET_KEY=secret, SESSION_STORE=SQLiteStore(db)).test_client()
    broken.set_cookie("session", cookie or "")
    with caplog.at_level(logging.ERROR, logger="coatcheck"):
        response = broken.get("/incr")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert set_cookies(response) == []
    assert "while loading a session" in caplog.text
    assert (cookie or "")[4:20] not in caplog.text


def test_after_a_failed_load_the_apps_before_request_functions_skip_the_503_only(
    secret: str, tmp_path: Any
) -> None:
    # The 503 check is installed by the first failed load, ahead of the app's own functions.
    db, cookie = corrupted_after_one_session(secret, tmp_path)
    app = make_app(SECRET_KEY=secret, SESSION_STORE=SQLiteStore(db))
    ran: list[str] = []

    @app.before_request
    def count() -> None:
        ran.append("before")

    broken = app.test_client()
    assert broken.get("/plain").status_code == 200 and ran == ["before"]  # no cookie: no load
    broken.set_cookie("session", cookie or "")
    assert broken.get("/incr").status_code == 503 and ran == ["before"]  # nothing ran on the 503
    assert broken.get("/incr").status_code == 503 and ran == ["before"]
    broken.delete_cookie("session")
    assert broken.get("/plain").status_code == 200 and ran == ["before", "before"]  # once each


def test_store_failure_while_saving_is_a_503(
    secret: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(SECRET_KEY=secret, SESSION_STORE=SQLiteStore(tmp_path / "missing" / "s.db"))
    with caplog.at_level(logging.ERROR, logger="coatcheck"):
        response = app.test_client().get("/incr")
    assert response.status_code == 503
    assert response.data.startswith(b"Service Unavailable")
    assert set_cookies(response) == []
    assert "while saving a session" in caplog.text


def test_outside_the_cookie_path_there_is_no_session(secret: str) -> None:
    app = make_app(SECRET_KEY=secret, SESSION_STORE=MemoryStore(), SESSION_COOKIE_PATH="/app")
    app.testing = False
    response = app.test_client().get("/incr")
    assert response.status_code == 500  # writing to the null session raises, clearly


# ---- configuration --------------------------------------------------------------------------
def test_config_maps_flask_names_to_coatcheck_options(secret: str) -> None:
    options = options_from_config(
        {
            "SECRET_KEY": secret,
            "SECRET_KEY_FALLBACKS": ["old-" + secret],
            "SESSION_COOKIE_NAME": "__Host-sid",
            "SESSION_COOKIE_SECURE": True,
            "SESSION_COOKIE_SAMESITE": "Strict",
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_PATH": None,
            "APPLICATION_ROOT": "/",
            "SESSION_COOKIE_DOMAIN": None,
            "PERMANENT_SESSION_LIFETIME": timedelta(days=7),
            "SESSION_IDLE_TIMEOUT": 3600,
            "SESSION_ABSOLUTE_TIMEOUT": timedelta(days=2),
            "SESSION_STORE": "memory://",
        }
    )
    assert options["secret"] == [secret, "old-" + secret]
    assert options["name"] == "__Host-sid"
    cookie = options["cookie"]
    assert (cookie.secure, cookie.same_site, cookie.path, cookie.domain, cookie.max_age) == (
        True,
        "strict",
        "/",
        None,
        None,
    )
    assert options["idle_timeout"] == 3600 and options["absolute_timeout"] == timedelta(days=2)


def test_flask_defaults_mean_coatcheck_safe_defaults(secret: str) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret, SESSION_STORE="memory://")
    cookie = options_from_config(app.config)["cookie"]
    assert (cookie.secure, cookie.same_site, cookie.http_only) == ("auto", "lax", True)


def test_session_secret_wins_over_secret_key(secret: str) -> None:
    assert options_from_config({"SECRET_KEY": "x", "SESSION_SECRET": secret})["secret"] == secret


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"SECRET_KEY": "dev"}, "secret"),
        ({"SESSION_TYPE": "filesystem"}, "SESSION_STORE"),
        ({"SESSION_STORE": "nosuch://x"}, "unknown store URL scheme"),
        ({"SESSION_COOKIE_SAMESITE": "sideways"}, "same_site"),
        ({"PERMANENT_SESSION_LIFETIME": "a month"}, "PERMANENT_SESSION_LIFETIME"),
    ],
)
def test_misconfiguration_is_a_clear_error(secret: str, config: dict[str, Any], message: str) -> None:
    app = Flask(__name__)
    app.config.update(
        {"SECRET_KEY": secret}
        if "SECRET_KEY" in config or "SESSION_TYPE" in config
        else {"SECRET_KEY": secret, "SESSION_STORE": "memory://"}
    )
    app.config.update(config)
    with pytest.raises(ConfigurationError, match=message):
        Session(app)


def test_init_app_pattern_serves_two_apps_with_their_own_stores(secret: str) -> None:
    sessions = Session()
    first, second = Flask("first"), Flask("second")
    for app in (first, second):
        app.config.update(SECRET_KEY=secret, SESSION_STORE=MemoryStore())
        sessions.init_app(app)

        @app.get("/incr")
        def incr() -> Any:
            from flask import session

            session["n"] = session.get("n", 0) + 1
            return {"n": session["n"]}

    a, b = first.test_client(), second.test_client()
    a.get("/incr")
    assert a.get("/incr").json == {"n": 2}
    assert b.get("/incr").json == {"n": 1}
    assert manager_for(first).store is not manager_for(second).store


def test_insecure_dev_secret_opt_in(tmp_path: Any) -> None:
    app = make_app(SECRET_KEY="dev", SESSION_INSECURE_DEV_SECRET=True, SESSION_STORE=MemoryStore())
    assert app.test_client().get("/incr").json == {"n": 1}


# ---- Flask-Login ------------------------------------------------------------------------------
@pytest.fixture
def login_app(app: Flask) -> Flask:
    add_flask_login(app)
    return app


def test_flask_login_flow_rotates_the_id_and_binds_the_user(login_app: Flask, store: CountingStore) -> None:
    client = login_app.test_client()
    client.get("/incr")  # an anonymous session first: its id must not survive the login
    planted = session_cookie(client)
    response = client.get("/login?user=alice", follow_redirects=True)
    assert response.json == {"user": "alice", "messages": ["Welcome alice"]}
    after_login = session_cookie(client)
    assert after_login != planted
    assert client.get("/private").json == {"secret": "only for alice"}
    assert client.get("/id").json == {"user": "alice"}  # bound: "log out everywhere" works
    assert client.get("/read").json["n"] == 1  # data kept across the login

    attacker = login_app.test_client()
    attacker.set_cookie("session", planted or "")
    assert attacker.get("/private").status_code == 401  # the planted id is dead

    response = client.get("/logout", follow_redirects=True)
    assert response.json == {"user": None, "messages": ["Bye"]}
    assert session_cookie(client) not in (after_login, None)
    assert client.get("/private").status_code == 401
    thief = login_app.test_client()
    thief.set_cookie("session", after_login or "")
    assert thief.get("/private").status_code == 401  # the logged-in id died at logout


def test_flask_login_remember_cookie_is_cleared_at_logout(login_app: Flask) -> None:
    client = login_app.test_client()
    client.get("/login?user=bob&remember=1")
    assert client.get_cookie("remember_token") is not None
    client.get("/logout")
    assert client.get_cookie("remember_token") is None
    assert client.get("/private").status_code == 401


# ---- Flask-WTF ------------------------------------------------------------------------------
@pytest.fixture
def wtf_app(app: Flask) -> Flask:
    add_wtf_form(app)
    return app


def _wtf_token(client: FlaskClient) -> str:
    page = client.get("/form").get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_flask_wtf_form_with_csrf_token_is_accepted(wtf_app: Flask) -> None:
    client = wtf_app.test_client()
    token = _wtf_token(client)
    response = client.post("/form", data={"csrf_token": token, "name": "Ada"})
    assert response.json == {"saved": "Ada"}


def test_flask_wtf_rejects_missing_and_foreign_tokens(wtf_app: Flask) -> None:
    client, other = wtf_app.test_client(), wtf_app.test_client()
    assert client.post("/form", data={"name": "Ada"}).status_code == 400
    foreign = _wtf_token(other)
    _wtf_token(client)
    assert client.post("/form", data={"csrf_token": foreign, "name": "Ada"}).status_code == 400


# ---- coatcheck's CSRF for Flask -----------------------------------------------------------------
@pytest.fixture
def csrf_app(app: Flask) -> Flask:
    add_coatcheck_csrf(app, trusted_origins=[ORIGIN])
    return app


def _token(client: FlaskClient) -> str:
    return client.get("/token").get_data(as_text=True)


def test_form_post_with_token_and_origin_passes(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    page = client.get("/page").get_data(as_text=True)
    token = re.search(r'value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post("/transfer", data={"csrf_token": token}, headers={"Origin": ORIGIN})
    assert response.json == {"transfers": 1}


def test_header_token_works_for_json(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    token = _token(client)
    response = client.post("/transfer", json={"x": 1}, headers={"X-CSRF-Token": token, "Origin": ORIGIN})
    assert response.status_code == 200


def test_tokens_are_masked_differently_on_every_render(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    assert _token(client) != _token(client)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"data": {"a": "1"}, "headers": {"Sec-Fetch-Site": "cross-site"}}, "sec-fetch-site"),
        ({"data": {"a": "1"}, "headers": {"Origin": "https://evil.example"}}, "origin-untrusted"),
        ({"data": {"a": "1"}, "headers": {"Origin": "null"}}, "origin-null"),
        ({"json": {"a": 1}, "headers": {"Origin": ORIGIN}}, "token-missing"),
        (
            {"data": b"csrf_token=x", "content_type": "text/plain", "headers": {"Origin": ORIGIN}},
            "token-missing",
        ),
        ({"data": {"csrf_token": "not-masked!"}, "headers": {"Origin": ORIGIN}}, "token-malformed"),
    ],
)
def test_csrf_refusals_say_which_check_failed(csrf_app: Flask, kwargs: dict[str, Any], reason: str) -> None:
    client = csrf_app.test_client()
    _token(client)
    response = client.post("/transfer", **kwargs)
    assert response.status_code == 403
    assert response.headers["X-CSRF-Failure"] == reason
    assert response.get_data(as_text=True).startswith(f"Forbidden: CSRF check failed ({reason}):")


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "PURGE"])
def test_every_unsafe_or_unknown_method_is_checked(csrf_app: Flask, method: str) -> None:
    client = csrf_app.test_client()
    token = _token(client)
    assert client.open("/transfer", method=method, headers={"Origin": ORIGIN}).status_code == 403
    ok = client.open("/transfer", method=method, headers={"Origin": ORIGIN, "X-CSRF-Token": token})
    assert ok.status_code == 200


def test_token_from_another_session_is_refused(csrf_app: Flask) -> None:
    client, other = csrf_app.test_client(), csrf_app.test_client()
    _token(client)
    response = client.post("/transfer", headers={"Origin": ORIGIN, "X-CSRF-Token": _token(other)})
    assert response.headers["X-CSRF-Failure"] == "token-mismatch"


def test_token_from_before_login_is_dead_after_login(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    before = _token(client)
    assert client.post("/sign-in", headers={"Origin": ORIGIN, "X-CSRF-Token": before}).status_code == 200
    response = client.post("/transfer", headers={"Origin": ORIGIN, "X-CSRF-Token": before})
    assert response.status_code == 403
    fresh = _token(client)
    assert client.post("/transfer", headers={"Origin": ORIGIN, "X-CSRF-Token": fresh}).status_code == 200


def test_https_post_without_origin_or_referer_is_refused(secret: str) -> None:
    app = make_app(SECRET_KEY=secret, SESSION_STORE=MemoryStore())
    add_coatcheck_csrf(app, trusted_origins=["https://localhost"])
    client = app.test_client()
    token = client.get("/token", base_url="https://localhost").get_data(as_text=True)
    response = client.post("/transfer", base_url="https://localhost", headers={"X-CSRF-Token": token})
    assert response.headers["X-CSRF-Failure"] == "referer-missing"
    ok = client.post(
        "/transfer",
        base_url="https://localhost",
        headers={"X-CSRF-Token": token, "Referer": "https://localhost/page"},
    )
    assert ok.status_code == 200


def test_exemptions_are_explicit(secret: str) -> None:
    app = make_app(SECRET_KEY=secret, SESSION_STORE=MemoryStore())
    add_coatcheck_csrf(app, trusted_origins=[ORIGIN], exempt_paths=["/transfer"])
    client = app.test_client()
    assert client.post("/hook", headers={"Origin": "https://evil.example"}).json == {"hooked": True}
    assert client.post("/transfer").status_code == 200
    assert client.post("/sign-in").status_code == 403


def test_csrf_trusted_origins_come_from_config(secret: str) -> None:
    app = make_app(SECRET_KEY=secret, SESSION_STORE=MemoryStore(), CSRF_TRUSTED_ORIGINS=[ORIGIN])
    add_coatcheck_csrf(app)
    client = app.test_client()
    token = _token(client)
    assert client.post("/transfer", headers={"Origin": ORIGIN, "X-CSRF-Token": token}).status_code == 200


def test_csrf_without_trusted_origins_is_a_configuration_error(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match="trusted_origins"):
        add_coatcheck_csrf(app)


# ---- every kind of store ------------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite", "cookie", "redis"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    kind = request.param
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 's.db'}"
    elif kind == "cookie":
        yield "cookie://"
    else:
        redis_url = request.getfixturevalue("redis_url")
        prefix = f"cc-flask-{secrets.token_hex(4)}:"
        yield f"{redis_url}?prefix={prefix}"
        _delete_redis_keys(redis_url, prefix)


def _delete_redis_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_sessions_and_flash_work_on_every_kind_of_store(secret: str, any_store_url: str) -> None:
    app = make_app(SECRET_KEY=secret, SESSION_STORE=any_store_url)
    add_flask_login(app)
    client = app.test_client()
    assert client.get("/incr").json == {"n": 1}
    assert client.get("/incr").json == {"n": 2}
    assert client.get("/save", follow_redirects=True).json == [["success", "Saved!"]]
    assert client.get("/login?user=alice", follow_redirects=True).json["user"] == "alice"
    assert client.get("/read").json == {"n": 2, "new": False}
    assert client.get("/logout", follow_redirects=True).json == {"user": None, "messages": ["Bye"]}


def test_client_side_session_too_big_for_one_cookie_is_split_and_read_back(secret: str) -> None:
    app = make_app(SECRET_KEY=secret, SESSION_STORE="cookie://")

    @app.get("/big")
    def big() -> Any:
        from flask import session

        session["big"] = secrets.token_hex(3000)  # 6000 characters that do not compress
        return {"ok": True}

    @app.get("/big-size")
    def big_size() -> Any:
        from flask import session

        return {"size": len(session.get("big", ""))}

    client = app.test_client()
    assert len(set_cookies(client.get("/big"))) >= 2
    assert client.get("/big-size").json == {"size": 6000}


# ---- the ASGI behaviour tests, through coatcheck.flask ------------------------------------------
from tests.apps.flask_routes import make_flask_app  # noqa: E402
from tests.test_wsgi import SHARED_TESTS as _WSGI_SHARED  # noqa: E402
from tests.test_wsgi import rebind, wsgi_client  # noqa: E402

# Not expressible through Flask's session interface: removing the session mid-request
# (`unset`), and Starlette's AssertionError for a session outside the cookie path.
FLASK_EXCLUDED = {"test_unset_policy", "test_path_gating_leaves_other_paths_alone"}

FLASK_SHARED_TESTS = [name for name in _WSGI_SHARED if name not in FLASK_EXCLUDED]
for _name in FLASK_SHARED_TESTS:
    globals()[_name] = rebind(_name, make_flask_app, wsgi_client, __name__)


def test_every_flask_shared_behaviour_test_is_rebound() -> None:
    assert len(FLASK_SHARED_TESTS) >= 30
    for name in FLASK_SHARED_TESTS:
        assert globals()[name].__globals__["make_app"] is make_flask_app


def test_an_untrusted_origin_refusal_names_the_flask_config_key_and_the_origin(secret: str) -> None:
    from coatcheck.flask import CSRFProtect

    app = make_app(
        SECRET_KEY=secret, SESSION_STORE=MemoryStore(), CSRF_TRUSTED_ORIGINS=["http://localhost:8000"]
    )
    CSRFProtect(app)
    response = app.test_client().post("/incr", headers={"Origin": "http://localhost:5000"})
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "app.config['CSRF_TRUSTED_ORIGINS']" in body and "http://localhost:5000" in body
    assert "CSRFMiddleware(" not in body


def test_importing_coatcheck_flask_without_flask_names_the_extra() -> None:
    import subprocess
    import sys

    code = "import sys; sys.modules['flask'] = None; import coatcheck.flask"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "pip install 'coatcheck[flask]'" in proc.stderr
