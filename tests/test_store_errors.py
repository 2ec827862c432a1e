"""Store error paths: one URL redactor for every scheme, and no password or session id in
any message a store, the CLI or the demo prints (issue 14, items 10 and 13)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from coatcheck.demo.server import redact_url as demo_redact_url
from coatcheck.errors import ConfigurationError, SessionStoreError
from coatcheck.stores import MemcachedStore, RedisStore, SQLStore, from_url
from coatcheck.stores._toolkit import redact_url
from coatcheck.stores.redis import parse_url
from coatcheck.testing import new_key
from tests.services import free_port

# Every character that ends a URL part, in one password; no fragment of it may be printed.
PASSWORD = "Qz/Wx@Vy:Uk%Tj#Sh"
FRAGMENTS = re.split(r"[/@:%#]", PASSWORD)
PASSWORDS = ["Qz/Wx", "Qz@Wx", "Qz:Wx", "Qz%Wx", "Qz#Wx", "Qz%2FWx", PASSWORD]


def assert_hidden(text: str, password: str = PASSWORD) -> None:
    assert password not in text
    for fragment in re.split(r"[/@:%#]", password):
        assert fragment not in text, f"{fragment!r} of the password shows in {text!r}"


URL_SHAPES = [
    "redis://:{pw}@cache.internal:6379/0",
    "redis://app:{pw}@cache.internal:6379/0?prefix=web:",
    "rediss://app:{pw}@cache.internal:6380/1",
    "redis+cluster://:{pw}@node1:7000,node2:7001",
    "redis+sentinel://app:{pw}@s1:26379,s2:26379/mymaster?db=2",
    "postgresql://app:{pw}@db.internal:5432/sessions?table=web",
    "mysql://root:{pw}@db.internal/test",
    "mongodb://app:{pw}@m1:27017,m2:27017/app?replicaSet=rs0",
    "memcached://u:{pw}@cache.internal:11211",
]


@pytest.mark.parametrize("shape", URL_SHAPES)
@pytest.mark.parametrize("password", PASSWORDS)
def test_redact_url_hides_passwords_with_every_special_character(shape: str, password: str) -> None:
    shown = redact_url(shape.format(pw=password))
    assert_hidden(shown, password)
    assert shown == shape.format(pw="***")  # hosts, path and options stay readable


def test_redact_url_leaves_urls_without_a_password_alone() -> None:
    for url in (
        "sqlite:///demo.db",
        "memory://",
        "redis://localhost/0",
        "postgresql://app@db/x",
        "cookie://",
    ):
        assert redact_url(url) == url


def test_the_demo_redacts_cluster_and_sentinel_urls_with_passwords() -> None:
    # it raised ValueError on these before (urlsplit reads "node1:7000,node2" as a port)
    for shape in URL_SHAPES:
        url = shape.format(pw=PASSWORD)
        assert demo_redact_url(url) == redact_url(url)


BAD_URLS = [  # each is refused at start-up, and the message must not show the password
    "redis://:{pw}@cache.internal:6379/0?colour=blue",
    "redis://app:{pw}@cache.internal:port/0",
    "redis+cluster://:{pw}@node1:7000,node2:7001/3",
    "redis+sentinel://:{pw}@s1:26379",
    "redis://:{pw}@a:1,b:2/0",
    "postgresql://app:{pw}@db.internal/x?timeout=soon",
    "mysql://root:{pw}@db.internal/x?purge_batch=many",
    "memcached://u:{pw}@cache.internal:11211/0",
    "memcached://u:{pw}@a:1,b:2",
    "memcached://u:{pw}@cache.internal?timeout=x",
    "mongodb://app:{pw}@m1:27017/app?timeout=later",
    "mongodb://app:{pw}@m1:notaport/app",
]


@pytest.mark.parametrize("shape", BAD_URLS)
def test_configuration_errors_never_show_the_password(shape: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        from_url(shape.format(pw=PASSWORD))
    assert_hidden(str(raised.value))


def test_redis_urls_take_raw_passwords_with_special_characters() -> None:
    parsed = parse_url(f"redis://app:{PASSWORD}@cache.internal:6380/2?prefix=web:")
    assert (parsed.username, parsed.password) == ("app", PASSWORD)
    assert parsed.nodes == (("cache.internal", 6380),) and parsed.db == 2
    assert parse_url("redis://:p%40ss@h/0").password == "p@ss"  # percent-encoded still works


def test_sql_urls_with_a_raw_at_in_the_password_name_the_right_host() -> None:
    store = SQLStore(f"postgresql://app:{PASSWORD}@db.internal:5432/sessions")
    assert store.engine.url.host == "db.internal" and store.engine.url.password == PASSWORD
    assert_hidden(repr(store))
    asyncio.run(store.close())


async def _failure(store: Any) -> str:
    try:
        with pytest.raises(SessionStoreError) as raised:
            await store.get(new_key())
        return f"{raised.value} {store!r}"
    finally:
        await store.close()


@pytest.mark.parametrize("connection", ["pipelined", "pool"])
async def test_redis_connection_errors_never_show_the_password(connection: str) -> None:
    store = RedisStore(f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0", connection=connection)
    assert_hidden(await _failure(store))


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_sql_connection_errors_never_show_the_password(scheme: str) -> None:
    store = SQLStore(f"{scheme}://app:{PASSWORD}@127.0.0.1:{free_port()}/x", timeout=2.0)
    assert_hidden(await _failure(store))


async def test_memcached_connection_errors_never_show_the_password() -> None:
    store = from_url(
        f"memcached://u:{PASSWORD.replace('/', '%2F').replace('#', '%23')}@127.0.0.1:{free_port()}"
    )
    assert isinstance(store, MemcachedStore)
    assert_hidden(await _failure(store))


# ---- item 13: MongoDB's errors quote the document's _id: the session id in express layout ----
async def test_express_mongo_errors_never_quote_the_session_id() -> None:
    pytest.importorskip("pymongo")
    from pymongo.errors import DuplicateKeyError

    from coatcheck.stores.express_mongo import ExpressMongoStore
    from coatcheck.stores.mongo import MongoStore

    store = ExpressMongoStore(MongoStore("mongodb://127.0.0.1:1/app"))
    session_id = "Rk3vT0yq8ZbW2nLm5XcA7dPq9sEf1GhJ"
    # MongoDB's own reply text for a duplicate _id (the error a concurrent upsert gets)
    text = (
        f'E11000 duplicate key error collection: app.sessions index: _id_ dup key: {{ _id: "{session_id}" }}'
    )

    async def duplicate() -> None:
        raise DuplicateKeyError(text, 11000, {"errmsg": text, "code": 11000})

    store._ready = True  # the TTL index is not what this test is about (no server here)
    with pytest.raises(SessionStoreError, match="E11000 duplicate key") as raised:
        await store._run("saving a session", duplicate, session_id)
    assert session_id not in str(raised.value)
    await store.mongo.close()
