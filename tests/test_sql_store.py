"""SQLStore against the real PostgreSQL and MariaDB servers on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from coatcheck.errors import ConfigurationError, SessionStoreError
from coatcheck.record import Meta
from coatcheck.stores import SQLStore
from coatcheck.testing import StoreConformance, make_record, new_key
from tests.services import MYSQL_URL, POSTGRES_URL, free_port, port_open, silent_server

ASYNC_SCHEMES = {"postgresql": "postgresql+psycopg", "mysql": "mysql+asyncmy"}


def _table() -> str:
    return f"cc_test_{secrets.token_hex(6)}"


def _drop(url: str, table: str) -> None:
    parts = urlsplit(url)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 0):
        return

    async def drop() -> None:
        store = SQLStore(url, table=table, create_table=False)
        try:
            await store.drop_table()
        finally:
            await store.close()

    asyncio.run(drop())


# ---- conformance ----------------------------------------------------------------------------
class _SQLConformance(StoreConformance):
    url_fixture = ""
    url = ""
    table = ""

    @pytest.fixture(autouse=True, scope="class")
    def _class_table(self) -> Iterator[None]:
        # one table per test class, dropped at the end
        type(self).table = _table()
        yield
        _drop(type(self).url or (POSTGRES_URL if "postgres" in self.url_fixture else MYSQL_URL), self.table)

    @pytest.fixture(autouse=True)
    def _server(self, request: pytest.FixtureRequest) -> None:
        type(self).url = request.getfixturevalue(self.url_fixture)

    async def make_store(self) -> SQLStore:
        return SQLStore(self.url, table=self.table)


@pytest.mark.postgresql
class TestSQLStorePostgreSQLConformance(_SQLConformance):
    url_fixture = "postgres_url"


@pytest.mark.mysql
class TestSQLStoreMariaDBConformance(_SQLConformance):
    url_fixture = "mysql_url"


# ---- helpers for the behaviour tests ---------------------------------------------------------
@pytest.fixture(
    params=[
        pytest.param("postgres_url", marks=pytest.mark.postgresql, id="postgresql"),
        pytest.param("mysql_url", marks=pytest.mark.mysql, id="mariadb"),
    ]
)
def sql_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
async def table(sql_url: str) -> AsyncIterator[str]:
    name = _table()
    yield name
    store = SQLStore(sql_url, table=name, create_table=False)
    try:
        await store.drop_table()
    finally:
        await store.close()


def engine_for(url: str, **kwargs: Any) -> AsyncEngine:
    scheme, rest = url.split("://", 1)
    return create_async_engine(f"{ASYNC_SCHEMES[scheme]}://{rest}", **kwargs)


class Statements:
    """The SQL an engine sends, recorded with SQLAlchemy's cursor event (the real traffic)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.sql: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sql.append(" ".join(statement.split()))

    def writes(self) -> list[str]:
        return [s for s in self.sql if s.split(" ", 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE")]


async def raw_rows(store: SQLStore) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.text(f"SELECT COUNT(*) FROM {store.table_name}"))).scalar_one())


# ---- schema -----------------------------------------------------------------------------------
async def test_create_table_is_idempotent_and_safe_to_race(sql_url: str, table: str) -> None:
    stores = [SQLStore(sql_url, table=table) for _ in range(4)]
    try:
        await asyncio.gather(*(s.create_table() for s in stores))
        await asyncio.gather(*(s.create_table() for s in stores))
        async with stores[0].engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes(table))
        indexed = {tuple(i["column_names"]) for i in indexes}
        assert ("expires_at",) in indexed and ("user_id",) in indexed
        key = new_key()
        await stores[1].set(key, make_record({"n": 1}))
        got = await stores[2].get(key)
        assert got is not None and got.data == {"n": 1}
    finally:
        for s in stores:
            await s.close()


async def test_table_is_created_on_first_use(sql_url: str, table: str) -> None:
    store = SQLStore(sql_url, table=table)
    try:
        assert await store.get(new_key()) is None
        assert await raw_rows(store) == 0
    finally:
        await store.close()


async def test_without_auto_create_a_missing_table_is_a_store_error(sql_url: str, table: str) -> None:
    store = SQLStore(sql_url, table=table, create_table=False)
    try:
        with pytest.raises(SessionStoreError, match="loading a session failed"):
            await store.get(new_key())
    finally:
        await store.close()


# ---- the statements each operation sends -----------------------------------------------------
async def test_set_is_one_upsert_statement(sql_url: str, table: str) -> None:
    engine = engine_for(sql_url)
    store = SQLStore(engine, table=table)
    try:
        await store.create_table()
        seen = Statements(engine)
        key = new_key()
        await store.set(key, make_record({"a": 1}))
        await store.set(key, make_record({"b": 2}))
        writes = seen.writes()
        assert len(writes) == 2
        upsert = "ON CONFLICT" if sql_url.startswith("postgresql") else "ON DUPLICATE KEY UPDATE"
        assert all(w.startswith("INSERT") and upsert in w for w in writes)
        got = await store.get(key)
        assert got is not None and got.data == {"b": 2}
    finally:
        await store.close()
        await engine.dispose()


async def test_patch_statements(sql_url: str, table: str) -> None:
    engine = engine_for(sql_url)
    store = SQLStore(engine, table=table)
    try:
        key, record = new_key(), make_record({"keep": 1, "drop": 1})
        await store.set(key, record)
        seen = Statements(engine)
        assert await store.patch(key, {"new": 2}, {"drop"}, record.meta) is True
        writes = seen.writes()
        if sql_url.startswith("postgresql"):
            # one UPDATE using jsonb's '-' and '||': no read, no transaction round trips
            assert len(writes) == 1
            assert writes[0].startswith("UPDATE") and " - " in writes[0] and " || " in writes[0]
        else:
            assert len(writes) == 2
            assert writes[0].startswith("SELECT") and writes[0].endswith("FOR UPDATE")
            assert writes[1].startswith("UPDATE")
        got = await store.get(key)
        assert got is not None and got.data == {"keep": 1, "new": 2}
    finally:
        await store.close()
        await engine.dispose()


async def test_touch_writes_only_metadata_columns(sql_url: str, table: str) -> None:
    engine = engine_for(sql_url)
    store = SQLStore(engine, table=table)
    try:
        key, record = new_key(), make_record({"n": 1})
        await store.set(key, record)
        seen = Statements(engine)
        now = time.time()
        await store.touch(key, Meta(created=record.meta.created, last_seen=now, idle_deadline=now + 99))
        (update,) = seen.writes()
        set_clause = update.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
        assert "data" not in set_clause and "meta" in set_clause and "expires_at" in set_clause
    finally:
        await store.close()
        await engine.dispose()


# ---- expiry, delta commits, purge ------------------------------------------------------------
async def test_get_filters_expired_rows_that_are_still_in_the_table(sql_url: str, table: str) -> None:
    store = SQLStore(sql_url, table=table)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}, ttl=-5))
        assert await raw_rows(store) == 1
        assert await store.get(key) is None
        assert await store.patch(key, {"n": 2}, (), make_record(ttl=60).meta) is False
        await store.touch(key, make_record(ttl=60).meta)
        assert await store.get(key) is None  # neither patch nor touch revived it
    finally:
        await store.close()


async def test_concurrent_patches_from_separate_pools_all_survive(sql_url: str, table: str) -> None:
    a, b = SQLStore(sql_url, table=table), SQLStore(sql_url, table=table)
    try:
        key, record = new_key(), make_record({"base": 0})
        await a.set(key, record)
        results = await asyncio.gather(
            *((a if i % 2 else b).patch(key, {f"k{i}": i}, (), record.meta) for i in range(30))
        )
        assert all(results)
        got = await b.get(key)
        assert got is not None and got.data == {"base": 0, **{f"k{i}": i for i in range(30)}}
    finally:
        await a.close()
        await b.close()


async def test_keys_with_nul_and_percent_round_trip_through_set_and_patch(sql_url: str, table: str) -> None:
    store = SQLStore(sql_url, table=table)
    try:
        key = new_key()
        odd = {"a\x00b": 1, "100%": 2, "%00": 3, "%25": 4, "v": "x\x00y"}
        record = make_record(odd)
        await store.set(key, record)
        got = await store.get(key)
        assert got is not None and got.data == odd
        assert await store.patch(key, {"%00": 30, "new\x00": [None]}, {"a\x00b"}, record.meta)
        got = await store.get(key)
        assert got is not None
        assert got.data == {"100%": 2, "%00": 30, "%25": 4, "v": "x\x00y", "new\x00": [None]}
    finally:
        await store.close()


async def test_purge_expired_deletes_in_batches(sql_url: str, table: str) -> None:
    engine = engine_for(sql_url)
    store = SQLStore(engine, table=table, purge_batch=7)
    try:
        live = [new_key() for _ in range(3)]
        for key in live:
            await store.set(key, make_record())
        for _ in range(20):
            await store.set(new_key(), make_record(ttl=-1))
        seen = Statements(engine)
        reports: list[tuple[int, int]] = []
        assert (
            await store.purge_expired(progress=lambda done, expected: reports.append((done, expected))) == 20
        )
        assert reports == [(7, 20), (14, 20), (20, 20)]
        deletes = [s for s in seen.sql if s.startswith("DELETE")]
        assert len(deletes) == math.ceil(20 / 7)  # 7 + 7 + 6: the short batch ends the loop
        assert await raw_rows(store) == 3
        assert all([await store.get(k) is not None for k in live])
    finally:
        await store.close()
        await engine.dispose()


# ---- configuration ----------------------------------------------------------------------------
async def test_an_existing_engine_is_used_and_left_open(sql_url: str, table: str) -> None:
    engine = engine_for(sql_url)
    store = SQLStore(engine, table=table)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        await store.close()
        async with engine.connect() as conn:  # still usable: the caller owns it
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


def test_urls_map_to_the_async_drivers() -> None:
    cases = {
        "postgresql://u@h/db": "postgresql+psycopg",
        "postgres://u@h/db": "postgresql+psycopg",
        "postgresql+psycopg://u@h/db": "postgresql+psycopg",
        "mysql://u@h/db": "mysql+asyncmy",
        "mariadb://u@h/db": "mysql+asyncmy",
        "mysql+asyncmy://u@h/db": "mysql+asyncmy",
    }
    for url, driver in cases.items():
        store = SQLStore(url)
        assert store.engine.url.drivername == driver
        asyncio.run(store.close())


@pytest.mark.parametrize("name", ["", "1abc", "sessions; DROP TABLE x", "a" * 49, "s-p"])
def test_bad_table_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="table name"):
        SQLStore("postgresql://u@h/db", table=name)


def test_a_non_url_non_engine_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="AsyncEngine"):
        SQLStore(42)  # type: ignore[arg-type]


def test_unknown_sql_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        SQLStore("oracle://u@h/db")


async def test_errors_never_quote_the_key(sql_url: str, table: str) -> None:
    # an engine of the caller's, without hide_parameters: SQLAlchemy's own message would
    # quote the statement's parameters, so the store must not pass it on
    engine = engine_for(sql_url)
    store = SQLStore(engine, table=table)
    try:
        await store.create_table()
        key = "k" * 300
        with pytest.raises(SessionStoreError) as raised:
            await store.set(key, make_record())
        assert "k" * 20 not in str(raised.value)
        long_user = make_record(user_id="u" * 256)
        with pytest.raises(SessionStoreError) as raised:
            await store.set(new_key(), long_user)
        assert "u" * 20 not in str(raised.value)
        # keys the driver refuses: NUL (PostgreSQL text), a lone surrogate (any encoder)
        for bad in (
            "secretish" + secrets.token_hex(8) + "\x00",
            "secretish" + secrets.token_hex(8) + "\ud800",
        ):
            if "\x00" in bad and not sql_url.startswith("postgresql"):
                continue
            with pytest.raises(SessionStoreError) as raised:
                await store.get(bad)
            assert bad[:-1] not in str(raised.value) and "parameters" not in str(raised.value)
    finally:
        await store.close()
        await engine.dispose()


# ---- failure: a dead or silent server --------------------------------------------------------
def _swap_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return parts._replace(netloc=netloc).geturl()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_a_closed_port_fails_fast_with_a_store_error(scheme: str) -> None:
    base = POSTGRES_URL if scheme == "postgresql" else MYSQL_URL
    store = SQLStore(_swap_port(base, free_port()), timeout=2.0)
    try:
        for op in (store.get(new_key()), store.set(new_key(), make_record()), store.count()):
            started = time.monotonic()
            with pytest.raises(SessionStoreError) as raised:
                await op
            assert time.monotonic() - started < 2.5
            assert "SQL store" in str(raised.value)
    finally:
        await store.close()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_a_silent_server_fails_within_the_timeout(scheme: str) -> None:
    base = POSTGRES_URL if scheme == "postgresql" else MYSQL_URL
    with silent_server() as port:
        store = SQLStore(_swap_port(base, port), timeout=1.0)
        try:
            started = time.monotonic()
            with pytest.raises(SessionStoreError, match="timed out after 1s"):
                await store.get(new_key())
            elapsed = time.monotonic() - started
            assert 0.9 <= elapsed < 2.0
        finally:
            await store.close()


class TCPProxy:
    """A loopback TCP proxy in front of the real server, so a test can cut the server off
    (every connection dropped, new ones refused) and bring it back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))
        self._writers -= {client_w, server_w}


async def test_store_fails_fast_while_the_server_is_gone_and_recovers_by_itself(
    sql_url: str, table: str
) -> None:
    proxy = TCPProxy(urlsplit(sql_url).port or 0)
    await proxy.start()
    store = SQLStore(_swap_port(sql_url, proxy.port), table=table, timeout=2.0)
    try:
        key = new_key()
        await store.set(key, make_record({"before": 1}))
        await proxy.stop()  # the server "goes away": pooled connections die, new ones are refused
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(SessionStoreError):
                await store.get(key)
            assert time.monotonic() - started < 2.5
        await proxy.start()
        deadline = time.monotonic() + 10
        got = None
        while got is None and time.monotonic() < deadline:  # pre-ping replaces dead connections
            with contextlib.suppress(SessionStoreError):
                got = await store.get(key)
        assert got is not None and got.data == {"before": 1}  # nothing saved before was lost
        await store.patch(key, {"after": 2}, (), got.meta)
        again = await store.get(key)
        assert again is not None and again.data == {"before": 1, "after": 2}
    finally:
        await store.close()
        with contextlib.suppress(AssertionError):
            await proxy.stop()


# ---- through the middleware -------------------------------------------------------------------
def _app(store: SQLStore, secret: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from coatcheck import SessionMiddleware

    async def put(request: Request) -> JSONResponse:
        request.session[request.path_params["name"]] = request.path_params["value"]
        return JSONResponse({})

    async def show(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.session))

    app = Starlette(routes=[Route("/put/{name}/{value}", put), Route("/show", show)])
    return SessionMiddleware(app, secret=secret, store=store, store_timeout=3)


async def test_through_the_middleware_concurrent_requests_keep_both_changes_and_an_outage_is_a_503(
    sql_url: str, table: str, secret: str
) -> None:
    import httpx

    proxy = TCPProxy(urlsplit(sql_url).port or 0)
    await proxy.start()
    store = SQLStore(_swap_port(sql_url, proxy.port), table=table, timeout=2.0)
    app = _app(store, secret)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            assert (await c.get("/put/start/1")).status_code == 200
            # two requests with the same cookie, each changing its own key, at the same time
            results = await asyncio.gather(*(c.get(f"/put/k{i}/{i}") for i in range(8)))
            assert all(r.status_code == 200 for r in results)
            assert (await c.get("/show")).json() == {"start": "1", **{f"k{i}": str(i) for i in range(8)}}

            await proxy.stop()
            started = time.monotonic()
            down = await c.get("/show")
            assert down.status_code == 503 and "set-cookie" not in down.headers
            assert time.monotonic() - started < 3.5

            await proxy.start()
            deadline = time.monotonic() + 10
            while (back := await c.get("/show")).status_code != 200:
                assert time.monotonic() < deadline, "the app never recovered"
            assert back.json()["start"] == "1"
    finally:
        await store.close()
        with contextlib.suppress(AssertionError):
            await proxy.stop()


# ---- the user index compares user ids exactly -------------------------------------------------
async def test_user_ids_differing_only_in_trailing_spaces_are_different_users(
    sql_url: str, table: str
) -> None:
    store = SQLStore(sql_url, table=table)
    try:
        alice, spaced = new_key(), new_key()
        await store.set(alice, make_record({"n": 1}, user_id="alice"))
        await store.set(spaced, make_record({"n": 2}, user_id="alice  "))
        assert [i.id_hint for i in await store.sessions_for("alice")] == [alice[:12]]
        assert [i.id_hint for i in await store.sessions_for("alice  ")] == [spaced[:12]]
        assert await store.destroy_user("alice  ") == 1
        assert await store.get(alice) is not None and await store.get(spaced) is None
    finally:
        await store.close()


_OLD_MYSQL_TABLE = """
CREATE TABLE {t} (
    `key` VARCHAR(255) NOT NULL, data LONGTEXT NOT NULL, meta TEXT NOT NULL,
    user_id VARCHAR(255) NULL, expires_at DATETIME(6) NULL, last_seen DATETIME(6) NOT NULL,
    PRIMARY KEY (`key`), INDEX {t}_expires_at (expires_at), INDEX {t}_user_id (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"""


@pytest.mark.mysql
async def test_an_existing_mysql_table_is_migrated_to_exact_user_ids(mysql_url: str) -> None:
    table = _table()
    old = SQLStore(mysql_url, table=table, create_table=False)
    stores = [SQLStore(mysql_url, table=table) for _ in range(3)]
    try:
        async with old.engine.begin() as conn:
            await conn.execute(sa.text(_OLD_MYSQL_TABLE.format(t=table)))
        alice, spaced = new_key(), new_key()
        await old.set(alice, make_record({"n": 1}, user_id="alice"))
        await old.set(spaced, make_record({"n": 2}, user_id="alice  "))
        assert len(await old.sessions_for("alice")) == 2  # the old PAD SPACE collision
        await asyncio.gather(*(s.create_table() for s in stores))  # several processes at start-up
        assert [i.id_hint for i in await stores[0].sessions_for("alice")] == [alice[:12]]
        assert await stores[1].destroy_user("alice  ") == 1
        assert (await stores[2].get(alice)) is not None
        async with old.engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes(table))
        assert ("user_id",) in {tuple(i["column_names"]) for i in indexes}
    finally:
        for s in stores:
            await s.close()
        await old.drop_table()
        await old.close()


# ---- at scale: the direct PostgreSQL path, indexes added to older tables -------------------------
@pytest.mark.postgresql
async def test_postgresql_connections_closed_by_the_server_while_idle_are_replaced(postgres_url: str) -> None:
    import psycopg

    name = _table()
    store = SQLStore(postgres_url, table=name)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        assert await store.get(key) is not None  # the store now holds an idle connection
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query LIKE %s",
                (f"%{name}%",),
            ).fetchall()
        assert killed, "the store's connection was not found"
        record = await store.get(key)  # as after a database restart: no error reaches the app
        assert record is not None and record.data == {"n": 1}
    finally:
        await store.drop_table()
        await store.close()


async def test_an_older_table_gains_the_last_seen_index(sql_url: str, table: str) -> None:
    store = SQLStore(sql_url, table=table)
    await store.create_table()
    async with store.engine.begin() as conn:  # the table as an earlier version created it
        on = "" if sql_url.startswith("postgresql") else f" ON {table}"
        await conn.execute(sa.text(f"DROP INDEX {table}_last_seen{on}"))
    await store.close()

    def index_names(conn: sa.Connection) -> set[str]:
        return {str(index["name"]) for index in sa.inspect(conn).get_indexes(table)}

    upgraded = SQLStore(sql_url, table=table)
    try:
        await upgraded.count()  # first use ensures the table, adding what it lacks
        async with upgraded.engine.connect() as conn:
            assert f"{table}_last_seen" in await conn.run_sync(index_names)
    finally:
        await upgraded.close()
