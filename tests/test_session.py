"""The Session mapping: change tracking and intents, without a server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coatcheck.codec import DEFAULT_SERIALIZER
from coatcheck.masking import tokens_match
from coatcheck.record import Meta
from coatcheck.session import CSRF_KEY, FLASH_PREFIX, Flash, Session
from tests.helpers import make_settings

NOW = 1_800_000_000.0


def loaded(data: dict) -> Session:
    return Session(
        settings=make_settings(),
        serializer=DEFAULT_SERIALIZER,
        now=NOW,
        session_id="sid",
        data=data,
        meta=Meta(created=NOW, last_seen=NOW),
    )


def test_nested_mutation_is_a_change_of_that_key_only() -> None:
    s = loaded({"cart": [1], "other": {"a": 1}})
    s["cart"].append(2)
    assert s.changes() == ({"cart": [1, 2]}, set())
    assert s.modified


def test_reading_is_not_a_change() -> None:
    s = loaded({"cart": [1], "d": {"x": [1, 2]}})
    _ = s["cart"], dict(s.items()), list(s.values()), "d" in s, len(s)
    assert not s.modified


def test_assigning_an_equal_value_is_not_a_change() -> None:
    s = loaded({"n": 1, "l": [1, 2]})
    s["n"] = 1
    s["l"] = [1, 2]
    assert not s.modified


def test_deleting_and_clearing_are_removals() -> None:
    s = loaded({"a": 1, "b": 2})
    del s["a"]
    assert s.changes() == ({}, {"a"})
    s.clear()
    assert s.changes() == ({}, {"a", "b"})


def test_mapping_api() -> None:
    s = loaded({"a": 1})
    assert s.get("missing", 5) == 5 and s.setdefault("b", []) == [] and s.pop("a") == 1
    s.update({"c": 3}, d=4)
    assert dict(s) == {"b": [], "c": 3, "d": 4} and s == {"b": [], "c": 3, "d": 4}
    with pytest.raises(KeyError):
        s.pop("zzz")
    with pytest.raises(TypeError):
        s[1] = "x"  # type: ignore[index]


def test_non_json_values_are_reported_with_the_key() -> None:
    s = loaded({"when": 1})
    s["when"] = object()
    s2 = loaded({"when": []})
    s2["when"].append(object())
    with pytest.raises(TypeError, match="when"):
        s2.changes()


def test_new_session_id_is_created_lazily_and_is_stable() -> None:
    s = Session(settings=make_settings(), serializer=DEFAULT_SERIALIZER, now=NOW)
    assert s._id is None
    assert s.id == s.id and len(s.id) == 43 and s.is_new


def test_login_keeps_data_binds_user_and_rotates_csrf() -> None:
    s = loaded({"cart": [1]})
    token = s.csrf_token
    s.login(7)
    assert s.id != "sid" and s.user_id == "7" and s["cart"] == [1] and s.is_new
    assert s.csrf_token != token
    assert s._retired_ids == ["sid"]


def test_regenerate_without_keep_drops_data_and_user() -> None:
    s = loaded({"cart": [1]})
    s.login("u")
    s.regenerate()
    assert dict(s) == {} and s.user_id is None


def test_destroy_then_write_starts_fresh() -> None:
    s = loaded({"a": 1})
    s.destroy()
    assert dict(s) == {} and s._destroyed
    s["flash"] = "bye"
    assert not s._destroyed and s.id != "sid" and s.is_new and s._retired_ids == ["sid"]


def test_cookie_max_age_is_per_session() -> None:
    s = loaded({})
    assert s.cookie.max_age is None and s.cookie.original_max_age is None and s.cookie.expires is None
    s.cookie.max_age = timedelta(days=30)
    assert s.cookie.max_age == timedelta(days=30) and s.modified
    assert s.cookie.expires is not None and s.cookie.original_max_age is None
    with pytest.raises(ValueError):
        s.cookie.max_age = -5


def test_flashes_are_get_and_clear_by_category() -> None:
    s = loaded({})
    s.flash("saved", "success")
    s.flash("careful", "warning")
    s.flash("also saved", "success")
    assert s.flashes("success") == [Flash("success", "saved"), Flash("success", "also saved")]
    assert [str(f) for f in s.flashes()] == ["careful"]
    assert s.flashes() == [] and not any(k.startswith(FLASH_PREFIX) for k in s)


def test_csrf_token_is_freshly_masked_on_every_access_and_every_one_validates() -> None:
    s = loaded({})
    first, second = s.csrf_token, s.csrf_token
    assert first != second  # a new mask per access: nothing for a compression attack to find
    secret = s[CSRF_KEY]
    assert secret not in (first, second)  # the synchronizer secret never leaves unmasked
    assert tokens_match(secret, first) and tokens_match(secret, second)
    assert s.csrf_token != secret and tokens_match(s[CSRF_KEY], s.csrf_token)


def test_read_only_session_refuses_writes() -> None:
    s = Session(settings=make_settings(), serializer=DEFAULT_SERIALIZER, now=NOW, read_only=True)
    with pytest.raises(RuntimeError, match="read-only"):
        s["a"] = 1
    with pytest.raises(RuntimeError, match="read-only"):
        s.destroy()
