"""The engine's one decision, `decide(snapshot, settings, facts)`, as tables: pure calls, no server.

Sessions are real `Session` objects driven through their public API; the engine only ever
sees their `snapshot()`. Every path through `decide` is covered for server-side sessions
and for client-side ones (`self_contained`), where a save or touch is a re-seal.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from coatcheck import engine
from coatcheck._http import add_cache_headers
from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.config import Cookie, Settings
from coatcheck.engine import NOTHING, Facts, Plan, decide
from coatcheck.record import Meta
from coatcheck.session import Session
from tests.helpers import make_settings

NOW = 1_800_000_000.0


def session_for(
    settings: Settings,
    *,
    loaded: bool,
    data: dict[str, Any] | None = None,
    last_seen: float = NOW,
    stale_signature: bool = False,
    read_only: bool = False,
) -> Session:
    if not loaded:
        return Session(settings=settings, serializer=DEFAULT_SERIALIZER, now=NOW, read_only=read_only)
    meta = Meta(created=NOW - 100, last_seen=last_seen, idle_deadline=NOW + 3600)
    return Session(
        settings=settings,
        serializer=DEFAULT_SERIALIZER,
        now=NOW,
        session_id="sid",
        data=dict(data or {"n": 1}),
        meta=meta,
        stale_signature=stale_signature,
        read_only=read_only,
    )


def plan_for(session: Session, settings: Settings, **facts: Any) -> Plan:
    facts.setdefault("secure", False)
    return decide(session.snapshot(), settings, Facts(now=NOW, **facts))


# express-session's rules, written out as the specification the table checks:
#   saved      = modified or (save_uninitialized if new else resave)
#   set-cookie = saved if new else (rolling or (persistent cookie and modified))
# For a client-side session every save is a re-seal, so its cookie goes out whenever it is saved too.
TABLE = [
    pytest.param(
        resave,
        save_uninit,
        rolling,
        loaded,
        modified,
        max_age,
        client,
        modified or (resave if loaded else save_uninit),
        (rolling or (max_age is not None and modified)) if loaded else (modified or save_uninit),
        id=f"{'client' if client else 'server'}-resave={resave:d}-saveUninit={save_uninit:d}-rolling={rolling:d}-"
        f"{'loaded' if loaded else 'new'}-{'modified' if modified else 'same'}-maxAge={max_age}",
    )
    for resave, save_uninit, rolling, loaded, modified, max_age, client in itertools.product(
        [False, True], [False, True], [False, True], [False, True], [False, True], [None, 3600], [False, True]
    )
]


@pytest.mark.parametrize(
    ("resave", "save_uninit", "rolling", "loaded", "modified", "max_age", "client", "saved", "cookie"), TABLE
)
def test_decision_table(
    resave: bool,
    save_uninit: bool,
    rolling: bool,
    loaded: bool,
    modified: bool,
    max_age: int | None,
    client: bool,
    saved: bool,
    cookie: bool,
) -> None:
    settings = make_settings(
        resave=resave, save_uninitialized=save_uninit, rolling=rolling, cookie=Cookie(max_age=max_age)
    )
    session = session_for(settings, loaded=loaded)
    if modified:
        session["n"] = 2
    else:
        session.get("n")  # used, not changed
    plan = plan_for(session, settings, can_patch=True, self_contained=client)
    if client:
        assert plan.write == "none" and plan.destroy == ()  # nothing is ever stored
        assert (plan.cookie == "send") is (saved or cookie)
        if plan.cookie == "send":
            assert plan.record is not None and plan.record.data == dict(session)  # the whole record, sealed
    else:
        assert (plan.write in ("set", "patch")) is saved
        assert (plan.cookie == "send") is cookie
        if saved:
            assert plan.write == ("patch" if loaded else "set")
    if plan.cookie == "send":
        assert plan.max_age == max_age and plan.cache_headers


@pytest.mark.parametrize("client", [False, True])
@pytest.mark.parametrize(
    ("loaded", "elapsed", "explicit", "touched"),
    [
        (True, 10, False, False),
        (True, 60, False, True),
        (True, 10, True, True),
        (False, 600, False, False),
    ],
)
def test_touch_is_throttled_by_touch_after(
    loaded: bool, elapsed: float, explicit: bool, touched: bool, client: bool
) -> None:
    settings = make_settings(touch_after=60)
    session = session_for(settings, loaded=loaded, last_seen=NOW - elapsed)
    session.get("n")
    if explicit:
        session.touch()
    plan = plan_for(session, settings, self_contained=client)
    assert (plan.write == "touch" if not client else plan.cookie == "send") is touched
    if touched:
        assert plan.record is not None and plan.record.meta.last_seen == NOW
        assert plan.record.meta.idle_deadline == NOW + settings.idle_seconds  # type: ignore[operator]


@pytest.mark.parametrize("client", [False, True])
def test_untouched_session_is_nothing_even_with_save_uninitialized(client: bool) -> None:
    settings = make_settings(save_uninitialized=True, rolling=True)
    for loaded in (False, True):
        assert plan_for(session_for(settings, loaded=loaded), settings, self_contained=client) is NOTHING


@pytest.mark.parametrize("client", [False, True])
@pytest.mark.parametrize("loaded", [False, True])
@pytest.mark.parametrize("stale_signature", [False, True])
@pytest.mark.parametrize("read_only", [False, True])
def test_session_untouched_means_decide_plans_nothing(
    client: bool, loaded: bool, stale_signature: bool, read_only: bool
) -> None:
    """Runtimes skip decide() for an untouched session: that shortcut must agree with it."""
    settings = make_settings(save_uninitialized=True, rolling=True, resave=True)
    session = session_for(settings, loaded=loaded, stale_signature=stale_signature, read_only=read_only)
    plan = plan_for(session, settings, self_contained=client)
    assert session.untouched == (plan is NOTHING)
    session.get("n")
    assert not session.untouched


@pytest.mark.parametrize("client", [False, True])
def test_explicit_save_forces_a_write_of_an_unchanged_session(client: bool) -> None:
    settings = make_settings()
    session = session_for(settings, loaded=True)
    plan = plan_for(session, settings, force=True, can_patch=True, self_contained=client)
    if client:
        assert plan.cookie == "send"
    else:
        assert plan.write == "patch" and plan.changed == {} and plan.removed == frozenset()


@pytest.mark.parametrize("client", [False, True])
def test_rolling_resends_the_cookie_of_a_loaded_session_on_both_sides(client: bool) -> None:
    settings = make_settings(rolling=True)
    session = session_for(settings, loaded=True)
    session.get("n")
    plan = plan_for(session, settings, self_contained=client)
    assert plan.cookie == "send" and plan.session_id == "sid"
    assert plan.write == "none"  # rolling re-sends the cookie; it does not rewrite the record
    if client:
        assert plan.record is not None and plan.record.meta.last_seen == NOW  # re-sealed with fresh deadlines


@pytest.mark.parametrize("client", [False, True])
def test_secure_cookie_over_plain_http_sets_nothing_and_stores_nothing(client: bool) -> None:
    settings = make_settings(cookie=Cookie(secure=True))
    session = session_for(settings, loaded=True)
    session.regenerate(keep_data=True)
    session["n"] = 3
    plan = plan_for(session, settings, secure=False, self_contained=client)
    assert plan.write == "none" and plan.cookie == "none" and plan.destroy == ()
    assert plan_for(session, settings, secure=True, self_contained=client).cookie == "send"


@pytest.mark.parametrize("client", [False, True])
@pytest.mark.parametrize(
    ("unset", "expected_cookie", "deletes"), [("keep", "none", False), ("destroy", "expire", True)]
)
def test_unset_session(unset: str, expected_cookie: str, deletes: bool, client: bool) -> None:
    settings = make_settings(unset=unset)
    session = session_for(settings, loaded=True)
    session["n"] = 9  # dropped either way: the handler removed the session
    plan = plan_for(session, settings, unset=True, self_contained=client)
    assert plan.write == "none" and plan.cookie == expected_cookie
    assert plan.destroy == (("sid",) if deletes and not client else ())


@pytest.mark.parametrize("client", [False, True])
def test_destroy_expires_the_cookie_and_deletes_the_record(client: bool) -> None:
    settings = make_settings()
    session = session_for(settings, loaded=True)
    session.destroy()
    plan = plan_for(session, settings, self_contained=client)
    assert plan.cookie == "expire" and plan.write == "none" and plan.cache_headers
    assert plan.destroy == (() if client else ("sid",))


def test_a_patch_that_finds_the_record_gone_never_resurrects_it() -> None:
    settings = make_settings(rolling=True)
    session = session_for(settings, loaded=True)
    session["n"] = 2
    first = plan_for(session, settings, can_patch=True)
    assert first.write == "patch"
    session.after_commit(first, record_gone=True)  # what the runtime reports when patch() returns False
    plan = plan_for(session, settings, can_patch=True, record_gone=True)
    assert plan.write == "none" and plan.destroy == () and plan.cookie == "expire"


def test_login_retires_the_old_id_and_sends_the_new_one() -> None:
    settings = make_settings()
    session = session_for(settings, loaded=True, data={"cart": [1]})
    session.login("42")
    plan = plan_for(session, settings, can_patch=True)
    assert plan.destroy == ("sid",) and plan.write == "set" and plan.cookie == "send"
    assert plan.session_id != "sid" and plan.record is not None
    assert plan.record.data == {"cart": [1]} and plan.record.meta.user_id == "42"


@pytest.mark.parametrize("client", [False, True])
def test_regenerate_to_an_empty_session_saves_nothing(client: bool) -> None:
    settings = make_settings()
    session = session_for(settings, loaded=True)
    session.regenerate()
    plan = plan_for(session, settings, self_contained=client)
    assert plan.write == "none" and plan.record is None
    if client:  # the old sealed cookie still opens by itself: it must go
        assert plan.cookie == "expire"
    else:  # the old record is deleted; the client's stale cookie then finds nothing
        assert plan.destroy == ("sid",) and plan.cookie == "none"


@pytest.mark.parametrize("client", [False, True])
def test_a_cookie_signed_with_an_older_secret_is_reissued_even_if_unused(client: bool) -> None:
    settings = make_settings()
    plan = plan_for(session_for(settings, loaded=True, stale_signature=True), settings, self_contained=client)
    assert plan.cookie == "send" and plan.session_id == "sid" and plan.write == "none"


def test_read_only_sessions_never_commit() -> None:
    settings = make_settings()
    session = session_for(settings, loaded=True, read_only=True)
    session.get("n")
    assert plan_for(session, settings, force=True) == Plan(cache_headers=True)


def test_cookie_pending_from_an_explicit_save_is_still_sent() -> None:
    settings = make_settings(cookie=Cookie(max_age=60))
    session = session_for(settings, loaded=True)
    session["n"] = 5
    saved = plan_for(session, settings, force=True, can_patch=True)
    assert saved.write == "patch" and saved.cookie == "send"
    session.after_commit(saved)  # save() wrote it; the response has not started yet
    end = plan_for(session, settings, can_patch=True)
    assert end.write == "none" and end.cookie == "send"


def test_delta_commit_carries_only_changed_and_removed_keys() -> None:
    settings = make_settings()
    session = session_for(settings, loaded=True, data={"a": [1], "b": 2, "c": 3, "untouched": {"x": 1}})
    session["a"].append(2)
    session["b"] = 2  # same value: not a change
    del session["c"]
    session["d"] = "new"
    plan = plan_for(session, settings, can_patch=True)
    assert plan.write == "patch"
    assert plan.changed == {"a": [1, 2], "d": "new"}
    assert plan.removed == {"c"}


def test_deadlines_in_the_saved_meta() -> None:
    settings = make_settings(idle_timeout=600, absolute_timeout=7200)
    session = session_for(settings, loaded=True)
    session["n"] = 5
    meta = plan_for(session, settings).record.meta  # type: ignore[union-attr]
    assert meta.created == NOW - 100 and meta.last_seen == NOW
    assert meta.idle_deadline == NOW + 600 and meta.absolute_deadline == NOW - 100 + 7200
    assert meta.expires == NOW + 600


def test_format_cookie_defaults_are_pinned_under_the_sessions_own() -> None:
    settings = make_settings()
    session = session_for(settings, loaded=False)
    session.cookie.max_age = 60
    plan = plan_for(session, settings, cookie_defaults={"express": {"secure": False}})
    assert plan.record is not None and plan.record.meta.cookie == {
        "express": {"secure": False},
        "max_age": 60.0,
    }


@pytest.mark.parametrize(
    ("unset", "destroyed", "destroys"),
    [
        (False, True, True),
        (True, False, False),
        (False, False, False),
    ],
)
def test_should_destroy(unset: bool, destroyed: bool, destroys: bool) -> None:
    settings = make_settings(unset="keep")
    assert engine.should_destroy(destroyed=destroyed, unset=unset, settings=settings) is destroys
    assert engine.should_destroy(
        destroyed=destroyed, unset=unset, settings=make_settings(unset="destroy")
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
    assert add_cache_headers(headers) == expected


@pytest.mark.parametrize("client", [False, True])
@pytest.mark.parametrize("resave", [False, True])
@pytest.mark.parametrize("rolling", [False, True])
@pytest.mark.parametrize("idle_for", [0.0, 59.0, 60.0, 600.0])
@pytest.mark.parametrize("secure_only", [False, True])
@pytest.mark.parametrize("max_age", [None, 3600])
def test_read_plans_nothing_agrees_with_decide(
    client: bool, resave: bool, rolling: bool, idle_for: float, secure_only: bool, max_age: int | None
) -> None:
    """Runtimes skip decide() for a loaded session that was only read when
    `read_plans_nothing` says so: then decide() must plan no store work and no cookie, only
    the cache headers; and when it says no, decide() must plan something more."""
    settings = make_settings(
        resave=resave,
        rolling=rolling,
        cookie=Cookie(secure=True if secure_only else "auto", max_age=max_age),
    )
    session = session_for(settings, loaded=True, last_seen=NOW - idle_for)
    assert session.get("n") == 1
    assert session.only_read
    meta = session.meta
    assert meta is not None
    plan = plan_for(session, settings, self_contained=client)
    nothing_more = not plan.store_work and plan.cookie == "none"
    if engine.read_plans_nothing(meta, settings, NOW):
        assert nothing_more and plan.cache_headers
    elif not secure_only:  # a Secure cookie over plain HTTP: decide() refuses everything anyway
        assert not nothing_more


@pytest.mark.parametrize(
    "act",
    [
        pytest.param(lambda s: s.__setitem__("n", 2), id="write"),
        pytest.param(lambda s: s.__setitem__("n", 1), id="write-same-value"),
        pytest.param(lambda s: s.get("cart"), id="container-handed-out"),
        pytest.param(lambda s: s.touch(), id="touch"),
        pytest.param(lambda s: s.mark_modified(), id="mark-modified"),
        pytest.param(lambda s: setattr(s.cookie, "max_age", 60), id="cookie-max-age"),
        pytest.param(lambda s: s.regenerate(keep_data=True), id="regenerate"),
        pytest.param(lambda s: s.destroy(), id="destroy"),
        pytest.param(lambda s: None, id="never-used"),
    ],
)
def test_only_read_is_false_after_anything_but_reading(act: Any) -> None:
    settings = make_settings()
    session = session_for(settings, loaded=True, data={"n": 1, "cart": [1]})
    session.get("n")
    assert session.only_read
    session = session_for(settings, loaded=True, data={"n": 1, "cart": [1]})
    act(session)
    assert not session.only_read


@pytest.mark.parametrize("how", ["new", "stale-signature", "read-only"])
def test_only_read_is_false_for_sessions_that_owe_more_than_a_read(how: str) -> None:
    settings = make_settings()
    session = session_for(
        settings, loaded=how != "new", stale_signature=how == "stale-signature", read_only=how == "read-only"
    )
    session.get("n")
    assert not session.only_read


# ---- the data-only commit: `engine.data_plan` (through `Session.data_plan`) against `decide` ----
def _loaded_for_data_plan(settings: Settings, meta_kind: str) -> Session:
    meta = Meta(created=NOW - 100, last_seen=NOW - 30, idle_deadline=NOW + 3600)
    if meta_kind == "user":
        meta = Meta(
            created=NOW - 100, last_seen=NOW - 30, idle_deadline=None, user_id="42", hints={"ua": "x"}
        )
    elif meta_kind == "max-age":
        meta = Meta(
            created=NOW - 100, last_seen=NOW - 30, absolute_deadline=NOW + 9, cookie={"max_age": 60.0}
        )
    return Session(
        settings=settings,
        serializer=DEFAULT_SERIALIZER,
        now=NOW,
        session_id="sid",
        data={"n": 1, "cart": [1], "gone": "x"},
        meta=meta,
    )


DATA_ACTS = {
    "write": lambda s: s.__setitem__("n", s.get("n", 0) + 1),
    "add": lambda s: s.__setitem__("new", {"a": 1}),
    "delete": lambda s: s.__delitem__("gone"),
    "mutate": lambda s: s["cart"].append(2),
    "mutate-through-get": lambda s: s.get("cart").append(2),
    "write-and-delete": lambda s: (s.__setitem__("n", 5), s.pop("gone")),
    "write-same-value": lambda s: s.__setitem__("n", 1),  # no change: data_plan declines
    "hand-out-unchanged": lambda s: s.get("cart"),  # no change: data_plan declines
}
NOT_DATA_ONLY = {
    "touch": lambda s: (s.__setitem__("n", 2), s.touch()),
    "regenerate": lambda s: (s.__setitem__("n", 2), s.regenerate(keep_data=True)),
    "login": lambda s: (s.__setitem__("n", 2), s.login("7")),
    "destroy": lambda s: s.destroy(),
    "destroy-then-write": lambda s: (s.destroy(), s.__setitem__("n", 2)),
    "cookie-max-age": lambda s: (s.__setitem__("n", 2), setattr(s.cookie, "max_age", 60)),
    "mark-modified": lambda s: (s.__setitem__("n", 2), s.mark_modified()),
}


@pytest.mark.parametrize("act", [*DATA_ACTS, *NOT_DATA_ONLY])
@pytest.mark.parametrize("meta_kind", ["plain", "user", "max-age"])
@pytest.mark.parametrize(
    ("rolling", "resave", "max_age", "secure_only", "timeouts"),
    [
        (False, False, None, False, "default"),
        (True, False, None, False, "default"),
        (False, True, 3600, False, "none"),
        (True, True, 3600, True, "absolute"),
        (False, False, 3600, True, "none"),
    ],
)
@pytest.mark.parametrize("can_patch", [False, True])
@pytest.mark.parametrize("secure", [False, True])
@pytest.mark.parametrize("defaults", [{}, {"express": True}])
def test_data_plan_agrees_with_decide(
    act: str,
    meta_kind: str,
    rolling: bool,
    resave: bool,
    max_age: int | None,
    secure_only: bool,
    timeouts: str,
    can_patch: bool,
    secure: bool,
    defaults: dict[str, Any],
) -> None:
    """The server-side runtime skips `snapshot()` and `decide()` when `Session.data_plan`
    answers a plan: it must be the very plan `decide` makes, and it answers only for a loaded
    session whose request changed some data and nothing else."""
    from datetime import timedelta

    extra: dict[str, Any] = {}
    if timeouts == "none":
        extra = {"idle_timeout": None, "absolute_timeout": None}
    elif timeouts == "absolute":
        extra = {"idle_timeout": timedelta(minutes=5), "absolute_timeout": timedelta(hours=1)}
    settings = make_settings(
        rolling=rolling,
        resave=resave,
        cookie=Cookie(secure=True if secure_only else "auto", max_age=max_age),
        **extra,
    )
    session = _loaded_for_data_plan(settings, meta_kind)
    (DATA_ACTS | NOT_DATA_ONLY)[act](session)
    fast = session.data_plan(NOW, defaults, can_patch)
    general = decide(
        session.snapshot(),
        settings,
        Facts(now=NOW, secure=secure, can_patch=can_patch, cookie_defaults=defaults),
    )
    if act in NOT_DATA_ONLY or act in ("write-same-value", "hand-out-unchanged"):
        assert fast is None
        return
    assert fast is not None
    if secure_only and not secure:  # the runtime asks data_plan only when the cookie may be sent
        assert general == Plan(cache_headers=True)
        return
    assert fast == general
    assert fast.write == ("patch" if can_patch else "set")


def test_data_plan_declines_read_only_and_stale_sessions() -> None:
    settings = make_settings()
    for session in (
        session_for(settings, loaded=False, read_only=True),
        session_for(settings, loaded=True, read_only=True),
        session_for(settings, loaded=True, stale_signature=True),
    ):
        try:
            session["n"] = 5
        except RuntimeError:  # read-only
            session.get("n")
        assert session.data_plan(NOW, {}, True) is None


NEW_ACTS = {
    "write": lambda s: s.__setitem__("n", s.get("n", 0) + 1),
    "add-two": lambda s: s.update({"user": "bench", "cart": [1]}),
    "id-read-then-write": lambda s: (s.id, s.__setitem__("n", 1)),
    "destroy-then-write": lambda s: (s.destroy(), s.__setitem__("n", 2)),
    "add-then-delete": lambda s: (s.__setitem__("n", 1), s.__delitem__("n")),  # no change: declines
    "touch": lambda s: (s.__setitem__("n", 1), s.touch()),  # declines
    "login": lambda s: (s.__setitem__("n", 1), s.login("7")),  # declines
    "cookie-max-age": lambda s: (s.__setitem__("n", 1), setattr(s.cookie, "max_age", 60)),  # declines
    "regenerate": lambda s: (s.__setitem__("n", 1), s.regenerate(keep_data=True)),  # declines
}
NEW_DECLINED = {"add-then-delete", "touch", "login", "cookie-max-age", "regenerate"}


@pytest.mark.parametrize("act", list(NEW_ACTS))
@pytest.mark.parametrize(("rolling", "save_uninitialized"), [(False, False), (True, True)])
@pytest.mark.parametrize("max_age", [None, 3600])
@pytest.mark.parametrize("secure", [False, True])
@pytest.mark.parametrize("defaults", [{}, {"express": True}])
@pytest.mark.parametrize("hints", [None, {"ua": "wrk", "ip": "127.0.0.1"}])
def test_data_plan_of_a_new_session_agrees_with_decide(
    act: str,
    rolling: bool,
    save_uninitialized: bool,
    max_age: int | None,
    secure: bool,
    defaults: dict[str, Any],
    hints: dict[str, str] | None,
) -> None:
    """A new session's first write (a first visit): `Session.data_plan` answers `decide`'s
    plan, hints and all, and declines whenever the request did more than write data."""
    settings = make_settings(
        rolling=rolling, save_uninitialized=save_uninitialized, cookie=Cookie(max_age=max_age)
    )
    session = session_for(settings, loaded=False)
    NEW_ACTS[act](session)
    fast = session.data_plan(NOW, defaults, True, hints)
    general = decide(
        session.snapshot(),
        settings,
        Facts(now=NOW, secure=secure, can_patch=True, cookie_defaults=defaults, hints=hints),
    )
    if act in NEW_DECLINED:
        assert fast is None
        return
    assert fast is not None
    assert fast == general
    assert (fast.write, fast.cookie) == ("set", "send")
