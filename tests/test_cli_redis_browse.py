"""Browsing a Redis database shared with other data: lookups by hint and listings walk the
keyspace in bounded steps (SCAN calls), so no store call waits on the whole database."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from coatcheck.stores import RedisStore, _redis_browse
from coatcheck.testing import make_record, new_key
from tests.test_cli import cli

FOREIGN = 30_000  # keys of another app in the same database: about 15 SCAN calls of 2,000


@pytest.fixture
def shared_db(redis_url: str) -> Iterator[tuple[str, str]]:
    """(store URL with our own prefix, that prefix) in a database also holding FOREIGN keys
    under another prefix; both prefixes' keys are deleted at the end (and only those)."""
    tag = f"ccbrowse{secrets.token_hex(4)}"
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(FOREIGN):
            pipe.set(f"{tag}-foreign:{i}", b"x")
        pipe.execute()
        yield f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={tag}:", f"{tag}:"
    finally:
        for pattern in (f"{tag}-foreign:*", f"{tag}:*"):
            keys = list(client.scan_iter(match=pattern, count=5000))
            for start in range(0, len(keys), 5000):
                client.delete(*keys[start : start + 5000])
        client.close()


async def _seed(url: str, n: int) -> list[str]:
    store = RedisStore(url)
    keys = [new_key() for _ in range(n)]
    try:
        for key in keys:
            await store.set(key, make_record())
    finally:
        await store.close()
    return keys


async def test_a_hint_lookup_goes_one_scan_call_per_step(shared_db: tuple[str, str]) -> None:
    url, _ = shared_db
    keys = await _seed(url, 3)
    store = RedisStore(url)
    try:
        steps: list[list[Any]] = [infos async for infos in store.find_steps(keys[1][:12], limit=10)]
        # the whole keyspace, COUNT 2,000 keys per SCAN call: several steps, one match in all
        assert len(steps) >= FOREIGN // _redis_browse.SCAN_COUNT // 2
        assert [info.storage_key for step in steps for info in step] == [keys[1]]
        assert [i.storage_key for i in await store.find_sessions(keys[1][:12], limit=10)] == [keys[1]]
    finally:
        await store.close()


async def test_listing_pages_come_back_after_a_bounded_number_of_scan_calls(
    shared_db: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = shared_db
    keys = await _seed(url, 5)
    monkeypatch.setattr(_redis_browse, "MAX_SCAN_CALLS", 2)
    store = RedisStore(url)
    try:
        pages = [page async for page in store.scan(batch=1000)]
        # ~15 SCAN calls, at most 2 per page: the sparse sessions come back over many short pages
        assert len(pages) >= 5
        assert sorted(info.storage_key for page in pages for info in page) == sorted(keys)
        assert await store.count() == 5
        assert {i.storage_key for i in await store.list_sessions(limit=3)} <= set(keys)
    finally:
        await store.close()


def test_duplicate_keys_from_scan_are_dropped() -> None:
    unseen = _redis_browse.Unseen(len(b"p:s:"))
    first, second = b"p:s:" + b"a" * 64, b"p:s:" + b"b" * 64
    assert unseen([first, second]) == ["a" * 64, "b" * 64]
    assert unseen([second, first, b"p:s:not-hex"]) == ["not-hex"]


async def test_show_revoke_and_list_on_a_shared_database(shared_db: tuple[str, str]) -> None:
    url, _ = shared_db
    keys = await _seed(url, 3)
    shown = cli("sessions", "show", keys[0][:12], "--store", url, "--json")
    assert shown.returncode == 0, shown.stderr
    listed = cli("sessions", "list", "--store", url, "--limit", "2", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["sessions"]) == 2
    revoked = cli("sessions", "revoke", keys[0][:12], "--store", url)
    assert revoked.returncode == 0, revoked.stderr
    store = RedisStore(url)
    try:
        assert await store.get(keys[0]) is None and await store.get(keys[1]) is not None
    finally:
        await store.close()
