"""SQLStore's direct asyncmy path (stores/_sql_my.py) against the real MariaDB server:
overlapping delta commits of one session lose nothing (by compare-and-set, and under the
row's lock once compare-and-set keeps losing), a connection the server closed while
idle is replaced, and a forked child opens connections of its own.

The store connects as a user made for the test, so its connections can be found (and
killed) in the process list without touching anyone else's."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import pymysql
import pytest
import sqlalchemy as sa

from coatcheck.stores import SQLStore, _sql_my
from coatcheck.testing import make_record, new_key


def _table() -> str:
    return f"cc_test_{secrets.token_hex(6)}"


def _admin(mysql_url: str) -> pymysql.Connection:  # type: ignore[type-arg]
    url = sa.make_url(mysql_url)
    return pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
        autocommit=True,
    )


@pytest.fixture
def own_user(mysql_url: str) -> Iterator[tuple[str, str]]:
    """(a MariaDB user of this test's own, its store URL)."""
    user = f"cc_{secrets.token_hex(6)}"
    url = sa.make_url(mysql_url)
    with _admin(mysql_url) as admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
        cursor.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'pw'")
        for host in ("%", "localhost"):
            cursor.execute(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'{host}'")
    try:
        yield user, url.set(username=user, password="pw").render_as_string(hide_password=False)
    finally:
        with _admin(mysql_url) as admin, admin.cursor() as cursor:
            for host in ("%", "localhost"):
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")


def _connections(mysql_url: str, user: str) -> list[int]:
    with _admin(mysql_url) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s ORDER BY ID", (user,))
        return [row[0] for row in cursor.fetchall()]


def _kill(mysql_url: str, ids: list[int]) -> None:
    with _admin(mysql_url) as admin, admin.cursor() as cursor:
        for connection_id in ids:
            cursor.execute(f"KILL {int(connection_id)}")


@pytest.fixture(params=["compare-and-set", "row lock"])
def merge(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on each way a delta commit merges: "row lock" skips compare-and-set."""
    if request.param == "row lock":
        monkeypatch.setattr(_sql_my, "OPTIMISTIC_ATTEMPTS", 0)
    return str(request.param)


async def test_many_requests_writing_one_session_at_once_all_land(mysql_url: str) -> None:
    """96 overlapping delta commits over 32 connections: compare-and-set keeps losing, and
    the merges that lose 3 times take the row's lock instead of failing the request."""
    table = _table()
    stores = [SQLStore(mysql_url, table=table, pool_size=16) for _ in range(2)]
    try:
        key = new_key()
        record = make_record({"keep": 1})
        await stores[0].set(key, record)
        patches = [stores[n % 2].patch(key, {f"k{n}": n}, (), record.meta) for n in range(96)]
        assert all(await asyncio.gather(*patches))
        got = await stores[1].get(key)
        assert got is not None and got.data == {"keep": 1, **{f"k{n}": n for n in range(96)}}
    finally:
        await stores[0].drop_table()
        for store in stores:
            await store.close()


async def test_overlapping_patches_of_one_session_all_land(mysql_url: str, merge: str) -> None:
    table = _table()
    stores = [SQLStore(mysql_url, table=table, pool_size=5) for _ in range(2)]  # two pools
    try:
        key = new_key()
        await stores[0].set(key, make_record({"keep": 1, "gone": 2}))
        meta = make_record({}).meta
        patches = [
            stores[n % 2].patch(key, {f"k{n}": n, "nested": {"n": n}}, ("gone",) if n == 7 else (), meta)
            for n in range(20)
        ]
        assert all(await asyncio.gather(*patches))
        record = await stores[1].get(key)
        assert record is not None
        assert {k: v for k, v in record.data.items() if k != "nested"} == {
            "keep": 1,
            **{f"k{n}": n for n in range(20)},
        }
        assert record.data["nested"]["n"] in range(20)  # one whole value, last writer's
    finally:
        await stores[0].drop_table()
        for store in stores:
            await store.close()


async def test_a_patch_never_writes_back_a_destroyed_or_expired_session(mysql_url: str, merge: str) -> None:
    now = [1_000_000.0]
    store = SQLStore(mysql_url, table=_table(), clock=lambda: now[0])
    try:
        key = new_key()
        record = make_record({"a": 1}, ttl=10, now=now[0])
        await store.set(key, record)
        await store.destroy(key)
        assert not await store.patch(key, {"b": 2}, (), record.meta)
        assert await store.get(key) is None
        await store.set(key, record)
        now[0] += 11
        assert not await store.patch(key, {"b": 2}, (), record.meta)
        now[0] -= 11
        fresh = await store.get(key)
        assert fresh is not None and fresh.data == {"a": 1}
    finally:
        await store.drop_table()
        await store.close()


async def test_a_patch_after_a_load_merges_into_what_another_writer_left(mysql_url: str, merge: str) -> None:
    table = _table()
    mine, other = SQLStore(mysql_url, table=table), SQLStore(mysql_url, table=table)
    try:
        key = new_key()
        await mine.set(key, make_record({"a": 1}))
        record = await mine.get(key)  # what this request loaded
        assert record is not None
        assert await other.patch(key, {"b": 2}, (), record.meta)  # changed since
        assert await mine.patch(key, {"c": 3}, ("a",), record.meta)
        fresh = await other.get(key)
        assert fresh is not None and fresh.data == {"b": 2, "c": 3}
        assert await mine.get(key) is not None
        await other.destroy(key)  # gone since this request loaded it
        assert not await mine.patch(key, {"d": 4}, (), record.meta)
        assert await other.get(key) is None
    finally:
        await mine.drop_table()
        await mine.close()
        await other.close()


@pytest.mark.parametrize("loop_runs", [False, True], ids=["unnoticed", "noticed"])
async def test_a_connection_the_server_closed_while_idle_is_replaced(
    mysql_url: str, own_user: tuple[str, str], loop_runs: bool
) -> None:
    user, url = own_user
    store = SQLStore(url, table=_table(), pool_size=1)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        assert await store.get(key) is not None  # the store now holds one idle connection
        await store.engine.dispose()  # and SQLAlchemy's, which created the table, none
        before = _connections(mysql_url, user)
        assert len(before) == 1
        if loop_runs:  # the loop may see the socket close before the next statement
            await asyncio.to_thread(_kill, mysql_url, before)
        else:  # the loop is blocked: the next statement finds out itself
            _kill(mysql_url, before)
        for n in range(2, 5):
            assert await store.patch(key, {"n": n}, (), make_record({}).meta)
            record = await store.get(key)
            assert record is not None and record.data == {"n": n}
        after = _connections(mysql_url, user)
        assert len(after) == 1 and after != before  # replaced, once
    finally:
        await store.drop_table()
        await store.close()


def test_a_forked_child_opens_its_own_connection(mysql_url: str, own_user: tuple[str, str]) -> None:
    user, url = own_user
    store = SQLStore(url, table=_table(), pool_size=1)
    loop = asyncio.new_event_loop()
    key = new_key()
    try:
        loop.run_until_complete(store.set(key, make_record({"n": 1})))
        loop.run_until_complete(store.engine.dispose())  # the table is made: only the store's own
        parent = _connections(mysql_url, user)
        assert len(parent) == 1
        pid = os.fork()
        if pid == 0:  # the child: a loop of its own, the parent's connection left alone
            code = 1
            try:
                record = asyncio.run(store.get(key))
                ids = _connections(mysql_url, user)
                code = 0 if record is not None and record.data == {"n": 1} and len(ids) == 2 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # the parent's connection is untouched by the child: still the one, still working
        assert loop.run_until_complete(store.patch(key, {"n": 2}, (), make_record({}).meta))
        assert _connections(mysql_url, user) == parent
    finally:
        loop.run_until_complete(store.drop_table())
        loop.run_until_complete(store.close())
        loop.close()
