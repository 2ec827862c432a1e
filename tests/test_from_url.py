"""from_url: every built-in scheme, its options, and the errors for bad URLs and missing drivers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from coatcheck.errors import ConfigurationError
from coatcheck.stores import MemcachedStore, MemoryStore, MongoStore, SQLiteStore, SQLStore, from_url
from coatcheck.testing import make_record, new_key


def close(store: Any) -> None:
    asyncio.run(store.close())


# ---- memory and SQLite ------------------------------------------------------------------------
def test_memory() -> None:
    store = from_url("memory://")
    assert isinstance(store, MemoryStore) and store.max_entries == 10_000
    small = from_url("memory://?max_entries=5")
    assert isinstance(small, MemoryStore) and small.max_entries == 5


def test_memory_with_a_bad_option() -> None:
    with pytest.raises(ConfigurationError, match="max_entries must be a whole number"):
        from_url("memory://?max_entries=lots")


def test_sqlite_relative_and_absolute(tmp_path: Path) -> None:
    relative = from_url("sqlite:///sessions.db")
    assert isinstance(relative, SQLiteStore) and str(relative.path) == "sessions.db"
    absolute = from_url(f"sqlite:///{tmp_path}/s.db")
    assert isinstance(absolute, SQLiteStore) and absolute.path == tmp_path / "s.db"


def test_sqlite_store_from_a_url_works(tmp_path: Path) -> None:
    store = from_url(f"sqlite:///{tmp_path}/s.db")

    async def round_trip() -> Any:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        try:
            return await store.get(key)
        finally:
            await store.close()

    got = asyncio.run(round_trip())
    assert got is not None and got.data == {"n": 1}


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://relative.db"])
def test_sqlite_without_a_file(url: str) -> None:
    with pytest.raises(ConfigurationError, match="needs a file"):
        from_url(url)


# ---- SQL ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://app@db.internal:5432/sessions", "postgresql+psycopg"),
        ("postgres://app@db.internal/sessions", "postgresql+psycopg"),
        ("postgresql+psycopg://app@db.internal/sessions", "postgresql+psycopg"),
        ("mysql://root@db.internal:3306/sessions", "mysql+asyncmy"),
        ("mariadb://root@db.internal/sessions", "mysql+asyncmy"),
        ("mysql+asyncmy://root@db.internal/sessions", "mysql+asyncmy"),
    ],
)
def test_sql_schemes(url: str, driver: str) -> None:
    store = from_url(url)
    assert isinstance(store, SQLStore)
    assert store.engine.url.drivername == driver
    assert store.engine.url.host == "db.internal"
    assert store.table_name == "coatcheck_sessions"
    close(store)


def test_sql_options_are_taken_and_not_passed_to_the_driver() -> None:
    store = from_url(
        "postgresql://app@db.internal/s?table=web_sessions&timeout=2.5&purge_batch=50&sslmode=require"
    )
    assert isinstance(store, SQLStore)
    assert store.table_name == "web_sessions"
    assert store._timeout == 2.5 and store._purge_batch == 50
    assert dict(store.engine.url.query) == {"sslmode": "require"}
    close(store)


def test_mysql_urls_default_to_utf8mb4() -> None:
    store = from_url("mysql://root@db.internal/s")
    assert isinstance(store, SQLStore)
    assert store.engine.url.query["charset"] == "utf8mb4"
    close(store)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://app@db.internal:notaport/s", "malformed database URL"),
        ("postgresql://app@db.internal/s?timeout=soon", "timeout is seconds"),
        ("mysql://root@db.internal/s?purge_batch=many", "purge_batch a whole number"),
        ("postgresql://app@db.internal/s?table=no-dashes", "table name"),
    ],
)
def test_sql_url_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        from_url(url)


@pytest.mark.postgresql
async def test_a_postgresql_url_reaches_the_server(postgres_url: str) -> None:
    store = from_url(f"{postgres_url}?table=cc_url_{new_key()[:8]}")
    assert isinstance(store, SQLStore)
    try:
        key = new_key()
        await store.set(key, make_record({"via": "url"}))
        got = await store.get(key)
        assert got is not None and got.data == {"via": "url"}
    finally:
        await store.drop_table()
        await store.close()


@pytest.mark.mysql
async def test_a_mysql_url_reaches_the_server(mysql_url: str) -> None:
    url = mysql_url.replace("mysql://", "mariadb://", 1)
    store = from_url(f"{url}?table=cc_url_{new_key()[:8]}")
    assert isinstance(store, SQLStore)
    try:
        key = new_key()
        await store.set(key, make_record({"via": "url"}))
        got = await store.get(key)
        assert got is not None and got.data == {"via": "url"}
    finally:
        await store.drop_table()
        await store.close()


# ---- MongoDB ------------------------------------------------------------------------------------
def test_mongodb() -> None:
    store = from_url("mongodb://db.internal:27017/app?collection=web&timeout=2&appname=shop")
    assert isinstance(store, MongoStore)
    assert (store.database_name, store.collection_name) == ("app", "web")
    assert store._timeout == 2.0
    assert store._client.options.pool_options.metadata["application"] == {"name": "shop"}
    close(store)


def test_mongodb_defaults() -> None:
    store = from_url("mongodb://db.internal")
    assert isinstance(store, MongoStore)
    assert (store.database_name, store.collection_name) == ("coatcheck", "coatcheck_sessions")
    close(store)


def test_mongodb_srv_is_accepted_without_resolving_anything_yet() -> None:
    store = from_url("mongodb+srv://cluster0.example.invalid/app")
    assert isinstance(store, MongoStore) and store.database_name == "app"
    close(store)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mongodb://db.internal:notaport/app", "malformed MongoDB connection string"),
        ("mongodb://db.internal/app?timeout=later", "timeout must be seconds"),
        ("mongodb://db.internal/app?collection=a$b", "collection name"),
    ],
)
def test_mongodb_url_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        from_url(url)


# ---- memcached ----------------------------------------------------------------------------------
def test_memcached() -> None:
    store = from_url("memcached://cache.internal:11311?prefix=shop:&timeout=1.5&cas_retries=8")
    assert isinstance(store, MemcachedStore)
    assert (store.host, store.port, store.prefix) == ("cache.internal", 11311, "shop:")
    assert store._timeout == 1.5 and store._cas_retries == 8
    default = from_url("memcached://cache.internal")
    assert isinstance(default, MemcachedStore) and default.port == 11211 and default.prefix == "coatcheck:"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memcached://a:11211,b:11211", "use one host"),
        ("memcached://cache.internal:port", "malformed memcached URL"),
        ("memcached://cache.internal/0", "has a path"),
        ("memcached://cache.internal?timeout=x", "timeout is seconds"),
        ("memcached://cache.internal?prefix=has%20space", "prefix"),
    ],
)
def test_memcached_url_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        from_url(url)


# ---- Redis and cookie (their stores are tested in their own files) ----------------------------
@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://cache.internal:6380/1",
        "redis+cluster://a.internal:7000,b.internal:7001",
        "redis+sentinel://s1.internal:26379,s2.internal:26379/mymaster",
    ],
)
def test_redis_schemes(url: str) -> None:
    from coatcheck.stores import RedisStore

    store = from_url(url)  # builds the client; connects on first use
    assert isinstance(store, RedisStore)
    close(store)


def test_cookie_scheme() -> None:
    from coatcheck.stores import CookieStore

    assert isinstance(from_url("cookie://"), CookieStore)


# ---- not a URL, unknown schemes ---------------------------------------------------------------
@pytest.mark.parametrize("url", ["", "sessions.db", "localhost:6379", None, 42])
def test_not_a_url(url: Any) -> None:
    with pytest.raises(ConfigurationError, match="is not a URL"):
        from_url(url)


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as raised:
        from_url("oracle://db.internal/x")
    message = str(raised.value)
    for scheme in (
        "memory://",
        "sqlite://",
        "postgresql://",
        "mysql://",
        "mariadb://",
        "mongodb://",
        "memcached://",
    ):
        assert scheme in message


# ---- missing drivers ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "driver"),
    [("postgresql://app@db.internal/s", "psycopg"), ("mysql://root@db.internal/s", "asyncmy")],
)
def test_a_missing_sql_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch, url: str, driver: str) -> None:
    monkeypatch.setitem(sys.modules, driver, None)  # `import psycopg` now fails, as if not installed
    with pytest.raises(ConfigurationError) as raised:
        from_url(url)
    assert f"{driver!r}" in str(raised.value)
    assert "pip install 'coatcheck[sql]'" in str(raised.value)


MISSING_LIBRARY = textwrap.dedent(
    """
    import sys
    sys.modules[{module!r}] = None  # as if the library were not installed
    from coatcheck.errors import ConfigurationError
    from coatcheck.stores import from_url
    assert type(from_url("memory://")).__name__ == "MemoryStore"  # other stores still work
    try:
        from_url({url!r})
    except ConfigurationError as exc:
        print(exc)
    else:
        print("no error")
    """
)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql://app@db.internal/s", "sqlalchemy", "sql"),
        ("mariadb://root@db.internal/s", "sqlalchemy", "sql"),
        ("mongodb://db.internal/app", "pymongo", "mongo"),
        ("mongodb+srv://cluster0.example.invalid/app", "pymongo", "mongo"),
        ("memcached://cache.internal:11211", "aiomcache", "memcached"),
        ("redis://cache.internal:6379/0", "redis", "redis"),
    ],
)
def test_a_missing_library_names_the_extra(url: str, module: str, extra: str) -> None:
    # a fresh interpreter, because the backend module is already imported in this one
    script = MISSING_LIBRARY.format(module=module, url=url)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == f"this store needs the {module!r} package: pip install 'coatcheck[{extra}]'"
    )


ONLY_NAMED_BACKEND = textwrap.dedent(
    """
    import sys
    import coatcheck
    from coatcheck.stores import from_url
    from_url({sqlite_url!r})
    from_url("memory://")
    loaded = [name for name in ("sqlalchemy", "pymongo", "redis", "aiomcache") if name in sys.modules]
    print(",".join(loaded))
    """
)


def test_a_url_imports_only_the_backend_it_names(tmp_path: Path) -> None:
    # a fresh interpreter: other tests in this one have imported every backend
    script = ONLY_NAMED_BACKEND.format(sqlite_url=f"sqlite:///{tmp_path / 's.db'}")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
