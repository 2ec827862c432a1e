from __future__ import annotations

import secrets

import pytest

from coatcheck.crypto import Keyring, estimated_bits, new_session_id, storage_key
from coatcheck.errors import ConfigurationError


def test_express_session_wire_format_vector() -> None:
    keyring = Keyring("keyboard cat", insecure_dev_secret=True)
    assert keyring.sign_id("apple") == "s%3Aapple.D8Y%2BpkTAmeR0PobOhY4G97PRW%2Bj7bUnP%2F5m6%2FOn1MCU"
    assert keyring.unsign_id(b"s%3Aapple.D8Y%2BpkTAmeR0PobOhY4G97PRW%2Bj7bUnP%2F5m6%2FOn1MCU") == "apple"


def test_ids_are_256_bit_base64url_and_unique() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(
        len(i) == 43 and set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for i in ids
    )


def test_first_secret_signs_every_secret_verifies() -> None:
    new, old = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    signed_with_old = Keyring(old).sign_id("abc").encode()
    rotated = Keyring([new, old])
    assert rotated.unsign_id(signed_with_old) == "abc"
    assert rotated.sign_id("abc") == Keyring(new).sign_id("abc")
    assert Keyring(new).unsign_id(signed_with_old) is None


@pytest.mark.parametrize(
    "value",
    [b"", b"abc", b"s:abc", b"s%3Aabc.", b"s%3A.mac", b"%E0%A4%A", b"s%3A%FF.x", b"s:" + b"a" * 600 + b".x"],
)
def test_malformed_values_unsign_to_none(value: bytes) -> None:
    assert Keyring(secrets.token_urlsafe(32)).unsign_id(value) is None


def test_weak_secrets_are_refused_with_instructions() -> None:
    with pytest.raises(ConfigurationError, match="coatcheck secret"):
        Keyring("keyboard cat")
    with pytest.raises(ConfigurationError, match="secret #2 is too weak"):
        Keyring([secrets.token_urlsafe(32), "password123"])


def test_weak_secret_allowed_only_with_the_dev_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    Keyring("keyboard cat", insecure_dev_secret=True)
    assert "weak" in caplog.text and "keyboard cat" not in caplog.text


@pytest.mark.parametrize(
    ("secret", "strong"),
    [
        (secrets.token_urlsafe(32), True),
        (secrets.token_hex(32), True),
        (secrets.token_bytes(32), True),
        (secrets.token_hex(16), False),
        ("a" * 100, False),
        ("ab" * 100, False),
        ("correct horse battery staple", False),
    ],
)
def test_entropy_estimate(secret: str | bytes, strong: bool) -> None:
    raw = secret.encode() if isinstance(secret, str) else secret
    assert (estimated_bits(raw) >= 256) is strong


def test_storage_key_is_a_hash_not_the_id() -> None:
    sid = new_session_id()
    assert storage_key(sid) != sid and len(storage_key(sid)) == 64 and sid not in storage_key(sid)


def test_derived_keys_differ_per_purpose_and_secret() -> None:
    keyring = Keyring([secrets.token_urlsafe(32), secrets.token_urlsafe(32)])
    a, b = keyring.derive("seal"), keyring.derive("sign")
    assert len(a) == 2 and a[0] != a[1] and a[0] != b[0] and len(a[0]) == 32
