from __future__ import annotations

import base64
import os
import random
import secrets
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from coatcheck.cli import cli
from coatcheck.crypto import MIN_SECRET_BITS, Keyring, estimated_bits, new_session_id, storage_key
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
        (secrets.token_hex(16), True),
        (secrets.token_hex(15), False),
        ("a" * 100, False),
        ("ab" * 100, False),
        ("correct horse battery staple", False),
    ],
)
def test_entropy_estimate(secret: str | bytes, strong: bool) -> None:
    raw = secret.encode() if isinstance(secret, str) else secret
    assert (estimated_bits(raw) >= MIN_SECRET_BITS) is strong


# Issue 14, item 5: each of these was accepted by the old length-and-alphabet estimate.
WRONGLY_ACCEPTED: list[str | bytes] = [
    b"\x00" * 32,
    "\x00" * 32,
    b"\xff" * 32,
    "\u00e9" * 16,
    "a" * 85 + "b",
    "changeme" * 10 + "X",
    "0123456789abcdef" * 5 + "0",
    "x" * 64 + "Aa1!zz",
    "please change this secret before you deploy to production",
    "Change-This-Secret-Key-Before-You-Go-Live",
    "this is a very long development secret, replace it in production",
    "correct horse battery staple " * 2,
]


@pytest.mark.parametrize("secret", WRONGLY_ACCEPTED, ids=lambda s: repr(s)[:24])
def test_repetitive_low_diversity_and_passphrase_secrets_are_refused(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="coatcheck secret"):
        Keyring(secret)
    Keyring(secret, insecure_dev_secret=True)  # the opt-in still lets a developer use one


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# What secrets/os.urandom return, drawn from a seeded generator so every run checks the same keys.
RANDOM_KEYS: dict[str, Callable[[random.Random], str | bytes]] = {
    "os.urandom(16)": lambda rng: rng.randbytes(16),
    "secrets.token_bytes(32)": lambda rng: rng.randbytes(32),
    "secrets.token_hex(16)": lambda rng: rng.randbytes(16).hex(),
    "secrets.token_hex(16).upper()": lambda rng: rng.randbytes(16).hex().upper(),
    "secrets.token_urlsafe(16)": lambda rng: _b64url(rng.randbytes(16)),
    "coatcheck secret": lambda rng: _b64url(rng.randbytes(32)),
}


@pytest.mark.parametrize("kind", RANDOM_KEYS)
def test_every_random_128_bit_key_passes(kind: str) -> None:
    rng = random.Random(f"coatcheck issue 14: {kind}")
    keys = [RANDOM_KEYS[kind](rng) for _ in range(2000)]
    refused = [k for k in keys if estimated_bits(k.encode() if isinstance(k, str) else k) < MIN_SECRET_BITS]
    assert refused == []


def test_real_random_keys_and_the_cli_secret_are_accepted() -> None:
    printed = CliRunner().invoke(cli, ["secret"]).output.strip()
    for key in (
        os.urandom(16),
        secrets.token_hex(16),
        secrets.token_urlsafe(16),
        secrets.token_bytes(32),
        printed,
    ):
        Keyring(key)


def test_a_random_key_under_128_bits_is_refused_with_its_estimate() -> None:
    fifteen_bytes = random.Random("coatcheck issue 14: 120 bits").randbytes(15).hex()
    with pytest.raises(ConfigurationError, match="about 120 bits; at least 128 are required"):
        Keyring(fifteen_bytes)


def test_storage_key_is_a_hash_not_the_id() -> None:
    sid = new_session_id()
    assert storage_key(sid) != sid and len(storage_key(sid)) == 64 and sid not in storage_key(sid)


def test_derived_keys_differ_per_purpose_and_secret() -> None:
    keyring = Keyring([secrets.token_urlsafe(32), secrets.token_urlsafe(32)])
    a, b = keyring.derive("seal"), keyring.derive("sign")
    assert len(a) == 2 and a[0] != a[1] and a[0] != b[0] and len(a[0]) == 32
