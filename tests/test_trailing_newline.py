"""A value with a trailing newline is never taken for a valid one.

Python's `$` also matches just before a final "\\n", so `^...$` validators accepted
"value\\n". A chunk cookie named "session.0\\n" was read and echoed back in a clearing
Set-Cookie header (header injection). Every anchored pattern now ends in `\\Z`.
"""

from __future__ import annotations

import importlib
import re
import secrets
from typing import Any

import pytest

from coatcheck import Cookie
from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.cookies import is_valid_name, render_set_cookie
from coatcheck.crypto import Keyring
from coatcheck.csrf.origins import normalize_origin
from coatcheck.csrf.rules import CSRFPolicy
from coatcheck.django_format import valid_id
from coatcheck.errors import ConfigurationError
from coatcheck.masking import mask_token, unmask_token
from coatcheck.record import Meta, Record
from coatcheck.sealing import b64url_decode, b64url_encode
from coatcheck.stores import CookieStore
from coatcheck.stores._django_table import check_table_name
from coatcheck.stores.memcached import MemcachedStore
from coatcheck.stores.sql import SQLStore

NOW = 1_700_000_000.0


def bound_store() -> CookieStore:
    store = CookieStore()
    store.bind(Keyring(secrets.token_urlsafe(32)), DEFAULT_SERIALIZER)
    return store


def render(name: str, value: str, max_age: float | None) -> bytes:
    return render_set_cookie(name, value, max_age=max_age, path="/", now=NOW)


@pytest.mark.parametrize("suffix", [b"\n", b"\r\n"])
def test_a_chunk_name_with_a_trailing_newline_is_never_echoed(suffix: bytes) -> None:
    store = bound_store()
    header = b"session.0" + suffix + b"=AAAA; session.1=BBBB"
    cleared = store.expire(name="session", cookie_header=header, render=render)
    assert [c.split(b"=", 1)[0] for c in cleared] == [b"session", b"session.1"]
    assert not any(b"\n" in c or b"\r" in c for c in cleared)


def test_resealing_never_echoes_a_chunk_name_with_a_trailing_newline() -> None:
    store = bound_store()
    cookies = store.seal(
        "sid",
        _record(),
        name="session",
        cookie_header=b"session.0\n=AAAA",
        max_age=3600,
        render=render,
    )
    assert cookies and not any(b"\n" in c for c in cookies)


async def test_a_chunk_with_a_trailing_newline_is_not_read() -> None:
    store = bound_store()
    sealed = store.seal("sid", _record(), name="session", cookie_header=None, max_age=3600, render=render)
    value = sealed[0].split(b";", 1)[0].split(b"=", 1)[1]
    assert await store.open(b"session.0=" + value, "session", NOW) is not None
    assert await store.open(b"session.0\n=" + value, "session", NOW) is None


def _record() -> Record:
    return Record(data={"v": 1}, meta=Meta(created=NOW, last_seen=NOW, idle_deadline=NOW + 86400))


def test_set_cookie_rendering_refuses_a_trailing_newline() -> None:
    assert not is_valid_name("session\n")
    with pytest.raises(ValueError):
        render_set_cookie("session\n", "v", now=NOW)
    with pytest.raises(ValueError):
        render_set_cookie("session", "v\n", now=NOW)
    with pytest.raises(ValueError):
        render_set_cookie("session", "v", path="/\n", now=NOW)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("session\n", {}),
        ("session", {"path": "/\n"}),
        ("session", {"path": "/app\n"}),
        ("session", {"domain": "example.com\n"}),
    ],
)
def test_cookie_options_refuse_a_trailing_newline(name: str, options: dict[str, Any]) -> None:
    Cookie().validated("session")
    with pytest.raises(ConfigurationError):
        Cookie(**options).validated(name)


def test_csrf_settings_refuse_a_trailing_newline() -> None:
    CSRFPolicy.build(
        trusted_origins=["https://example.com"], field_name="csrf_token", header_name="X-CSRF-Token"
    )
    with pytest.raises(ConfigurationError):
        CSRFPolicy.build(trusted_origins=["https://example.com"], field_name="csrf_token\n")
    with pytest.raises(ConfigurationError):
        CSRFPolicy.build(trusted_origins=["https://example.com"], header_name="X-CSRF-Token\n")


def test_an_origin_host_with_a_trailing_newline_is_not_an_origin() -> None:
    assert normalize_origin("https://example.com") == "https://example.com"
    assert normalize_origin("https://example.com\n") is None


def test_store_names_refuse_a_trailing_newline() -> None:
    assert check_table_name("django_session") == "django_session"
    with pytest.raises(ConfigurationError):
        check_table_name("django_session\n")
    with pytest.raises(ConfigurationError):
        SQLStore("sqlite+aiosqlite://", table="sessions\n")
    with pytest.raises(ConfigurationError):
        MemcachedStore(prefix="coatcheck:\n")


def test_tokens_and_ids_with_a_trailing_newline_are_refused() -> None:
    masked = mask_token("secret")
    assert unmask_token(masked) == b"secret"
    assert unmask_token(masked + "\n") is None
    assert valid_id("a" * 32) and not valid_id("a" * 32 + "\n")
    encoded = b64url_encode(b"frame").encode()
    assert b64url_decode(encoded) == b"frame"
    assert b64url_decode(encoded + b"\n") is None


# Every anchored validator in the package, with one value it accepts.
ANCHORED = [
    ("coatcheck.config", "_PATH", "/"),
    ("coatcheck.config", "_DOMAIN", "example.com"),
    ("coatcheck.cookies", "_NAME", b"session"),
    ("coatcheck.cookies", "_VALUE", b"abc"),
    ("coatcheck.cookies", "_ATTR", "/"),
    ("coatcheck.csrf.origins", "_HOST", "example.com"),
    ("coatcheck.csrf.rules", "_FIELD_NAME", "csrf_token"),
    ("coatcheck.csrf.rules", "_HEADER_NAME", "X-CSRF-Token"),
    ("coatcheck.masking", "_TOKEN_CHARS", "abc"),
    ("coatcheck.django_format", "_KEY", "a" * 32),
    ("coatcheck.migrate.flask_session", "_SID", b"abc"),
    ("coatcheck.sealing", "_B64URL", b"abc"),
    ("coatcheck.stores.cookie", "_CHUNK_SUFFIX", b"0"),
    ("coatcheck.stores.cookie", "_STD_B64", b"abc="),
    ("coatcheck.stores.sql", "_TABLE_NAME", "sessions"),
    ("coatcheck.stores._django_table", "_TABLE_NAME", "django_session"),
    ("coatcheck.stores.memcached", "_KEY_CHARS", "coatcheck:"),
    ("coatcheck.demo.pages", "_NAME_OK", "Ada"),
]


@pytest.mark.parametrize(("module", "attr", "good"), ANCHORED)
def test_every_anchored_pattern_refuses_a_trailing_newline(module: str, attr: str, good: Any) -> None:
    pattern: re.Pattern[Any] = getattr(importlib.import_module(module), attr)
    newline = b"\n" if isinstance(good, bytes) else "\n"
    assert pattern.match(good)
    assert pattern.match(good + newline) is None
