"""compat="django" building blocks against a real Django: its db backend on SQLite,
PostgreSQL and MariaDB (``django_session`` created by Django's own migrations), and its signed_cookies
backend. Each side logs in, writes, deletes; the other sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoDBSession
from django.contrib.sessions.backends.signed_cookies import (
    SessionStore as DjangoCookieSession,
)
from django.contrib.sessions.models import Session as DjangoSessionRow
from django.core import signing
from django.test import Client
from django.utils import timezone

from coatcheck._sync import run_sync
from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.cookies import render_set_cookie
from coatcheck.crypto import Keyring
from coatcheck.django_format import COOKIE_AGE, DjangoFormat, new_id, valid_id
from coatcheck.errors import ConfigurationError
from coatcheck.record import Meta, Record
from coatcheck.stores.base import ClientSideStore, Store
from coatcheck.stores.django_compat import django_store
from coatcheck.stores.django_cookies import DjangoSignedCookieStore
from tests.djangoapp.project import (
    OLD_SECRET_KEY,
    SECRET_KEY,
    SQLITE_PATH,
    mysql_url,
    new_user,
    pg_url,
    use_database,
)
from tests.helpers import make_settings

KEYS = [SECRET_KEY.encode(), OLD_SECRET_KEY.encode()]


def fmt() -> DjangoFormat:
    return DjangoFormat(make_settings(), keys=KEYS)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A compat store on the database Django's ORM (and db session backend) uses right now."""
    if request.param == "sqlite":
        use_database("default")
        url = f"sqlite:///{SQLITE_PATH}"
    elif request.param == "postgresql":
        use_database(request.getfixturevalue("django_pg"))
        url = pg_url()
    else:
        use_database(request.getfixturevalue("django_mysql"))
        url = mysql_url()
    made = django_store(url, fmt())
    assert isinstance(made, Store)
    yield made
    run_sync(made.close())
    use_database("default")


def django_login() -> tuple[Client, str, object]:
    user = new_user()
    client = Client()
    assert client.get(f"/login/{user.get_username()}/").content == b"ok"
    return client, client.cookies["sessionid"].value, user


def live_meta(record: Record | None) -> Meta:
    assert record is not None
    record.meta.last_seen = time.time()
    return record.meta


# ---- the database backend ----------------------------------------------------------------------
def test_django_login_is_seen_with_its_user_id(store: Store) -> None:
    _, key, user = django_login()
    record = run_sync(store.get(key))
    assert record is not None
    assert record.meta.user_id == str(user.pk)  # type: ignore[attr-defined]
    assert record.data["_auth_user_id"] == str(user.pk)  # type: ignore[attr-defined]
    assert record.data["_auth_user_hash"]
    row = DjangoSessionRow.objects.get(pk=key)
    assert record.meta.idle_deadline == pytest.approx(row.expire_date.timestamp())


def test_coatcheck_delta_is_seen_by_django_which_stays_logged_in(store: Store) -> None:
    client, key, user = django_login()
    meta = live_meta(run_sync(store.get(key)))
    assert run_sync(store.patch(key, {"cart": [1, 2, "é"]}, [], meta)) is True  # type: ignore[attr-defined]
    assert client.get("/data/").json()["cart"] == [1, 2, "é"]
    assert client.get("/whoami/").content.decode() == user.get_username()  # type: ignore[attr-defined]


def test_django_writes_between_coatcheck_load_and_commit_are_kept(store: Store) -> None:
    client, key, _ = django_login()
    meta = live_meta(run_sync(store.get(key)))
    client.get('/set/theme/"dark"/')
    assert run_sync(store.patch(key, {"cart": [3]}, [], meta)) is True  # type: ignore[attr-defined]
    data = client.get("/data/").json()
    assert (data["theme"], data["cart"]) == ("dark", [3])


def test_session_written_by_coatcheck_is_read_by_django(store: Store) -> None:
    key = new_id()
    now = time.time()
    run_sync(store.set(key, Record(data={"greeting": "héllo"}, meta=Meta(created=now, last_seen=now))))
    client = Client()
    client.cookies["sessionid"] = key
    assert client.get("/read/greeting/").json() == {"value": "héllo"}
    expire_date = DjangoSessionRow.objects.get(pk=key).expire_date
    assert expire_date.timestamp() == pytest.approx(now + COOKIE_AGE, abs=1)
    assert DjangoDBSession(key).load()["greeting"] == "héllo"


def test_coatcheck_logout_is_seen_by_django(store: Store) -> None:
    client, key, _ = django_login()
    run_sync(store.destroy(key))
    assert client.get("/whoami/").content == b"anonymous"


def test_django_logout_is_seen_by_coatcheck(store: Store) -> None:
    client, key, _ = django_login()
    client.get("/logout/")
    assert run_sync(store.get(key)) is None


def test_writing_django_auth_keys_is_refused(store: Store) -> None:
    client, key, user = django_login()
    meta = live_meta(run_sync(store.get(key)))
    with pytest.raises(ValueError, match="_auth_user_id"):
        run_sync(store.patch(key, {"_auth_user_id": "1"}, [], meta))  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="_auth_user_hash"):
        run_sync(store.patch(key, {}, ["_auth_user_hash"], meta))  # type: ignore[attr-defined]
    other = Meta(created=meta.created, last_seen=meta.last_seen, user_id="someone-else")
    with pytest.raises(ValueError, match="login"):
        run_sync(store.set(new_id(), Record(data={"_auth_user_id": "1"}, meta=other)))
    assert client.get("/whoami/").content.decode() == user.get_username()  # type: ignore[attr-defined]


def test_touch_moves_expire_date_like_a_django_save(store: Store) -> None:
    _, key, _ = django_login()
    meta = live_meta(run_sync(store.get(key)))
    DjangoSessionRow.objects.filter(pk=key).update(expire_date=timezone.now() + timedelta(minutes=5))
    run_sync(store.touch(key, meta))
    expire_date = DjangoSessionRow.objects.get(pk=key).expire_date
    assert expire_date.timestamp() == pytest.approx(meta.last_seen + COOKIE_AGE, abs=1)


@pytest.mark.parametrize(
    ("expiry", "max_age", "lifetime"),
    [
        (300, 300.0, 300.0),
        (0, None, COOKIE_AGE),
        (None, COOKIE_AGE, COOKIE_AGE),
        (timedelta(hours=2), 7200.0, None),
    ],
)
def test_django_set_expiry_governs_cookie_and_expire_date(
    store: Store, expiry: object, max_age: float | None, lifetime: float | None
) -> None:
    django_side = DjangoDBSession()
    django_side["a"] = 1
    django_side.set_expiry(expiry)
    django_side.save()
    record = run_sync(store.get(django_side.session_key))
    assert record is not None
    row_deadline = DjangoSessionRow.objects.get(pk=django_side.session_key).expire_date.timestamp()
    assert record.meta.idle_deadline == pytest.approx(row_deadline)
    assert record.meta.cookie["max_age"] == (None if max_age is None else pytest.approx(max_age, abs=2))
    meta = live_meta(record)
    run_sync(store.touch(django_side.session_key, meta))
    touched = DjangoSessionRow.objects.get(pk=django_side.session_key).expire_date.timestamp()
    if lifetime is None:  # set_expiry(a date or timedelta): a fixed date that touching does not move
        assert touched == pytest.approx(row_deadline, abs=1e-3)
    else:
        assert touched == pytest.approx(meta.last_seen + lifetime, abs=1)
    assert DjangoDBSession(django_side.session_key).get_expiry_age() == pytest.approx(
        touched - time.time(), abs=2
    )


def test_expired_row_is_not_loaded(store: Store) -> None:
    _, key, _ = django_login()
    DjangoSessionRow.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert run_sync(store.get(key)) is None


def test_session_data_signed_with_another_secret_is_not_loaded(store: Store) -> None:
    _, key, _ = django_login()
    forged = signing.dumps({"_auth_user_id": "1"}, key="not-" + SECRET_KEY, salt=fmt().salt, compress=True)
    DjangoSessionRow.objects.filter(pk=key).update(session_data=forged)
    assert run_sync(store.get(key)) is None


def test_patch_of_a_deleted_session_writes_nothing(store: Store) -> None:
    _, key, _ = django_login()
    meta = live_meta(run_sync(store.get(key)))
    DjangoSessionRow.objects.filter(pk=key).delete()
    assert run_sync(store.patch(key, {"cart": [1]}, [], meta)) is False  # type: ignore[attr-defined]
    assert not DjangoSessionRow.objects.filter(pk=key).exists()


def test_session_data_signed_with_a_fallback_key_is_loaded(store: Store) -> None:
    _, key, user = django_login()
    data = DjangoDBSession(key).load()
    old = signing.dumps(data, key=OLD_SECRET_KEY, salt=fmt().salt, compress=True)
    DjangoSessionRow.objects.filter(pk=key).update(session_data=old)
    record = run_sync(store.get(key))
    assert record is not None and record.meta.user_id == str(user.pk)  # type: ignore[attr-defined]


def test_ids_that_are_not_django_keys_never_reach_the_database(store: Store) -> None:
    assert run_sync(store.get("' OR 1=1 --")) is None
    assert not valid_id("A" * 32) and not valid_id("a" * 7) and valid_id(new_id())


# ---- configuration -----------------------------------------------------------------------------
def test_missing_table_names_manage_py_migrate(tmp_path: object) -> None:
    import sqlite3
    from pathlib import Path

    empty = Path(str(tmp_path)) / "empty.sqlite3"
    sqlite3.connect(empty).close()
    store = django_store(f"sqlite:///{empty}", fmt())
    with pytest.raises(ConfigurationError, match=r"manage\.py migrate"):
        run_sync(store.get(new_id()))
    run_sync(store.close())


def test_missing_postgresql_table_names_manage_py_migrate(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("django_pg")
    store = django_store(pg_url() + "?table=no_such_django_session", fmt())
    with pytest.raises(ConfigurationError, match=r"manage\.py migrate"):
        run_sync(store.get(new_id()))
    run_sync(store.close())


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "memcached://127.0.0.1:11211", "file:///tmp/x"])
def test_cache_backends_are_refused_because_they_pickle(url: str) -> None:
    with pytest.raises(ConfigurationError, match="pickle"):
        django_store(url, fmt())


def test_django_own_codec_reads_what_the_format_encodes() -> None:
    data = {"a": [1, 2], "text": "ünïcode \u2603", "n": None}
    assert DjangoDBSession().decode(fmt().encode(data)) == data
    assert fmt().decode(DjangoDBSession().encode(data)) == data


# ---- the signed_cookies backend ----------------------------------------------------------------
def cookie_store() -> DjangoSignedCookieStore:
    store = django_store("django-signed-cookies://", fmt())
    assert isinstance(store, DjangoSignedCookieStore) and isinstance(store, ClientSideStore)
    store.bind(Keyring([SECRET_KEY, OLD_SECRET_KEY]), DEFAULT_SERIALIZER)
    return store


def render(name: str, value: str, max_age: float | None) -> bytes:
    return render_set_cookie(name, value, max_age=max_age, now=time.time())


def test_django_signed_cookie_opens_in_coatcheck() -> None:
    django_side = DjangoCookieSession()
    django_side.update({"cart": [1], "_auth_user_id": "7"})
    django_side.save()
    opened = run_sync(
        cookie_store().open(b"sessionid=" + django_side.session_key.encode(), "sessionid", time.time())
    )
    assert opened is not None and not opened.reseal
    assert opened.record.data["cart"] == [1]
    assert opened.record.meta.user_id == "7"


def test_coatcheck_signed_cookie_opens_in_django() -> None:
    now = time.time()
    record = Record(data={"cart": ["é"]}, meta=Meta(created=now, last_seen=now))
    [header] = cookie_store().seal(
        "unused", record, name="sessionid", cookie_header=None, max_age=None, render=render
    )
    value = header.decode().split(";", 1)[0].split("=", 1)[1]
    assert DjangoCookieSession(value).load()["cart"] == ["é"]


def test_signed_cookie_from_a_fallback_secret_opens_and_is_resealed() -> None:
    value = signing.dumps(
        {"a": 1}, key=OLD_SECRET_KEY, salt="django.contrib.sessions.backends.signed_cookies", compress=True
    )
    opened = run_sync(cookie_store().open(b"sessionid=" + value.encode(), "sessionid", time.time()))
    assert opened is not None and opened.reseal and opened.record.data["a"] == 1


def test_signed_cookie_older_than_the_cookie_age_is_refused_as_django_does() -> None:
    django_side = DjangoCookieSession()
    django_side["a"] = 1
    django_side.save()
    header = b"sessionid=" + django_side.session_key.encode()
    assert run_sync(cookie_store().open(header, "sessionid", time.time() + COOKIE_AGE + 2)) is None


def test_forged_or_db_salted_signed_cookie_is_refused() -> None:
    db_salted = DjangoDBSession().encode({"a": 1})  # right secret, another salt
    for value in (db_salted, "x" * 50, db_salted[:-2] + "AA", ".:::"):
        assert run_sync(cookie_store().open(b"sessionid=" + value.encode(), "sessionid", time.time())) is None


def test_emptied_signed_cookie_session_expires_the_cookie() -> None:
    now = time.time()
    record = Record(data={}, meta=Meta(created=now, last_seen=now))
    [header] = cookie_store().seal(
        "unused", record, name="sessionid", cookie_header=None, max_age=None, render=render
    )
    assert header.startswith(b"sessionid=;") and b"Max-Age=0" in header
