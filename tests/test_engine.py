"""The engine's decisions as a table: pure function calls, no server."""

from __future__ import annotations

import itertools
import secrets

import pytest

from coatcheck import engine
from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.config import Cookie, Settings
from coatcheck.crypto import Keyring
from coatcheck.record import Meta
from coatcheck.session import Session

NOW = 1_800_000_000.0
KEYRING = Keyring(secrets.token_urlsafe(32))


def session_for(
    settings: Settings, *, loaded: bool, data: dict | None = None, last_seen: float = NOW
) -> Session:
    if not loaded:
        return Session(settings=settings, serializer=DEFAULT_SERIALIZER, now=NOW)
    meta = Meta(created=NOW - 100, last_seen=last_seen, idle_deadline=NOW + 3600)
    return Session(
        settings=settings,
        serializer=DEFAULT_SERIALIZER,
        now=NOW,
        session_id="sid",
        data=dict(data or {"n": 1}),
        meta=meta,
    )


# express-session's rules, written out as the specification the table checks:
#   saved      = modified or (save_uninitialized if new else resave)
#   set-cookie = saved if new else (rolling or (persistent cookie and modified))
TABLE = [
    pytest.param(
        resave,
        save_uninit,
        rolling,
        loaded,
        modified,
        max_age,
        modified or (resave if loaded else save_uninit),
        (rolling or (max_age is not None and modified)) if loaded else (modified or save_uninit),
        id=f"resave={resave:d}-saveUninit={save_uninit:d}-rolling={rolling:d}-"
        f"{'loaded' if loaded else 'new'}-{'modified' if modified else 'same'}-maxAge={max_age}",
    )
    for resave, save_uninit, rolling, loaded, modified, max_age in itertools.product(
        [False, True], [False, True], [False, True], [False, True], [False, True], [None, 3600]
    )
]


@pytest.mark.parametrize(
    ("resave", "save_uninit", "rolling", "loaded", "modified", "max_age", "saved", "cookie"), TABLE
)
def test_decision_table(
    resave: bool,
    save_uninit: bool,
    rolling: bool,
    loaded: bool,
    modified: bool,
    max_age: int | None,
    saved: bool,
    cookie: bool,
) -> None:
    settings = Settings.build(
        resave=resave, save_uninitialized=save_uninit, rolling=rolling, cookie=Cookie(max_age=max_age)
    )
    session = session_for(settings, loaded=loaded)
    if modified:
        session["n"] = 2
    else:
        session.get("n")  # used, not changed
    plan = engine.plan_commit(
        session, settings=settings, keyring=KEYRING, secure=False, now=NOW, can_patch=True
    )
    assert (plan.write in ("set", "patch")) is saved
    assert (plan.set_cookie is not None) is cookie
    if saved:
        assert plan.write == ("patch" if loaded else "set")
    if cookie and max_age is not None:
        assert b"Max-Age=3600" in plan.set_cookie  # type: ignore[operator]


@pytest.mark.parametrize(
    ("loaded", "elapsed", "explicit", "touched"),
    [
        (True, 10, False, False),
        (True, 60, False, True),
        (True, 10, True, True),
        (False, 600, False, False),
    ],
)
def test_should_touch(loaded: bool, elapsed: float, explicit: bool, touched: bool) -> None:
    settings = Settings.build(touch_after=60)
    session = session_for(settings, loaded=loaded, last_seen=NOW - elapsed)
    session.get("n")
    if explicit:
        session.touch()
    plan = engine.plan_commit(session, settings=settings, keyring=KEYRING, secure=False, now=NOW)
    assert (plan.write == "touch") is touched
    if touched:
        assert plan.record is not None and plan.record.meta.last_seen == NOW
        assert plan.record.meta.idle_deadline == NOW + settings.idle_timeout  # type: ignore[operator]


def test_untouched_new_session_does_nothing_even_with_save_uninitialized() -> None:
    settings = Settings.build(save_uninitialized=True)
    plan = engine.plan_commit(
        session_for(settings, loaded=False), settings=settings, keyring=KEYRING, secure=False, now=NOW
    )
    assert plan.write == "none" and plan.set_cookie is None and plan.destroy == [] and not plan.cache_headers


def test_delta_commit_carries_only_changed_and_removed_keys() -> None:
    settings = Settings.build()
    session = session_for(settings, loaded=True, data={"a": [1], "b": 2, "c": 3, "untouched": {"x": 1}})
    session["a"].append(2)
    session["b"] = 2  # same value: not a change
    del session["c"]
    session["d"] = "new"
    plan = engine.plan_commit(
        session, settings=settings, keyring=KEYRING, secure=False, now=NOW, can_patch=True
    )
    assert plan.write == "patch"
    assert plan.changed == {"a": [1, 2], "d": "new"}
    assert plan.removed == {"c"}


def test_deadlines_in_the_saved_meta() -> None:
    settings = Settings.build(idle_timeout=600, absolute_timeout=7200)
    session = session_for(settings, loaded=True)
    session["n"] = 5
    plan = engine.plan_commit(session, settings=settings, keyring=KEYRING, secure=False, now=NOW)
    meta = plan.record.meta  # type: ignore[union-attr]
    assert meta.created == NOW - 100 and meta.last_seen == NOW
    assert meta.idle_deadline == NOW + 600 and meta.absolute_deadline == NOW - 100 + 7200
    assert meta.expires == NOW + 600


@pytest.mark.parametrize(
    ("unset", "destroyed", "destroys"),
    [
        (False, True, True),
        (True, False, False),
        (False, False, False),
    ],
)
def test_should_destroy(unset: bool, destroyed: bool, destroys: bool) -> None:
    settings = Settings.build(unset="keep")
    assert engine.should_destroy(destroyed=destroyed, unset=unset, settings=settings) is destroys
    assert engine.should_destroy(
        destroyed=destroyed, unset=unset, settings=Settings.build(unset="destroy")
    ) is (destroyed or unset)


@pytest.mark.parametrize(
    ("path", "cookie_path", "inside"),
    [
        ("/", "/", True),
        ("/app", "/app", True),
        ("/app/x", "/app", True),
        ("/app/x", "/app/", True),
        ("/application", "/app", False),
        ("/", "/app", False),
        ("/other", "/app", False),
    ],
)
def test_path_in_scope(path: str, cookie_path: str, inside: bool) -> None:
    assert engine.path_in_scope(path, cookie_path) is inside


@pytest.mark.parametrize(
    ("scheme", "forwarded", "trust", "secure"),
    [
        ("https", None, False, True),
        ("http", None, False, False),
        ("http", b"https", False, False),
        ("http", b"https", True, True),
        ("http", b"HTTPS , http", True, True),
        ("https", b"http", True, False),
        ("wss", None, False, True),
    ],
)
def test_is_secure(scheme: str, forwarded: bytes | None, trust: bool, secure: bool) -> None:
    assert engine.is_secure(scheme, forwarded, trust) is secure


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], [(b"vary", b"Cookie"), (b"cache-control", b"private")]),
        ([(b"Vary", b"Accept")], [(b"Vary", b"Accept, Cookie"), (b"cache-control", b"private")]),
        ([(b"vary", b"*")], [(b"vary", b"*"), (b"cache-control", b"private")]),
        (
            [(b"cache-control", b"public, max-age=60")],
            [(b"cache-control", b"private, max-age=60"), (b"vary", b"Cookie")],
        ),
        ([(b"cache-control", b"no-store")], [(b"cache-control", b"no-store"), (b"vary", b"Cookie")]),
    ],
)
def test_cache_headers(headers: list[tuple[bytes, bytes]], expected: list[tuple[bytes, bytes]]) -> None:
    assert engine.add_cache_headers(headers) == expected
