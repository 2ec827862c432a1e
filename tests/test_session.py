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
    assert s._retired_ids == ("sid",)


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
    assert not s._destroyed and s.id != "sid" and s.is_new and s._retired_ids == ("sid",)


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


class CountingSerializer:
    """The default serializer, counting calls: change tracking must not serialize needlessly."""

    def __init__(self) -> None:
        self.dumped = 0

    def dumps(self, value: object) -> bytes:
        self.dumped += 1
        return DEFAULT_SERIALIZER.dumps(value)

    def loads(self, data: bytes) -> object:
        return DEFAULT_SERIALIZER.loads(data)


def loaded_counting(data: dict) -> tuple[Session, CountingSerializer]:
    serializer = CountingSerializer()
    session = Session(
        settings=make_settings(),
        serializer=serializer,
        now=NOW,
        session_id="sid",
        data=data,
        meta=Meta(created=NOW, last_seen=NOW),
    )
    return session, serializer


def test_reading_immutable_values_serializes_nothing_at_read_or_commit() -> None:
    s, serializer = loaded_counting({"n": 1, "name": "x", "f": 1.5, "none": None, "flag": True})
    _ = s["n"], s.get("name"), s["f"], s["none"], s["flag"], dict(s.items())
    snapshot = s.snapshot()
    assert serializer.dumped == 0
    assert snapshot.accessed and not snapshot.modified and snapshot.data == dict(s.items())


def test_read_only_session_snapshot_carries_its_cookie_and_user() -> None:
    s = Session(
        settings=make_settings(),
        serializer=DEFAULT_SERIALIZER,
        now=NOW,
        session_id="sid",
        data={"n": 1},
        meta=Meta(created=NOW, last_seen=NOW, user_id="42", cookie={"max_age": 60.0}),
    )
    _ = s["n"]
    snapshot = s.snapshot()
    assert not snapshot.modified and snapshot.user_id == "42"
    assert snapshot.max_age == 60.0 and snapshot.cookie_overrides == {"max_age": 60.0}


def test_container_mutated_after_a_scalar_read_is_a_change() -> None:
    s, serializer = loaded_counting({"n": 1, "cart": [1]})
    _ = s["n"]
    s["cart"].append(2)
    assert s.changes() == ({"cart": [1, 2]}, set())
    assert serializer.dumped == 2  # the cart: its baseline when read, its value at commit


def test_overwriting_a_scalar_compares_by_serialized_value_when_not_identical() -> None:
    s = loaded({"n": 1, "zero": 0.0, "s": "a", "b": True})
    s["n"] = 1  # same value: no change
    s["s"] = "".join(["a"])  # equal, not identical: no change
    s["zero"] = -0.0  # equal as floats, but it serializes differently
    s["b"] = 1  # equal to True, but another type and another JSON value
    assert s.changes() == ({"zero": -0.0, "b": 1}, set())


def test_overwriting_a_scalar_by_another_of_its_type_is_a_change_without_serializing() -> None:
    s, serializer = loaded_counting({"n": 1, "name": "a", "flag": True, "gone": 1})
    s["n"] = s["n"] + 1
    s["name"] = "b"
    s["flag"] = False
    del s["gone"]
    assert s.changes() == ({"n": 2, "name": "b", "flag": False}, {"gone"})
    assert serializer.dumped == 0  # unequal values of one plain type never serialize alike


def test_replacing_a_scalar_by_a_container_and_mutating_it_is_a_change() -> None:
    s = loaded({"n": 1})
    s["n"] = items = []
    items.append(1)
    assert s.changes() == ({"n": [1]}, set())
