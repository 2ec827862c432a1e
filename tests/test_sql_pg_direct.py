"""SQLStore's direct psycopg path (stores/_sql_pg.py) against the real PostgreSQL server:
the socket stays registered with the event loop between statements, and a connection the
server closes while the loop runs is replaced."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import psycopg

from coatcheck.stores import SQLStore
from coatcheck.testing import make_record, new_key


def _table() -> str:
    return f"cc_test_{secrets.token_hex(6)}"


async def test_statements_reuse_one_reader_registration(postgres_url: str) -> None:
    loop = asyncio.get_running_loop()
    added: list[int] = []
    add_reader = loop.add_reader

    def counting(fd: Any, callback: Any, *args: Any) -> None:
        added.append(fd)
        add_reader(fd, callback, *args)

    store = SQLStore(postgres_url, table=_table(), pool_size=1)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 0}))
        loop.add_reader = counting  # type: ignore[method-assign]
        try:
            for n in range(1, 21):
                record = await store.get(key)
                assert record is not None
                assert await store.patch(key, {"n": n}, (), record.meta)
        finally:
            del loop.add_reader  # type: ignore[method-assign]
        record = await store.get(key)
        assert record is not None and record.data == {"n": 20}
        assert len(added) <= 1  # 40 statements, one connection: registered once at most
    finally:
        await store.drop_table()
        await store.close()


async def test_a_connection_closed_while_the_loop_runs_is_replaced(postgres_url: str) -> None:
    name = _table()
    store = SQLStore(postgres_url, table=name)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        assert await store.get(key) is not None  # the store now holds an idle connection
        # an async admin connection: the loop runs (and may see the socket close) meanwhile
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query LIKE %s",
                (f"%{name}%",),
            )
            assert await cursor.fetchall(), "the store's connection was not found"
        for n in range(2, 5):  # whichever way the closed socket was noticed, the store goes on
            assert await store.patch(key, {"n": n}, (), make_record({}).meta)
            record = await store.get(key)
            assert record is not None and record.data == {"n": n}
    finally:
        await store.drop_table()
        await store.close()


async def test_awkward_names_and_large_values_round_trip(postgres_url: str) -> None:
    store = SQLStore(postgres_url, table=_table())
    try:
        key = new_key()
        awkward = {'a"b': 1, "c\\d": 2, "{e,f}": 3, "NULL": 4, " g ": 5, "": 6, "h": 7}
        big = "x" * 4_000_000  # more than a socket takes at once: the write is flushed in parts
        await store.set(key, make_record({**awkward, "big": big}))
        record = await store.get(key)
        assert record is not None and record.data == {**awkward, "big": big}
        assert await store.patch(key, {"h": 8}, [k for k in awkward if k != "h"] + ["big"], record.meta)
        record = await store.get(key)
        assert record is not None and record.data == {"h": 8}
    finally:
        await store.drop_table()
        await store.close()
