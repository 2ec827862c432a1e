"""The conformance checks of the optional capabilities: flash claims, user index, inventory
and browsing (each skips for a store that does not implement it)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from ._conformance_kit import ConformanceBase, make_record, new_key
from .record import ID_HINT_CHARS, SessionInfo
from .stores.base import Browsing, FlashClaiming, Inventory, UserIndex


class CapabilityChecks(ConformanceBase):
    """The optional capabilities' contracts."""

    # ---- flash claims -------------------------------------------------------------------
    def test_concurrent_claims_give_each_key_to_exactly_one_caller(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, FlashClaiming, "claim")
            names = [f"_flash.{i:04d}" for i in range(10)]
            key, record = new_key(), make_record({"keep": 1, **{n: ["info", n] for n in names}})
            await store.set(key, record)
            results = await asyncio.gather(*(store.claim(key, names) for _ in range(6)))
            assert sorted(name for result in results for name in result) == names
            got = await store.get(key)
            assert got is not None and got.data == {"keep": 1} and got.meta == record.meta

        self.run(body)

    def test_claim_never_creates_or_resurrects_a_record(self) -> None:
        async def body(store: Any) -> None:
            self._need(store, FlashClaiming, "claim")
            missing, dead = new_key(), new_key()
            assert set(await store.claim(missing, ["_flash.1"])) == set()
            assert await store.get(missing) is None
            await store.set(dead, make_record({"_flash.1": ["info", "x"]}, ttl=-1.0))
            assert set(await store.claim(dead, ["_flash.1"])) == set()
            assert await store.get(dead) is None

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
