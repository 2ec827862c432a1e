"""coatcheck's django.core.signing against Django's, and on hostile input."""

from __future__ import annotations

import time

import pytest
from django.core import signing

from coatcheck._django_signing import MAX_INFLATED, MAX_SIGNED, DjangoSigner, b62_decode, b62_encode
from tests.djangoapp.project import OLD_SECRET_KEY, SECRET_KEY

SALT = "django.contrib.sessions.SessionStore"


def signer() -> DjangoSigner:
    return DjangoSigner([SECRET_KEY.encode(), OLD_SECRET_KEY.encode()], SALT)


@pytest.mark.parametrize(
    "value", [{}, {"a": 1}, {"list": list(range(300))}, {"text": "ünï \u2603 \U0001f600", "none": None}]
)
def test_each_side_opens_what_the_other_signs(value: dict[str, object]) -> None:
    assert signer().unsign_object(signing.dumps(value, salt=SALT, compress=True)).value == value  # type: ignore[union-attr]
    assert signing.loads(signer().sign_object(value), salt=SALT) == value


def test_compression_is_used_exactly_when_django_uses_it() -> None:
    for value in ({"a": 1}, {"list": [0] * 200}):
        assert signer().sign_object(value).startswith(".") == signing.dumps(
            value, salt=SALT, compress=True
        ).startswith(".")


def test_timestamp_and_key_index_are_reported() -> None:
    old = signing.dumps({"a": 1}, key=OLD_SECRET_KEY, salt=SALT)
    opened = signer().unsign_object(old)
    assert opened is not None and opened.key_index == 1
    assert abs(opened.timestamp - time.time()) < 5


def test_base62_round_trips_like_django() -> None:
    for number in (0, 1, 61, 62, 1_796_225_913, -5):
        assert b62_encode(number) == signing.b62_encode(number)
        assert b62_decode(signing.b62_encode(number)) == number
    assert b62_decode("not base 62!") is None


def test_a_payload_inflating_past_the_cap_is_refused() -> None:
    bomb = signing.dumps({"a": "x" * (MAX_INFLATED + 1)}, salt=SALT, compress=True)
    assert len(bomb) < 20_000  # tiny on the wire
    assert signer().unsign_object(bomb) is None


def _tampered(signed: str) -> str:
    """`signed` with the last character of its signature replaced by another one."""
    return signed[:-1] + ("B" if signed.endswith("A") else "A")


@pytest.mark.parametrize(
    "value",
    [
        "",
        ":",
        "::",
        "a:b:c",
        "é:1:x",
        b"\xff\xfe:1:x",
        "x" * (MAX_SIGNED + 1),
        signing.dumps({"a": 1}, salt="another salt"),
        signing.dumps({"a": 1}, key="another key", salt=SALT),
        _tampered(signing.dumps([1, 2], salt=SALT)),
    ],
)
def test_hostile_values_are_refused_without_raising(value: str | bytes) -> None:
    assert signer().unsign_object(value) is None
