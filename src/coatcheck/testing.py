"""Store conformance suite: the behaviour every coatcheck store must have, as pytest tests.

Subclass `StoreConformance` in a test module and say how to build your store::

    from coatcheck.testing import StoreConformance

    class TestMyStore(StoreConformance):
        async def make_store(self):
            return MyStore("redis://localhost/15")

Every test builds a fresh store inside its own event loop and closes it afterwards, so
only pytest is needed. Tests of optional capabilities (patch, flash claims, user index, inventory) skip
for stores that do not implement them. Each test uses fresh random keys, so a shared server
is fine, but `count`/`purge_expired` tests expect a store nobody else writes to meanwhile.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest

from ._conformance_kit import TestBody, make_record, new_key
from ._conformance_ops import CapabilityChecks
from ._http import RequestInfo
from .config import Settings
from .crypto import storage_key
from .record import Meta
from .stores.base import PatchingStore, Store
from .strategy import build_runtime

__all__ = ["StoreConformance", "TestBody", "make_record", "new_key"]


class StoreConformance(CapabilityChecks):
    """Subclass and implement `make_store`; the test methods below (and the capability
    checks it inherits) run against it."""

    # ---- core protocol ------------------------------------------------------------------
    def test_is_a_store(self) -> None:
        async def body(store: Any) -> None:
            assert isinstance(store, Store)

        self.run(body)

    def test_missing_key_is_none(self) -> None:
        async def body(store: Store) -> None:
            assert await store.get(new_key()) is None

        self.run(body)

    def test_set_then_get_round_trips_data_and_meta(self) -> None:
        async def body(store: Store) -> None:
            key, record = (
                new_key(),
                make_record({"n": 1, "cart": [1, 2, {"sku": "x"}], "flag": None}, user_id="u1"),
            )
            record.meta.cookie = {"max_age": 3600.0}
            await store.set(key, record)
            got = await store.get(key)
            assert got is not None
            assert got.data == record.data
            assert got.meta.to_dict() == record.meta.to_dict()

        self.run(body)

    def test_set_replaces_the_whole_record(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            await store.set(key, make_record({"a": 1, "b": 2}))
            await store.set(key, make_record({"c": 3}))
            got = await store.get(key)
            assert got is not None and got.data == {"c": 3}

        self.run(body)

    def test_unicode_and_large_payloads_round_trip(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            data = {
                "emoji": "☕🧥🎟️",
                "rtl": "مرحبا",
                "nul": "a\u0000b",
                "quote": "\"';--",
                "ключ": "значение",
                "big": "x" * 500_000,
                "nested": [{"i": i, "s": str(i) * 10} for i in range(1000)],
            }
            await store.set(key, make_record(data))
            got = await store.get(key)
            assert got is not None and got.data == data

        self.run(body)

    def test_record_past_its_deadline_is_not_returned(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            await store.set(key, make_record({"n": 1}, ttl=-1.0))
            assert await store.get(key) is None

        self.run(body)

    def test_record_before_its_deadline_is_returned(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            await store.set(key, make_record({"n": 1}, ttl=self.short_ttl + 30))
            assert await store.get(key) is not None

        self.run(body)

    def test_touch_moves_the_deadline_without_rewriting_data(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            record = make_record({"n": 1}, ttl=60)
            await store.set(key, record)
            later = time.time() + 5
            meta = Meta(
                created=record.meta.created,
                last_seen=later,
                idle_deadline=later + 600,
                absolute_deadline=record.meta.absolute_deadline,
            )
            await store.touch(key, meta)
            got = await store.get(key)
            assert got is not None and got.data == {"n": 1}
            assert got.meta.last_seen == pytest.approx(later)
            assert got.meta.idle_deadline == pytest.approx(later + 600)

        self.run(body)

    def test_touch_with_a_past_deadline_kills_the_record(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            record = make_record({"n": 1})
            await store.set(key, record)
            now = time.time()
            await store.touch(key, Meta(created=now - 100, last_seen=now - 50, idle_deadline=now - 1))
            assert await store.get(key) is None

        self.run(body)

    def test_touch_never_resurrects_a_destroyed_session(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            record = make_record({"n": 1})
            await store.set(key, record)
            await store.destroy(key)
            await store.touch(key, record.meta)
            assert await store.get(key) is None

        self.run(body)

    def test_touch_of_a_missing_key_creates_nothing(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            await store.touch(key, make_record().meta)
            assert await store.get(key) is None

        self.run(body)

    def test_destroy_deletes_and_is_idempotent(self) -> None:
        async def body(store: Store) -> None:
            key = new_key()
            await store.set(key, make_record({"n": 1}))
            await store.destroy(key)
            assert await store.get(key) is None
            await store.destroy(key)
            await store.destroy(new_key())

        self.run(body)

    def test_keys_are_independent(self) -> None:
        async def body(store: Store) -> None:
            keys = [new_key() for _ in range(5)]
            for i, key in enumerate(keys):
                await store.set(key, make_record({"i": i}))
            await store.destroy(keys[0])
            assert await store.get(keys[0]) is None
            for i, key in enumerate(keys[1:], start=1):
                got = await store.get(key)
                assert got is not None and got.data == {"i": i}

        self.run(body)

    def test_concurrent_writers_to_different_sessions(self) -> None:
        async def body(store: Store) -> None:
            keys = [new_key() for _ in range(50)]
            await asyncio.gather(*(store.set(key, make_record({"i": i})) for i, key in enumerate(keys)))
            got = await asyncio.gather(*(store.get(key) for key in keys))
            assert [g.data["i"] if g else None for g in got] == list(range(50))

        self.run(body)

    def test_sessions_are_keyed_by_a_hash_of_the_id(self) -> None:
        async def body(store: Store) -> None:
            manager = build_runtime(Settings(secret=secrets.token_urlsafe(32), store=store))
            request = RequestInfo(path="/", scheme="http", cookie=None)
            session = await manager.load(request)
            session["n"] = 1
            added = await manager.commit(session, request)
            assert (
                len(added.cookies) == 1 and manager.keyring.sign_id(session.id).encode() in added.cookies[0]
            )
            assert await store.get(session.id) is None
            got = await store.get(storage_key(session.id))
            assert got is not None and got.data == {"n": 1}

        self.run(body)

    # ---- delta commits ------------------------------------------------------------------
    def test_patch_sets_and_removes_keys(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, PatchingStore, "patch")
            key, record = new_key(), make_record({"keep": 1, "change": 1, "drop": 1})
            await store.set(key, record)
            assert await store.patch(key, {"change": 2, "new": [1]}, {"drop"}, record.meta) is True
            got = await store.get(key)
            assert got is not None and got.data == {"keep": 1, "change": 2, "new": [1]}

        self.run(body)

    def test_patch_replaces_meta(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, PatchingStore, "patch")
            key, record = new_key(), make_record({"a": 1})
            await store.set(key, record)
            now = time.time()
            meta = Meta(
                created=record.meta.created,
                last_seen=now + 1,
                idle_deadline=now + 900,
                user_id="u9",
            )
            await store.patch(key, {"a": 2}, (), meta)
            got = await store.get(key)
            assert got is not None and got.meta.last_seen == pytest.approx(now + 1)
            assert got.meta.user_id == "u9"

        self.run(body)

    def test_patch_never_resurrects_a_destroyed_session(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, PatchingStore, "patch")
            key, record = new_key(), make_record({"a": 1})
            await store.set(key, record)
            await store.destroy(key)
            assert await store.patch(key, {"a": 2}, (), record.meta) is False
            assert await store.get(key) is None
            assert await store.patch(new_key(), {"a": 2}, (), record.meta) is False

        self.run(body)

    def test_concurrent_patches_to_different_keys_all_survive(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, PatchingStore, "patch")
            key, record = new_key(), make_record({"base": 0})
            await store.set(key, record)
            results = await asyncio.gather(
                *(store.patch(key, {f"k{i}": i}, (), record.meta) for i in range(20))
            )
            assert all(results)
            got = await store.get(key)
            assert got is not None
            assert got.data == {"base": 0, **{f"k{i}": i for i in range(20)}}

        self.run(body)
