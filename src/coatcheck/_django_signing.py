"""`django.core.signing`'s object format, implemented without Django.

A signed object (what `signing.dumps(obj, salt=..., compress=True)` returns and the session
backends store) is::

    <payload>:<timestamp>:<signature>

- payload: the JSON (compact separators, ASCII-only, as Django's `JSONSerializer` writes it)
  in base64url without padding; when zlib makes it shorter by more than one byte, the
  compressed bytes are encoded instead and the payload is prefixed with ``.``;
- timestamp: Unix seconds in base 62 (digits, upper case, lower case);
- signature: base64url (unpadded) HMAC-SHA256 of ``<payload>:<timestamp>`` under the key
  ``SHA-256(salt + "signer" + secret)`` (Django's `salted_hmac` with the `Signer`'s salt).

Verification tries the first secret (``SECRET_KEY``) and then every fallback
(``SECRET_KEY_FALLBACKS``) in constant time. Decompression is capped, since Django's own
`loads` would inflate whatever the payload says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MAX_SIGNED = 1 << 20  # longest signed value we will look at (1 MiB of session_data)
MAX_INFLATED = 4 << 20  # most bytes a compressed payload may inflate to
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Unsigned(NamedTuple):
    """A verified signed object: its value, when it was signed, and which secret verified it."""

    value: Any
    timestamp: int
    key_index: int


def b62_encode(number: int) -> str:
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    number = abs(number)
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return sign + "".join(reversed(digits))


def b62_decode(text: str) -> int | None:
    """The number, or None for anything that is not base 62 (at most 12 digits)."""
    sign = 1
    if text.startswith("-"):
        sign, text = -1, text[1:]
    if not text or len(text) > 12:
        return None
    number = 0
    for char in text:
        digit = BASE62.find(char)
        if digit < 0:
            return None
        number = number * 62 + digit
    return sign * number


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    raw = text.encode("ascii")
    if not raw or any(c not in _B64 for c in raw):
        return None
    try:
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        return None


def json_bytes(value: Any) -> bytes:
    """JSON exactly as Django's `signing.JSONSerializer` writes it (Django reads it back as
    Latin-1, so it must stay ASCII: non-ASCII characters are escaped)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


class DjangoSigner:
    """`TimestampSigner(salt=salt)` with SHA-256 over `keys` (first signs, all verify)."""

    def __init__(self, keys: Sequence[bytes], salt: str) -> None:
        if not keys:
            raise ValueError("DjangoSigner needs at least one secret")
        self.salt = salt
        prefix = (salt + "signer").encode()
        self._keys = [hashlib.sha256(prefix + key).digest() for key in keys]

    def _signature(self, value: str, key: bytes) -> str:
        return _b64(hmac.digest(key, value.encode("ascii"), "sha256"))

    def sign_object(self, value: Any, *, now: float | None = None, compress: bool = True) -> str:
        """`signing.dumps(value, salt=..., compress=compress)`."""
        data = json_bytes(value)
        payload = _b64(data)
        if compress:
            packed = zlib.compress(data)
            if len(packed) < len(data) - 1:
                payload = "." + _b64(packed)
        stamped = f"{payload}:{b62_encode(int(time.time() if now is None else now))}"
        return f"{stamped}:{self._signature(stamped, self._keys[0])}"

    def unsign_object(self, signed: str | bytes) -> Unsigned | None:
        """The verified object, or None if the value is malformed, forged, signed for another
        salt or secret, or inflates beyond the cap. Never raises on hostile input."""
        if isinstance(signed, bytes):
            try:
                signed = signed.decode("ascii")
            except UnicodeDecodeError:
                return None
        if len(signed) > MAX_SIGNED:
            return None
        stamped, sep, signature = signed.rpartition(":")
        payload, sep2, stamp = stamped.rpartition(":")
        if not sep or not sep2 or not signature.isascii() or not stamped.isascii():
            return None
        key_index = self._verify(stamped, signature)
        timestamp = b62_decode(stamp)
        if key_index is None or timestamp is None:
            return None
        value = _decode_payload(payload)
        return None if value is _INVALID else Unsigned(value, timestamp, key_index)

    def _verify(self, stamped: str, signature: str) -> int | None:
        found = None
        expected = signature.encode("ascii")
        for index, key in enumerate(self._keys):
            # every key is tried, so the time taken does not say which one matched
            if hmac.compare_digest(self._signature(stamped, key).encode("ascii"), expected) and found is None:
                found = index
        return found


_INVALID = object()


def _decode_payload(payload: str) -> Any:
    compressed = payload.startswith(".")
    raw = _unb64(payload[1:] if compressed else payload)
    if raw is None:
        return _INVALID
    if compressed:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(raw, MAX_INFLATED)
        except zlib.error:
            return _INVALID
        if inflater.unconsumed_tail or not inflater.eof:
            return _INVALID
    try:
        return json.loads(raw.decode("latin-1"))
    except (ValueError, RecursionError):
        return _INVALID
