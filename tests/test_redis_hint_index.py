"""RedisStore's hint index (`<prefix>hints`, a sorted set of storage keys): lookups by hint read
it instead of walking the keyspace; the write and destroy scripts keep it; entries of ended
sessions are dropped by later writes, lookups and purge; sessions saved before it existed
are still found (SCAN) and join it on their next write or on purge."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from coatcheck.record import Meta
from coatcheck.stores import RedisStore
from coatcheck.testing import make_record, new_key
from tests.services import delete_prefixed
from tests.test_cli import cli

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys (only) are deleted after."""
    tag = f"cchint{secrets.token_hex(4)}:"
    yield tag
    delete_prefixed(redis_url, tag)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def url_of(redis_url: str, prefix: str) -> str:
    return f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={prefix}"


def members(client: redis.Redis, prefix: str) -> list[str]:
    return [m.decode() for m in client.zrange(f"{prefix}hints", 0, -1)]


async def steps_of(store: RedisStore, hint: str) -> list[list[str]]:
    return [[info.storage_key for info in step] async for step in store.hint_steps(hint, limit=10)]


async def test_writes_add_the_session_and_a_lookup_by_hint_reads_the_index(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    store = RedisStore(url_of(redis_url, prefix))
    keys = sorted(new_key() for _ in range(5))
    try:
        for key in keys:
            await store.set(key, make_record({"k": key}, user_id="ada" if key == keys[0] else None))
        assert store.hint_index and members(client, prefix) == keys
        assert client.zscore(f"{prefix}hints", keys[2]) == 0
        # one index page, one match: the keyspace is never walked
        assert await steps_of(store, keys[2][:12]) == [[keys[2]]]
        assert [i.storage_key for i in await store.find_sessions(keys[2][:12], limit=10)] == [keys[2]]
        assert await steps_of(store, "zzzz") == []  # not hex: no entry, no step
    finally:
        await store.close()


async def test_every_way_a_session_ends_removes_its_entry(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    store = RedisStore(url_of(redis_url, prefix))
    destroyed, owned, dead_on_set, dead_on_patch, kept = (new_key() for _ in range(5))
    try:
        for key in (destroyed, dead_on_set, dead_on_patch, kept):
            await store.set(key, make_record())
        await store.set(owned, make_record(user_id="ada"))
        assert len(members(client, prefix)) == 5
        await store.destroy(destroyed)
        assert await store.destroy_user("ada") == 1
        past = make_record()
        past.meta.idle_deadline = past.meta.last_seen - 1
        await store.set(dead_on_set, past)  # already past its deadline: deleted, never written
        assert await store.patch(dead_on_patch, {}, (), past.meta) is True
        assert members(client, prefix) == [kept]
        twin = store.sync_twin(None)
        twin.destroy(kept)  # the WSGI path runs the same script
        assert members(client, prefix) == [] and client.exists(f"{prefix}s:{kept}") == 0
    finally:
        await store.close()


async def test_entries_of_ended_sessions_are_dropped_by_lookups(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    store = RedisStore(url_of(redis_url, prefix))
    live, ended = "abcd" + new_key()[4:], "abcd" + new_key()[4:]
    try:
        await store.set(live, make_record())
        await store.set(ended, make_record())
        client.delete(f"{prefix}s:{ended}")  # as Redis does when its TTL runs out
        assert sorted(members(client, prefix)) == sorted([live, ended])
        assert await steps_of(store, "abcd") == [[live]]
        assert members(client, prefix) == [live]
    finally:
        await store.close()


async def test_each_new_entry_drops_ended_sessions_among_the_entries_after_it(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    store = RedisStore(url_of(redis_url, prefix))
    body = new_key()[4:]
    first, ended1, ended2, alive, ended3 = (f"{n:04x}" + body for n in (1, 2, 3, 4, 5))
    try:
        for key in (ended1, ended2, alive, ended3):
            await store.set(key, make_record())
        client.delete(*(f"{prefix}s:{k}" for k in (ended1, ended2, ended3)))
        await store.set(first, make_record())  # checks the three entries after it
        assert members(client, prefix) == [first, alive, ended3]
        await store.touch(first, make_record().meta)  # already indexed: no sweep, no change
        assert members(client, prefix) == [first, alive, ended3]
    finally:
        await store.close()


async def test_a_session_saved_before_the_index_is_found_by_scan_and_joins_it(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    url = url_of(redis_url, prefix)
    store = RedisStore(url)
    old, older, ended = new_key(), new_key(), new_key()
    try:
        for key in (old, older, ended):
            await store.set(key, make_record({"k": key}))
        client.zrem(f"{prefix}hints", old, older)  # as if saved by a version without the index
        client.delete(f"{prefix}s:{ended}")  # its entry lingers
        assert members(client, prefix) == [ended]

        assert await steps_of(store, old[:12]) == []
        assert [i.storage_key for i in await store.find_sessions(old[:12], limit=10)] == [old]
        shown = cli("sessions", "show", old[:12], "--store", url, "--json")
        assert shown.returncode == 0 and old[:12] in shown.stdout, shown.stderr

        # its next write adds it; purge adds the rest and drops the entries of ended sessions
        meta: Meta = (await store.get(old)).meta  # type: ignore[union-attr]
        assert await store.patch(old, {"n": 1}, (), meta) is True
        assert old in members(client, prefix) and older not in members(client, prefix)
        purged = cli("sessions", "purge", "--store", url)
        assert purged.returncode == 0, purged.stderr
        assert members(client, prefix) == sorted([old, older])
        assert [[i.storage_key for i in step] async for step in store.hint_steps(older, limit=10)] == [
            [older]
        ]
    finally:
        await store.close()


async def test_revoke_by_hint_removes_the_entry(redis_url: str, prefix: str, client: redis.Redis) -> None:
    url = url_of(redis_url, prefix)
    store = RedisStore(url)
    keys = [new_key() for _ in range(2)]
    try:
        for key in keys:
            await store.set(key, make_record())
    finally:
        await store.close()
    revoked = cli("sessions", "revoke", keys[0][:12], "--store", url)
    assert revoked.returncode == 0, revoked.stderr
    assert members(client, prefix) == [keys[1]] and client.exists(f"{prefix}s:{keys[0]}") == 0
    missing = cli("sessions", "show", "0000000000ff", "--store", url)
    # one line: searched the index, then the whole key space
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        "Error: no live session has an id hint starting with '0000000000ff' "
        "(neither in the hint index nor in the key space)"
    ]


def test_the_index_costs_bytes_per_session_not_commands(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    """Memory of the index per session, for the docs (printed with -s), and its ordering."""

    async def fill() -> list[str]:
        store = RedisStore(url_of(redis_url, prefix))
        try:
            keys = [new_key() for _ in range(2000)]
            for key in keys:
                await store.set(key, make_record())
            return keys
        finally:
            await store.close()

    keys = asyncio.run(fill())
    used: Any = client.memory_usage(f"{prefix}hints", samples=0)
    assert client.zcard(f"{prefix}hints") == len(keys)
    print(f"hint index: {used / len(keys):.0f} bytes per session at {len(keys):,}")
    assert members(client, prefix) == sorted(keys)
