import time

from coatcheck.record import Meta, Record
from coatcheck.stores import MemoryStore
from coatcheck.testing import StoreConformance


class TestMemoryStoreConformance(StoreConformance):
    async def make_store(self) -> MemoryStore:
        return MemoryStore()


def _record(now: float, user_id: str | None = None) -> Record:
    return Record(
        data={"v": 1}, meta=Meta(created=now, last_seen=now, idle_deadline=now + 3600, user_id=user_id)
    )


async def test_anonymous_traffic_never_evicts_a_logged_in_session() -> None:
    now = time.time()
    store = MemoryStore(max_entries=100)
    await store.set("alice-session", _record(now, user_id="alice"))
    for n in range(10_000):  # anonymous form views, each creating a session
        await store.set(f"anonymous-{n}", _record(now))
    assert await store.get("alice-session") is not None
    assert [info.id_hint for info in await store.sessions_for("alice")] != []
    assert await store.count() == 100
    assert await store.get("anonymous-9999") is not None and await store.get("anonymous-9899") is None


async def test_logged_in_sessions_are_evicted_least_recently_used_once_no_anonymous_one_is_left() -> None:
    now = time.time()
    store = MemoryStore(max_entries=3)
    for name in ("a", "b"):
        await store.set(name, _record(now, user_id=name))
    await store.set("anonymous", _record(now))
    await store.set("c", _record(now, user_id="c"))
    assert await store.get("anonymous") is None  # the newest, but anonymous: it went first
    assert await store.get("a") is not None  # reading "a" makes "b" the least recently used
    await store.set("d", _record(now, user_id="d"))
    assert [await store.get(k) is not None for k in ("a", "b", "c", "d")] == [True, False, True, True]
