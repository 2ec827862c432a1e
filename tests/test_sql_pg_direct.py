"""SQLStore's direct psycopg path (stores/_sql_pg.py, _sql_pg_queue.py) against the real
PostgreSQL server: the socket stays registered with the event loop between statements, a
connection the server closes while the loop runs is replaced, a stuck statement times out
and its connection goes on, callers cancelled while they wait give their turn back, and many
callers share a few connections."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import psycopg
import pytest

from coatcheck.errors import SessionStoreError
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


async def _until_blocked_on_a_lock(watcher: psycopg.AsyncConnection[Any], table: str) -> None:
    """Return once a statement on `table` waits for a lock (the store's, behind ours)."""
    while True:
        cursor = await watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (f"%{table}%",),
        )
        row = await cursor.fetchone()
        if row is not None and row[0]:
            return


async def test_a_statement_stuck_past_the_timeout_fails_and_its_connection_goes_on(
    postgres_url: str,
) -> None:
    name = _table()
    store = SQLStore(postgres_url, table=name, timeout=1.0, pool_size=1)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))  # the table exists: the direct path runs
        assert await store.get(key) is not None
        loading = f'SELECT data::text, meta FROM "{name}"%'
        before = await _backends(postgres_url, loading)
        assert len(before) == 1
        async with await psycopg.AsyncConnection.connect(postgres_url) as locker:
            await locker.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')
            started = time.monotonic()
            with pytest.raises(SessionStoreError, match=r"loading a session timed out after 1s"):
                await store.get(key)
            assert 0.9 <= time.monotonic() - started < 2.0
            await locker.rollback()
        record = await store.get(key)  # the stuck SELECT finished, its result dropped
        assert record is not None and record.data == {"n": 1}
        assert await _backends(postgres_url, loading) == before  # the same connection went on
    finally:
        await store.drop_table()
        await store.close()


async def test_callers_cancelled_while_waiting_for_a_connection_leave_none_behind(
    postgres_url: str,
) -> None:
    name = _table()
    store = SQLStore(postgres_url, table=name, timeout=5.0, pool_size=1)
    try:
        key = new_key()
        await store.set(key, make_record({"n": 1}))
        async with (
            await psycopg.AsyncConnection.connect(postgres_url) as locker,
            await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as watcher,
        ):
            await locker.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')
            # one holds the only connection (its SELECT waits for our lock), five wait for it
            callers = [asyncio.create_task(store.get(key)) for _ in range(6)]
            await _until_blocked_on_a_lock(watcher, name)
            for cancelled in callers[0::2]:  # the holder and two of the waiters
                cancelled.cancel()
            await locker.rollback()
            results = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results[0::2])
        assert all(r is not None and r.data == {"n": 1} for r in results[1::2])  # type: ignore[union-attr]

        async with await psycopg.AsyncConnection.connect(postgres_url) as locker:
            await locker.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')
            waiters = [asyncio.create_task(store.get(key)) for _ in range(3)]

            async def unlock() -> None:
                async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as w:
                    await _until_blocked_on_a_lock(w, name)
                await locker.rollback()

            unlocking = asyncio.create_task(unlock())
            assert await store.get(key) is not None  # this call held the connection ...
            waiters[0].cancel()  # ... and handed it to this waiter, which never got to run
            await unlocking
            results = await asyncio.gather(*waiters, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert all(r is not None and r.data == {"n": 1} for r in results[1:])  # type: ignore[union-attr]
        # every slot came back: as many callers as ever fit still all get through
        again = await asyncio.gather(*(store.get(key) for _ in range(6)))
        assert all(r is not None and r.data == {"n": 1} for r in again)
    finally:
        await store.drop_table()
        await store.close()


async def _backends(postgres_url: str, pattern: str) -> list[int]:
    """The server processes whose last statement is LIKE `pattern` (the store's connections)."""
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE %s",
            (pattern,),
        )
        return [row[0] for row in await cursor.fetchall()]


async def test_many_callers_share_a_few_connections(postgres_url: str) -> None:
    name = _table()
    store = SQLStore(postgres_url, table=name, pool_size=2)
    try:
        keys = [new_key() for _ in range(64)]
        await asyncio.gather(*(store.set(key, make_record({"n": 0})) for key in keys))
        meta = make_record({}).meta
        for n in range(1, 4):  # 64 loads, then 64 delta commits, in flight at once
            records = await asyncio.gather(*(store.get(key) for key in keys))
            assert all(r is not None and r.data == {"n": n - 1} for r in records)
            assert all(await asyncio.gather(*(store.patch(key, {"n": n}, (), meta) for key in keys)))
        assert len(await _backends(postgres_url, f"%{name}%")) <= 2
    finally:
        await store.drop_table()
        await store.close()


async def test_statements_from_another_event_loop_keep_to_their_own_connections(postgres_url: str) -> None:
    """A sync caller (a Flask view's flash claim) runs on an event loop of its own, in another
    thread, while this loop's statements are in flight: each loop is answered on its own."""
    store = SQLStore(postgres_url, table=_table(), pool_size=2, timeout=10)
    try:
        keys = [new_key() for _ in range(16)]
        await asyncio.gather(*(store.set(key, make_record({"k": key})) for key in keys))

        def from_another_loop(key: str) -> Any:
            return asyncio.run(store.get(key))

        for _ in range(5):
            here = [store.get(key) for key in keys]
            there = [asyncio.to_thread(from_another_loop, key) for key in keys[:4]]
            records = await asyncio.gather(*here, *there)
            assert [r.data["k"] for r in records] == keys + keys[:4]
    finally:
        await store.drop_table()
        await store.close()
