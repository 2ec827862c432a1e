"""Legacy session readers, fed by cookies and records the real libraries wrote."""

from __future__ import annotations

import asyncio
import logging
import pickle
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import itsdangerous
import pytest
import redis
from flask import Flask, session
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from coatcheck import cookies
from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.errors import ConfigurationError, SessionStoreError
from coatcheck.migrate import (
    MAX_DATA_BYTES,
    FlaskCookie,
    FlaskSessionRedis,
    Legacy,
    LegacyReader,
    StarletteCookie,
    cookie_sessions,
    expire_legacy_cookie,
    read_first,
)
from tests.services import free_port
from tests.workmeter import growth

DAY = 24 * 3600
STARLETTE_DATA = {"user": "ada", "cart": [1, 2, 3], "prefs": {"theme": "dark"}}


def _header(name: str, value: str) -> bytes:
    return f"other=1; {name}={value}".encode()


def _starlette_cookie(secret: str, data: dict[str, Any], cookie: str = "session") -> str:
    async def login(request: Request) -> PlainTextResponse:
        request.session.update(data)
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/login", login)],
        middleware=[Middleware(StarletteSessions, secret_key=secret, session_cookie=cookie)],
    )
    with TestClient(app) as client:
        response = client.get("/login")
    return response.cookies[cookie]


@contextmanager
def backdated() -> Iterator[None]:
    """Cookies signed inside this block carry a timestamp 40 days old (verifying uses the real clock)."""
    real = itsdangerous.TimestampSigner.get_timestamp
    itsdangerous.TimestampSigner.get_timestamp = lambda self: real(self) - 40 * DAY  # type: ignore[method-assign]
    try:
        yield
    finally:
        itsdangerous.TimestampSigner.get_timestamp = real  # type: ignore[method-assign]


# Starlette ---------------------------------------------------------------------------------


async def test_starlette_cookie_from_a_real_starlette_app_is_read(secret: str) -> None:
    value = _starlette_cookie(secret, STARLETTE_DATA)
    legacy = await StarletteCookie(secret).read(_header("session", value))
    assert legacy == Legacy(STARLETTE_DATA, "starlette", "session", "/", None)


async def test_starlette_cookie_with_a_custom_name_and_rotated_secrets(secret: str) -> None:
    value = _starlette_cookie(secret, STARLETTE_DATA, cookie="legacy_sess")
    reader = StarletteCookie(["newer-" + secret, secret], cookie_name="legacy_sess")
    legacy = await reader.read(_header("legacy_sess", value))
    assert legacy is not None and legacy.data == STARLETTE_DATA and legacy.cookie_name == "legacy_sess"
    assert await StarletteCookie(secret).read(_header("legacy_sess", value)) is None


def test_cookie_readers_run_under_trio(secret: str) -> None:
    trio = pytest.importorskip("trio")
    starlette_value = _starlette_cookie(secret, STARLETTE_DATA)
    flask_value = _flask_cookie(_flask_app(secret))
    legacy = trio.run(StarletteCookie(secret).read, _header("session", starlette_value))
    assert legacy is not None and legacy.data == STARLETTE_DATA
    legacy = trio.run(FlaskCookie(secret).read, _header("session", flask_value))
    assert legacy is not None and legacy.data["user_id"] == "42"


async def test_starlette_secret_wrapper_is_accepted_like_starlette_does(secret: str) -> None:
    value = _starlette_cookie(secret, STARLETTE_DATA)
    legacy = await StarletteCookie(Secret(secret)).read(_header("session", value))
    assert legacy is not None and legacy.data == STARLETTE_DATA


async def test_tampered_or_foreign_starlette_cookies_give_none(secret: str) -> None:
    value = _starlette_cookie(secret, STARLETTE_DATA)
    body, _, signature = value.rpartition(".")
    tampered = body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    payload_swapped = "eyJ1c2VyIjoiZXZlIn0=" + value[value.index(".") :]
    reader = StarletteCookie(secret)
    assert await reader.read(_header("session", tampered)) is None
    assert await reader.read(_header("session", payload_swapped)) is None
    assert await StarletteCookie("another-" + secret).read(_header("session", value)) is None


async def test_expired_starlette_cookie_gives_none(secret: str) -> None:
    with backdated():
        value = _starlette_cookie(secret, STARLETTE_DATA)
    assert await StarletteCookie(secret).read(_header("session", value)) is None
    assert await StarletteCookie(secret, max_age=41 * DAY).read(_header("session", value)) is not None
    assert await StarletteCookie(secret, max_age=None).read(_header("session", value)) is not None


@pytest.mark.parametrize(
    "header",
    [None, b"", b"session=", b"session=null", b"session=...", b"session=" + b"A" * 5000, b"session=a.b.c"],
)
async def test_garbage_legacy_cookies_give_none(header: bytes | None, secret: str) -> None:
    for reader in (StarletteCookie(secret), FlaskCookie(secret)):
        assert await reader.read(header) is None


@pytest.mark.parametrize("unit", [b"x=.; ", b"session=.; ", b".", b"\\"])
def test_hostile_cookie_header_is_read_in_linear_time(unit: bytes, secret: str) -> None:
    files = {cookies.__file__, cookie_sessions.__file__}
    for reader in (StarletteCookie(secret), FlaskCookie(secret)):

        def read(header: bytes, reader: Any = reader) -> None:
            assert asyncio.run(reader.read(header + b"; session=" + b"." * len(header))) is None

        ratio = growth(read, unit, files)
        assert 6 < ratio < 10, f"{type(reader).__name__}: work grew {ratio:.1f}x for 8x input"


async def test_signed_starlette_data_that_json_cannot_hold_is_skipped_and_logged(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    too_big = {"blob": "x" * 3000}
    value = _starlette_cookie(secret, too_big)
    with caplog.at_level(logging.WARNING, logger="coatcheck.migrate"):
        assert await StarletteCookie(secret, max_data_bytes=1000).read(_header("session", value)) is None
    assert "over the 1000-byte limit" in caplog.text
    assert value not in caplog.text and secret not in caplog.text


# Flask's own cookie session ----------------------------------------------------------------

FLASK_DATA = {
    "user_id": "42",
    "pair": (1, "two"),
    "raw": b"\x00\xff",
    "notice": Markup("<b>Saved</b>"),
    "token": uuid.UUID(int=99),
    "when": datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC),
    "tagish": {" t": "not a tuple"},
}


# What Flask-Session's msgspec encoder can write (it refuses Markup; tuples become lists).
FLASK_SESSION_DATA = {
    "user_id": "42",
    "items": [1, 2],
    "raw": b"\x00\xff",
    "when": datetime(2024, 3, 4, 5, 6, 7, 123456, tzinfo=UTC),
}


def _flask_app(secret: str, data: dict[str, Any] = FLASK_DATA, **config: Any) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret
    app.config.update(config)

    @app.get("/login")
    def login() -> str:
        session.update(data)
        session.permanent = True
        return "ok"

    return app


def _flask_cookie(app: Flask) -> str:
    client = app.test_client()
    client.get("/login")
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return cookie.value


async def test_flask_cookie_from_a_real_flask_app_is_read_with_its_types(secret: str) -> None:
    value = _flask_cookie(_flask_app(secret))
    legacy = await FlaskCookie(secret).read(_header("session", value))
    assert legacy is not None
    assert legacy.data == {**FLASK_DATA, "_permanent": True}
    assert type(legacy.data["pair"]) is tuple and type(legacy.data["notice"]) is Markup
    assert (legacy.source, legacy.cookie_name, legacy.cookie_path) == ("flask", "session", "/")


async def test_flask_cookie_signed_with_a_fallback_secret_is_read(secret: str) -> None:
    value = _flask_cookie(_flask_app("old-" + secret, SESSION_COOKIE_NAME="app_session"))
    reader = FlaskCookie([secret, "old-" + secret], cookie_name="app_session")
    legacy = await reader.read(_header("app_session", value))
    assert legacy is not None and legacy.data["user_id"] == "42"


async def test_compressed_flask_cookie_is_read(secret: str) -> None:
    app = _flask_app(secret)

    @app.get("/big")
    def big() -> str:
        session["text"] = "repeat " * 300
        return "ok"

    client = app.test_client()
    client.get("/big")
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.value.startswith(".")  # itsdangerous' zlib marker
    legacy = await FlaskCookie(secret).read(_header("session", cookie.value))
    assert legacy is not None and legacy.data["text"] == "repeat " * 300


async def test_tampered_or_foreign_flask_cookies_give_none(secret: str) -> None:
    value = _flask_cookie(_flask_app(secret))
    body, _, signature = value.rpartition(".")
    tampered = body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    assert await FlaskCookie(secret).read(_header("session", tampered)) is None
    assert await FlaskCookie("another-" + secret).read(_header("session", value)) is None
    assert await FlaskCookie(secret, salt="other-salt").read(_header("session", value)) is None
    starlette_value = _starlette_cookie(secret, STARLETTE_DATA)
    assert await FlaskCookie(secret).read(_header("session", starlette_value)) is None
    assert await StarletteCookie(secret).read(_header("session", value)) is None


async def test_expired_flask_cookie_gives_none(secret: str) -> None:
    with backdated():
        value = _flask_cookie(_flask_app(secret))
    assert await FlaskCookie(secret).read(_header("session", value)) is None
    assert await FlaskCookie(secret, max_age=timedelta(days=41)).read(_header("session", value)) is not None


async def test_flask_data_plain_json_cannot_hold_is_skipped_and_logged(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    value = _flask_cookie(_flask_app(secret))
    with caplog.at_level(logging.WARNING, logger="coatcheck.migrate"):
        assert await FlaskCookie(secret, serializer="json").read(_header("session", value)) is None
    assert "cannot be serialized (TypeError)" in caplog.text


async def test_bind_makes_a_reader_check_with_the_middlewares_serializer(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    value = _flask_cookie(_flask_app(secret))
    reader = FlaskCookie(secret)
    assert await reader.read(_header("session", value)) is not None
    reader.bind(DEFAULT_SERIALIZER)
    with caplog.at_level(logging.WARNING, logger="coatcheck.migrate"):
        assert await reader.read(_header("session", value)) is None
    assert "cannot be serialized" in caplog.text


async def test_cookie_readers_have_nothing_to_forget(secret: str) -> None:
    reader = FlaskCookie(secret)
    legacy = await reader.read(_header("session", _flask_cookie(_flask_app(secret))))
    assert legacy is not None
    await reader.forget(legacy)
    assert await reader.read(_header("session", _flask_cookie(_flask_app(secret)))) is not None


def test_readers_satisfy_the_reader_protocol(secret: str, redis_url: str) -> None:
    assert isinstance(StarletteCookie(secret), LegacyReader)
    assert isinstance(FlaskCookie(secret), LegacyReader)
    assert isinstance(FlaskSessionRedis(redis_url), LegacyReader)


async def test_read_first_asks_readers_in_order_and_returns_the_one_that_verified(secret: str) -> None:
    starlette, flask = StarletteCookie(secret), FlaskCookie(secret)
    flask_value = _flask_cookie(_flask_app(secret))
    found = await read_first([starlette, flask], _header("session", flask_value))
    assert found is not None and found[0] is flask and found[1].source == "flask"
    starlette_value = _starlette_cookie(secret, STARLETTE_DATA)
    found = await read_first([starlette, flask], _header("session", starlette_value))
    assert found is not None and found[0] is starlette
    assert await read_first([starlette, flask], None) is None
    assert await read_first([starlette, flask], b"session=forged.value.sig") is None


def test_expire_legacy_cookie_matches_the_legacy_cookies_name_path_and_domain() -> None:
    legacy = Legacy({}, "flask", "app_session", "/app", "example.com")
    header = expire_legacy_cookie(legacy, now=1_700_000_000, secure=True)
    assert header.startswith(b"app_session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert b"Path=/app" in header and b"Domain=example.com" in header and b"Secure" in header


@pytest.mark.parametrize("name", ["", "bad name", "semi;colon"])
def test_an_invalid_legacy_cookie_name_fails_at_start_up(secret: str, name: str) -> None:
    with pytest.raises(ConfigurationError, match="cookie_name"):
        StarletteCookie(secret, cookie_name=name)


@pytest.mark.parametrize("bad", ["", [], [""], None])
def test_a_missing_secret_fails_at_start_up(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        FlaskCookie(bad)
    with pytest.raises(ConfigurationError, match="secret_key"):
        StarletteCookie(bad)


# Flask-Session on the real Redis -----------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return f"cc-migrate-{secrets.token_hex(6)}:"


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def cleanup(sync_redis: redis.Redis, prefix: str) -> AsyncIterator[None]:
    yield
    for key in sync_redis.scan_iter(match=prefix + "*"):
        sync_redis.delete(key)


def _flask_session_app(secret: str, client: redis.Redis, prefix: str, **config: Any) -> Flask:
    from flask_session import Session

    app = _flask_app(
        secret,
        FLASK_SESSION_DATA,
        SESSION_TYPE="redis",
        SESSION_REDIS=client,
        SESSION_KEY_PREFIX=prefix,
        **config,
    )
    Session(app)
    return app


async def test_flask_session_msgpack_record_is_read_and_forgotten(
    secret: str, redis_url: str, sync_redis: redis.Redis, prefix: str, cleanup: None
) -> None:
    sid = _flask_cookie(_flask_session_app(secret, sync_redis, prefix))
    assert sync_redis.exists(prefix + sid)
    reader = FlaskSessionRedis(redis_url, key_prefix=prefix)
    try:
        legacy = await reader.read(_header("session", sid))
        assert legacy is not None
        assert legacy.data == {**FLASK_SESSION_DATA, "_permanent": True}
        assert legacy.record_key == prefix + sid and sid not in repr(legacy)
        await reader.forget(legacy)
        assert not sync_redis.exists(prefix + sid)
        assert await reader.read(_header("session", sid)) is None
    finally:
        await reader.aclose()


async def test_flask_session_json_records_and_the_apps_sync_client_work(
    secret: str, sync_redis: redis.Redis, prefix: str, cleanup: None
) -> None:
    app = _flask_session_app(secret, sync_redis, prefix, SESSION_SERIALIZATION_FORMAT="json")
    sid = _flask_cookie(app)
    assert sync_redis.get(prefix + sid).startswith(b"{")  # type: ignore[union-attr]
    reader = FlaskSessionRedis(sync_redis, key_prefix=prefix)
    try:
        legacy = await reader.read(_header("session", sid))
        assert legacy is not None and legacy.data["user_id"] == "42"
    finally:
        await reader.aclose()


async def test_signed_flask_session_ids_are_verified(
    secret: str, redis_url: str, sync_redis: redis.Redis, prefix: str, cleanup: None
) -> None:
    with pytest.warns(DeprecationWarning):
        app = _flask_session_app(secret, sync_redis, prefix, SESSION_USE_SIGNER=True)
    signed = _flask_cookie(app)
    sid = signed.rpartition(".")[0]
    reader = FlaskSessionRedis(redis_url, key_prefix=prefix, use_signer=True, secret_key=secret)
    foreign = FlaskSessionRedis(redis_url, key_prefix=prefix, use_signer=True, secret_key="x" + secret)
    try:
        legacy = await reader.read(_header("session", signed))
        assert legacy is not None and legacy.data["user_id"] == "42"
        assert await reader.read(_header("session", sid)) is None  # unsigned id refused
        assert await foreign.read(_header("session", signed)) is None
    finally:
        await reader.aclose()
        await foreign.aclose()


async def test_unknown_sids_and_odd_cookie_values_give_none(redis_url: str, prefix: str) -> None:
    reader = FlaskSessionRedis(redis_url, key_prefix=prefix)
    try:
        for value in ["nosuchsession", "../../etc", "a b", "x" * 300]:
            assert await reader.read(_header("session", value)) is None
    finally:
        await reader.aclose()


class _Canary:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


async def test_pickled_flask_session_record_is_skipped_and_logged_without_the_id(
    tmp_path: Path,
    redis_url: str,
    sync_redis: redis.Redis,
    prefix: str,
    cleanup: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sid = secrets.token_urlsafe(32)
    # What Flask-Session < 0.6 stored: pickle.dumps(dict(session)). This one would create a
    # file if anything unpickled it.
    canary = tmp_path / "unpickled"
    sync_redis.set(prefix + sid, pickle.dumps({"user_id": "42", "x": _Canary(canary)}, protocol=4))
    reader = FlaskSessionRedis(redis_url, key_prefix=prefix)
    try:
        with caplog.at_level(logging.WARNING, logger="coatcheck.migrate"):
            assert await reader.read(_header("session", sid)) is None
    finally:
        await reader.aclose()
    assert "pickled" in caplog.text and not canary.exists()
    assert sid not in caplog.text and prefix not in caplog.text
    assert sync_redis.exists(prefix + sid)


async def test_oversized_or_garbage_records_are_skipped(
    redis_url: str, sync_redis: redis.Redis, prefix: str, cleanup: None, caplog: pytest.LogCaptureFixture
) -> None:
    big, junk, hashed = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    sync_redis.set(prefix + big, b"\x81\xa1k\xda\x00\x00" + b"x" * 2000)
    sync_redis.set(prefix + junk, b"\xc1 not msgpack, not json")
    sync_redis.hset(prefix + hashed, "user_id", "42")
    reader = FlaskSessionRedis(redis_url, key_prefix=prefix, max_record_bytes=1000)
    try:
        with caplog.at_level(logging.WARNING, logger="coatcheck.migrate"):
            assert await reader.read(_header("session", big)) is None
            assert await reader.read(_header("session", junk)) is None
            assert await reader.read(_header("session", hashed)) is None
    finally:
        await reader.aclose()
    assert "over 1000 bytes" in caplog.text and "neither msgpack nor JSON" in caplog.text
    assert "does not hold a string" in caplog.text
    assert big not in caplog.text and junk not in caplog.text and hashed not in caplog.text


async def test_an_unreachable_legacy_redis_is_a_store_error_not_a_logout() -> None:
    reader = FlaskSessionRedis(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(SessionStoreError, match="unavailable"):
            await reader.read(_header("session", secrets.token_urlsafe(32)))
    finally:
        await reader.aclose()


def test_flask_session_reader_refuses_a_bad_client_or_a_signer_without_secret(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="redis:// URL"):
        FlaskSessionRedis(object())
    with pytest.raises(ConfigurationError, match="secret_key"):
        FlaskSessionRedis(redis_url, use_signer=True)


def test_default_data_limit_is_stated() -> None:
    assert MAX_DATA_BYTES == 64 * 1024
