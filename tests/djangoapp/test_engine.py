"""SESSION_ENGINE = "coatcheck.django" with Django's test client: contrib.auth login/logout,
cycle_key, flush, contrib.messages, SESSION_SAVE_EVERY_REQUEST, on coatcheck's stores
(memory, SQLite, Redis, PostgreSQL)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.sessions.backends.base import UpdateError
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from coatcheck import django as engine
from coatcheck._sync import run_sync
from coatcheck.crypto import storage_key
from coatcheck.record import Record
from coatcheck.stores import MemoryStore, RedisStore, SQLiteStore, SQLStore
from coatcheck.stores.base import Store
from tests.djangoapp.project import new_user, use_database


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The engine's store, installed with override_settings for one test."""
    use_database("default")
    made: Store
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "sessions.db")
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        made = RedisStore(url, prefix=f"coatcheck-django-test-{secrets.token_hex(4)}:")
    else:
        url = request.getfixturevalue("postgres_url")
        made = SQLStore(url, table=f"coatcheck_django_{secrets.token_hex(4)}")
    with override_settings(SESSION_ENGINE="coatcheck.django", COATCHECK_STORE=made):
        yield made
    if isinstance(made, SQLStore):
        run_sync(made.drop_table())
    run_sync(made.close())


def record_for(store: Store, session_key: str) -> Record | None:
    return run_sync(store.get(storage_key(session_key)))


def logged_in(client: Client) -> tuple[object, str]:
    user = new_user()
    assert client.get(f"/login/{user.get_username()}/").content == b"ok"
    return user, client.cookies["sessionid"].value


def test_login_binds_the_record_to_the_user_and_logout_destroys_it(store: Store) -> None:
    client = Client()
    user, key = logged_in(client)
    record = record_for(store, key)
    assert record is not None and record.meta.user_id == str(user.pk)  # type: ignore[attr-defined]
    assert [info.user_id for info in engine.sessions_for(user.pk)] == [str(user.pk)]  # type: ignore[attr-defined]
    assert client.get("/whoami/").content.decode() == user.get_username()  # type: ignore[attr-defined]
    client.get("/logout/")
    assert record_for(store, key) is None
    assert client.get("/whoami/").content == b"anonymous"


def test_login_cycles_the_key_keeps_anonymous_data_and_creation_time(store: Store) -> None:
    client = Client()
    client.get("/set/cart/[1,2]/")
    before = client.cookies["sessionid"].value
    created = record_for(store, before).meta.created  # type: ignore[union-attr]
    _, after = logged_in(client)
    assert after != before
    assert record_for(store, before) is None
    assert client.get("/read/cart/").json() == {"value": [1, 2]}
    assert record_for(store, after).meta.created == created  # type: ignore[union-attr]


def test_cycle_key_moves_the_data_to_a_new_key(store: Store) -> None:
    client = Client()
    client.get("/set/n/7/")
    before = client.cookies["sessionid"].value
    client.get("/cycle/")
    after = client.cookies["sessionid"].value
    assert after != before and record_for(store, before) is None
    assert record_for(store, after).data["n"] == 7  # type: ignore[union-attr]


def test_flush_deletes_the_record_and_the_data(store: Store) -> None:
    client = Client()
    _, key = logged_in(client)
    client.get("/flush/")
    assert record_for(store, key) is None
    assert client.get("/whoami/").content == b"anonymous"
    assert client.get("/read/_auth_user_id/").json() == {"value": None}


def test_messages_survive_the_next_request_once(store: Store) -> None:
    client = Client()
    client.get("/message/saved/")
    assert client.get("/messages/").json() == {"messages": ["saved"]}
    assert client.get("/messages/").json() == {"messages": []}


@pytest.mark.parametrize("every_request", [True, False])
def test_save_every_request_decides_whether_a_read_writes(store: Store, every_request: bool) -> None:
    client = Client()
    client.get("/set/x/1/")
    key = client.cookies["sessionid"].value
    record = record_for(store, key)
    assert record is not None
    record.meta.last_seen -= 1000  # an older save, so a new one is unmistakable
    run_sync(store.set(storage_key(key), record))
    started = time.time()
    with override_settings(SESSION_SAVE_EVERY_REQUEST=every_request):
        assert Client(headers={"cookie": f"sessionid={key}"}).get("/read/x/").json() == {"value": 1}
    last_seen = record_for(store, key).meta.last_seen  # type: ignore[union-attr]
    assert (last_seen >= started) is every_request


def test_concurrent_saves_of_different_keys_both_survive(store: Store) -> None:
    first = engine.SessionStore()
    first["a"] = 0
    first.save()
    one, two = engine.SessionStore(first.session_key), engine.SessionStore(first.session_key)
    one["a"], two["b"] = 1, 2  # both loaded before either saves
    one.save()
    two.save()
    assert record_for(store, first.session_key).data == {"a": 1, "b": 2}  # type: ignore[union-attr]


def test_saving_a_session_deleted_meanwhile_raises_update_error(store: Store) -> None:
    session = engine.SessionStore()
    session["a"] = 1
    session.save()
    loaded = engine.SessionStore(session.session_key)
    loaded["a"] = 2
    engine.SessionStore(session.session_key).delete()
    with pytest.raises(UpdateError):
        loaded.save()
    assert record_for(store, session.session_key) is None


def test_destroy_user_logs_the_user_out_everywhere(store: Store) -> None:
    user = new_user()
    clients = [Client(), Client()]
    for client in clients:
        client.get(f"/login/{user.get_username()}/")
    assert engine.destroy_user(user.pk) == 2
    assert [c.get("/whoami/").content for c in clients] == [b"anonymous", b"anonymous"]


def test_records_are_keyed_by_a_hash_of_the_session_key(store: Store) -> None:
    client = Client()
    _, key = logged_in(client)
    assert run_sync(store.get(key)) is None
    assert record_for(store, key) is not None


def test_a_session_past_its_absolute_deadline_is_not_loaded(store: Store) -> None:
    client = Client()
    _, key = logged_in(client)
    record = record_for(store, key)
    assert record is not None and record.meta.absolute_deadline is not None
    record.meta.absolute_deadline = time.time() - 1
    run_sync(store.set(storage_key(key), record))
    assert client.get("/whoami/").content == b"anonymous"


def test_a_missing_store_setting_is_improperly_configured() -> None:
    with override_settings(SESSION_ENGINE="coatcheck.django", COATCHECK_STORE=None):
        session = engine.SessionStore()
        session["a"] = 1
        with pytest.raises(ImproperlyConfigured, match="COATCHECK_STORE"):
            session.save()


def test_a_client_side_store_is_refused_with_the_django_alternative() -> None:
    with override_settings(SESSION_ENGINE="coatcheck.django", COATCHECK_STORE="cookie://"):
        session = engine.SessionStore()
        session["a"] = 1
        with pytest.raises(ImproperlyConfigured, match="signed_cookies"):
            session.save()
