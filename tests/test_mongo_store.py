"""MongoStore. Tests that need a MongoDB server run against COATCHECK_MONGODB_URL and skip
when it is not set (MongoDB is not packaged for this machine, so CI skips them too).
The rest (key escaping, failure against a dead or silent port, configuration) always run."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymongo import AsyncMongoClient, monitoring

from coatcheck.errors import ConfigurationError, SessionStoreError
from coatcheck.stores import MongoStore
from coatcheck.stores.mongo import escape_field, unescape_field
from coatcheck.testing import StoreConformance, make_record, new_key
from tests.services import MONGODB_URL, free_port, silent_server

SKIP_REASON = "COATCHECK_MONGODB_URL is not set (MongoDB is not packaged for this machine)"


def _collection() -> str:
    return f"cc_test_{secrets.token_hex(6)}"


async def _drop(collection: str) -> None:
    assert MONGODB_URL is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URL, serverSelectionTimeoutMS=5000)
    try:
        await client.get_default_database(default="coatcheck").drop_collection(collection)
    finally:
        await client.close()


# ---- against a real MongoDB --------------------------------------------------------------------
@pytest.mark.mongodb
@pytest.mark.skipif(MONGODB_URL is None, reason=SKIP_REASON)
class TestMongoStoreConformance(StoreConformance):
    collection = ""

    @pytest.fixture(autouse=True, scope="class")
    def _class_collection(self) -> Iterator[None]:
        type(self).collection = _collection()
        yield
        asyncio.run(_drop(self.collection))

    async def make_store(self) -> MongoStore:
        assert MONGODB_URL is not None
        return MongoStore(MONGODB_URL, collection=self.collection)


@pytest.fixture
async def store() -> AsyncIterator[MongoStore]:
    assert MONGODB_URL is not None
    name = _collection()
    mongo = MongoStore(MONGODB_URL, collection=name)
    yield mongo
    await mongo.close()
    await _drop(name)


class Commands(monitoring.CommandListener):
    """The commands a client sends, from pymongo's command monitoring (the real traffic)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append({"name": event.command_name, **dict(event.command)})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.mongodb
@pytest.mark.skipif(MONGODB_URL is None, reason=SKIP_REASON)
async def test_indexes_ttl_on_the_deadline_and_user_id(store: MongoStore) -> None:
    await store.create_indexes()
    await store.create_indexes()  # idempotent
    info = await store._collection.index_information()
    ttl = info["coatcheck_expires_at"]
    assert ttl["key"] == [("expires_at", 1)] and ttl["expireAfterSeconds"] == 0
    assert info["coatcheck_user_id"]["key"] == [("user_id", 1)]


@pytest.mark.mongodb
@pytest.mark.skipif(MONGODB_URL is None, reason=SKIP_REASON)
async def test_patch_is_one_update_with_set_and_unset() -> None:
    assert MONGODB_URL is not None
    commands = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URL, event_listeners=[commands])
    name = _collection()
    store = MongoStore(client, collection=name)
    try:
        key, record = new_key(), make_record({"keep": 1, "drop": 1, "a.b": 1})
        await store.set(key, record)
        commands.sent.clear()
        assert await store.patch(key, {"new": 2, "$x": 3}, {"drop", "a.b"}, record.meta) is True
        # one update command, no read first
        (update,) = [c for c in commands.sent if c["name"] == "update"]
        assert not [c for c in commands.sent if c["name"] in ("find", "findAndModify", "aggregate")]
        spec = update["updates"][0]["u"]
        assert set(spec["$set"]) >= {"data.new", "data.%24x", "meta", "expires_at"}
        assert set(spec["$unset"]) == {"data.drop", "data.a%2Eb"}
        got = await store.get(key)
        assert got is not None and got.data == {"keep": 1, "new": 2, "$x": 3}
    finally:
        await store.close()
        await client.close()
        await _drop(name)


@pytest.mark.mongodb
@pytest.mark.skipif(MONGODB_URL is None, reason=SKIP_REASON)
async def test_keys_mongodb_cannot_name_round_trip(store: MongoStore) -> None:
    odd = {"a.b": 1, "$set": 2, "": 3, "%": 4, "%2E": 5, "n\x00ul": 6, "nested": {"x.y": {"$z": 1}}}
    key, record = new_key(), make_record(odd)
    await store.set(key, record)
    got = await store.get(key)
    assert got is not None and got.data == odd
    assert await store.patch(key, {"": 30, "q.r": [1]}, {"$set"}, record.meta)
    got = await store.get(key)
    assert got is not None
    assert got.data == {**{k: v for k, v in odd.items() if k != "$set"}, "": 30, "q.r": [1]}


@pytest.mark.mongodb
@pytest.mark.skipif(MONGODB_URL is None, reason=SKIP_REASON)
async def test_get_filters_expired_documents_the_ttl_monitor_has_not_reaped(store: MongoStore) -> None:
    key = new_key()
    await store.set(key, make_record({"n": 1}, ttl=-5))
    assert await store._collection.count_documents({"_id": key}) == 1
    assert await store.get(key) is None
    assert await store.patch(key, {"n": 2}, (), make_record().meta) is False
    await store.touch(key, make_record().meta)
    assert await store.get(key) is None
    assert await store.purge_expired() == 1
    assert await store._collection.count_documents({"_id": key}) == 0


@pytest.mark.mongodb
@pytest.mark.skipif(MONGODB_URL is None, reason=SKIP_REASON)
async def test_concurrent_patches_from_two_clients_all_survive(store: MongoStore) -> None:
    assert MONGODB_URL is not None
    other = MongoStore(MONGODB_URL, collection=store.collection_name)
    try:
        key, record = new_key(), make_record({"base": 0})
        await store.set(key, record)
        results = await asyncio.gather(
            *((store if i % 2 else other).patch(key, {f"k{i}": i}, (), record.meta) for i in range(30))
        )
        assert all(results)
        got = await store.get(key)
        assert got is not None and got.data == {"base": 0, **{f"k{i}": i for i in range(30)}}
    finally:
        await other.close()


@pytest.mark.mongodb
@pytest.mark.skipif(MONGODB_URL is None, reason=SKIP_REASON)
async def test_an_existing_client_is_used_and_left_open() -> None:
    assert MONGODB_URL is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URL)
    name = _collection()
    store = MongoStore(client, collection=name)
    try:
        await store.set(new_key(), make_record())
        await store.close()
        assert await client.get_default_database(default="coatcheck")[name].count_documents({}) == 1
    finally:
        await client.close()
        await _drop(name)


# ---- no server needed ---------------------------------------------------------------------------
@given(st.text())
def test_field_escaping_round_trips_and_yields_legal_field_names(name: str) -> None:
    field = escape_field(name)
    assert unescape_field(field) == name
    assert field and "." not in field and "$" not in field and "\x00" not in field


def test_ordinary_keys_are_stored_as_they_are() -> None:
    for name in ("cart", "user_id", "_flash", "csrf-token", "ключ", "☕"):
        assert escape_field(name) == name


def test_escaping_examples() -> None:
    assert escape_field("a.b") == "a%2Eb"
    assert escape_field("$where") == "%24where"
    assert escape_field("100%") == "100%25"
    assert escape_field("") == "%" and unescape_field("%") == ""
    assert unescape_field("%2E") == "." and escape_field("%2E") == "%252E"


async def test_a_closed_port_fails_with_a_store_error_within_the_timeout() -> None:
    store = MongoStore(f"mongodb://127.0.0.1:{free_port()}/app", timeout=1.0)
    try:
        for op in (store.get(new_key()), store.set(new_key(), make_record()), store.count()):
            started = time.monotonic()
            with pytest.raises(SessionStoreError, match="MongoDB store"):
                await op
            assert time.monotonic() - started < 1.5
    finally:
        await store.close()


async def test_a_silent_server_fails_within_the_timeout() -> None:
    with silent_server() as port:
        store = MongoStore(f"mongodb://127.0.0.1:{port}/app", timeout=1.0)
        try:
            started = time.monotonic()
            with pytest.raises(SessionStoreError, match="MongoDB store"):
                await store.get(new_key())
            assert 0.5 <= time.monotonic() - started < 1.5
        finally:
            await store.close()


def test_database_and_collection_come_from_arguments_or_url() -> None:
    store = MongoStore("mongodb://127.0.0.1:1/fromurl")
    assert (store.database_name, store.collection_name) == ("fromurl", "coatcheck_sessions")
    store2 = MongoStore("mongodb://127.0.0.1:1/fromurl", database="explicit", collection="sess")
    assert (store2.database_name, store2.collection_name) == ("explicit", "sess")
    store3 = MongoStore("mongodb://127.0.0.1:1")
    assert store3.database_name == "coatcheck"
    for s in (store, store2, store3):
        asyncio.run(s.close())


@pytest.mark.parametrize("name", ["", "a$b", "system.users", "nul\x00"])
def test_bad_collection_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="collection name"):
        MongoStore("mongodb://127.0.0.1:1/app", collection=name)


def test_a_non_url_non_client_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="AsyncMongoClient"):
        MongoStore(42)  # type: ignore[arg-type]


def test_a_malformed_connection_string_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="malformed MongoDB connection string"):
        MongoStore("mongodb://127.0.0.1:notaport/app")
