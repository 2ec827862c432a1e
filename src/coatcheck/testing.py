"""Store conformance suite: the behaviour every coatcheck store must have, as pytest tests.

Subclass `StoreConformance` in a test module and say how to build your store::

    from coatcheck.testing import StoreConformance

    class TestMyStore(StoreConformance):
        async def make_store(self):
            return MyStore("redis://localhost/15")

Every test builds a fresh store inside its own event loop and closes it afterwards, so
only pytest is needed. Tests of optional capabilities (patch, user index, inventory) skip
for stores that do not implement them. Each test uses fresh random keys, so a shared server
is fine, but `count`/`purge_expired` tests expect a store nobody else writes to meanwhile.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from ._http import RequestInfo
from .config import Settings
from .crypto import storage_key
from .record import ID_HINT_CHARS, Meta, Record, SessionInfo
from .stores.base import Browsing, Inventory, PatchingStore, Store, UserIndex
from .strategy import build_runtime

TestBody = Callable[[Any], Awaitable[None]]


def make_record(
    data: dict[str, Any] | None = None,
    *,
    ttl: float = 3600.0,
    user_id: str | None = None,
    now: float | None = None,
) -> Record:
    """A record whose idle deadline is `ttl` seconds away (negative: already dead)."""
    now = time.time() if now is None else now
    return Record(
        data=dict(data or {}),
        meta=Meta(
            created=now,
            last_seen=now,
            idle_deadline=now + ttl,
            absolute_deadline=now + max(ttl, 0) + 86400,
            user_id=user_id,
        ),
    )


def new_key() -> str:
    return storage_key(secrets.token_urlsafe(32))


class StoreConformance:
    """Subclass and implement `make_store`; the test methods below run against it."""

    #: Seconds a "short" deadline lies in the future in the expiry tests.
    short_ttl: float = 1.0

    async def make_store(self) -> Store:
        raise NotImplementedError("implement make_store() to return the store under test")

    async def close_store(self, store: Any) -> None:
        await store.close()

    #: Runs each test's coroutine; set to e.g. `uvloop.run` to run the suite on another loop.
    runner: Callable[[Coroutine[Any, Any, None]], None] = staticmethod(asyncio.run)

    def run(self, body: TestBody) -> None:
        async def main() -> None:
            store = await self.make_store()
            try:
                await body(store)
            finally:
                await self.close_store(store)

        self.runner(main())

    @staticmethod
    def _need(store: Any, capability: type, name: str) -> None:
        if not isinstance(store, capability):
            pytest.skip(f"{type(store).__name__} does not implement {name}")

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

    # ---- user index ---------------------------------------------------------------------
    def test_user_index_lists_and_destroys_a_users_sessions(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, UserIndex, "the user index")
            user, other = f"user-{secrets.token_hex(4)}", f"user-{secrets.token_hex(4)}"
            mine = [new_key() for _ in range(3)]
            theirs = new_key()
            for key in mine:
                await store.set(key, make_record({"x": 1}, user_id=user))
            await store.set(theirs, make_record({"x": 1}, user_id=other))
            infos = await store.sessions_for(user)
            assert sorted(i.id_hint for i in infos) == sorted(k[: len(infos[0].id_hint)] for k in mine)
            assert all(i.user_id == user for i in infos)
            assert await store.destroy_user(user) == 3
            assert all([await store.get(k) is None for k in mine])
            assert await store.sessions_for(user) == []
            assert await store.get(theirs) is not None

        self.run(body)

    def test_user_index_forgets_destroyed_and_expired_sessions(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, UserIndex, "the user index")
            user = f"user-{secrets.token_hex(4)}"
            gone, dead, live = new_key(), new_key(), new_key()
            await store.set(gone, make_record(user_id=user))
            await store.set(dead, make_record(user_id=user, ttl=-1))
            await store.set(live, make_record(user_id=user))
            await store.destroy(gone)
            infos = await store.sessions_for(user)
            assert [i.id_hint for i in infos] == [live[: len(infos[0].id_hint)]]

        self.run(body)

    def test_rebinding_a_session_moves_it_between_users(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, UserIndex, "the user index")
            a, b = f"user-{secrets.token_hex(4)}", f"user-{secrets.token_hex(4)}"
            key = new_key()
            await store.set(key, make_record(user_id=a))
            await store.set(key, make_record(user_id=b))
            assert await store.sessions_for(a) == []
            assert len(await store.sessions_for(b)) == 1

        self.run(body)

    # ---- inventory ----------------------------------------------------------------------
    def test_count_and_purge_expired(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, Inventory, "count/purge_expired")
            before = await store.count()
            live, dead = [new_key() for _ in range(3)], [new_key() for _ in range(2)]
            for key in live:
                await store.set(key, make_record())
            for key in dead:
                await store.set(key, make_record(ttl=-1))
            assert await store.count() == before + 3
            await store.purge_expired()
            assert await store.count() == before + 3
            assert all([await store.get(k) is not None for k in live])

        self.run(body)

    def test_list_sessions_shows_live_sessions_as_session_info(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, Inventory, "list_sessions")
            key, dead = new_key(), new_key()
            await store.set(key, make_record({"n": 1}, user_id="lister"))
            await store.set(dead, make_record(ttl=-1))
            listed = {info.storage_key: info for info in await store.list_sessions()}
            assert key in listed and dead not in listed
            info = listed[key]
            assert isinstance(info, SessionInfo)
            assert info.user_id == "lister" and info.id_hint == key[:ID_HINT_CHARS]
            assert key not in repr(info)  # the key is for acting on a session, not for showing

        self.run(body)

    def test_list_sessions_is_most_recent_first_and_honours_the_limit(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, Inventory, "list_sessions")
            now = time.time()
            for age in (30, 10, 20):
                await store.set(new_key(), make_record(now=now - age))
            listed = await store.list_sessions()
            seen = [info.last_seen for info in listed]
            assert len(listed) >= 3 and seen == sorted(seen, reverse=True)
            assert len(await store.list_sessions(limit=2)) == 2

        self.run(body)

    def test_list_sessions_and_sessions_for_describe_a_session_alike(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, Inventory, "list_sessions")
            self._need(store, UserIndex, "sessions_for")
            key, user = new_key(), f"alike-{secrets.token_hex(4)}"
            await store.set(key, make_record({"n": 1}, user_id=user))
            (by_user,) = await store.sessions_for(user)
            (listed,) = [info for info in await store.list_sessions() if info.storage_key == key]
            assert listed == by_user

        self.run(body)

    # ---- browsing: prefix lookups, paging, aggregate counts ------------------------------
    def test_find_sessions_by_key_prefix_returns_live_matches_only(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, Browsing, "find_sessions")
            key, dead, other = new_key(), new_key(), new_key()
            await store.set(key, make_record(user_id="finder"))
            await store.set(dead, make_record(ttl=-1))
            await store.set(other, make_record())
            (found,) = await store.find_sessions(key[:12], limit=2)
            assert found.storage_key == key and found.user_id == "finder"
            assert await store.find_sessions(dead[:12], limit=2) == []
            assert [i.storage_key for i in await store.find_sessions(key, limit=2)] == [key]
            assert await store.find_sessions(key + "0", limit=2) == []

        self.run(body)

    def test_find_sessions_honours_the_limit(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, Browsing, "find_sessions")
            stem = new_key()[:10]  # keys sharing a prefix: the ambiguity the command line reports
            keys = [stem + new_key()[10:] for _ in range(3)]
            for key in keys:
                await store.set(key, make_record())
            assert len(await store.find_sessions(stem, limit=2)) == 2
            assert {i.storage_key for i in await store.find_sessions(stem, limit=10)} == set(keys)

        self.run(body)

    def test_scan_yields_every_live_session_once_in_bounded_batches(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, Browsing, "scan")
            live = {new_key() for _ in range(7)}
            dead = new_key()
            for key in live:
                await store.set(key, make_record())
            await store.set(dead, make_record(ttl=-1))
            seen: list[str] = []
            async for batch in store.scan(batch=3):
                assert len(batch) <= 3
                seen += [info.storage_key for info in batch]
            assert len(seen) == len(set(seen))
            assert live <= set(seen) and dead not in seen

        self.run(body)

    def test_tally_counts_live_sessions_by_age_and_by_user(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, Browsing, "tally")
            bounds = (3600.0, 86400.0, float("inf"))
            before = await store.tally(bounds, 1000)
            user, now = f"tally-{secrets.token_hex(4)}", time.time()
            for age in (10, 20, 7200):
                record = make_record(user_id=user, now=now - age, ttl=age + 3600)
                record.meta.last_seen = now
                await store.set(new_key(), record)
            await store.set(new_key(), make_record(now=now - 2 * 86400, ttl=3 * 86400))
            await store.set(new_key(), make_record(user_id=user, ttl=-1))
            after = await store.tally(bounds, 1000)
            assert after.total - before.total == 4
            assert after.anonymous - before.anonymous == 1
            assert after.users - before.users == 1
            assert [a - b for a, b in zip(after.by_age, before.by_age, strict=True)] == [2, 1, 1]
            assert (user, 3) in after.top_users
            counts = [n for _, n in after.top_users]
            assert counts == sorted(counts, reverse=True)

        self.run(body)
