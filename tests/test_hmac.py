"""The precomputed HMAC-SHA256 used by the Keyring and signed cookie frames."""

from __future__ import annotations

import hmac
import os

from hypothesis import given
from hypothesis import strategies as st

from coatcheck._hmac import HmacSha256


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_precomputed_hmac_equals_the_standard_library(key: bytes, data: bytes) -> None:
    assert HmacSha256(key).digest(data) == hmac.digest(key, data, "sha256")


def test_precomputed_hmac_is_reusable_and_key_bound() -> None:
    key = os.urandom(32)
    mac = HmacSha256(key)
    for data in (b"", b"a", b"a" * 63, b"a" * 64, b"a" * 65, os.urandom(5000), b"a"):
        assert mac.digest(data) == hmac.digest(key, data, "sha256")
    for length in (0, 1, 32, 63, 64, 65, 128, 1000):
        other = os.urandom(length)
        assert HmacSha256(other).digest(b"x") == hmac.digest(other, b"x", "sha256")
        assert HmacSha256(other).digest(b"x") != mac.digest(b"x")
