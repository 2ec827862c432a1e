"""Primitives for client-side sessions: AEAD sealing, HMAC signing, keygrip compatibility.

Sealed and signed cookie values share one frame, base64url-encoded without padding::

    offset  size  field
    0       1     version: 0x01 sealed (AES-256-GCM), 0x02 signed (HMAC-SHA256)
    1       1     flags: bit 0 = payload deflated (raw DEFLATE); other bits must be 0
    2       4     expiry: Unix seconds, big-endian uint32, rounded up; 0 = no deadline
    sealed: 6  12 nonce (random per seal) | ciphertext (len = payload) | 16 GCM tag
    signed: 6  n  payload | 32 HMAC-SHA256 over context + frame-without-mac

The authenticated data (sealed) or MAC input prefix (signed) is
`b"coatcheck/cookie\\x00" + cookie name + b"\\x00" + the 6 header bytes`, so a value is
bound to its cookie name, its version, its flags and its expiry: moving it to another
cookie name, or editing the clear-text expiry, makes it fail to open. The expiry is in
clear so expired cookies are rejected before any decryption; the payload repeats the
exact deadlines and the caller checks them too.

Everything here is pure and never raises on hostile input: `open` returns None. `seal`
refuses (SessionTooLarge) a payload over `MAX_PAYLOAD`, which `open` would refuse to
inflate: a compressible session is never written only to be lost on the next request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import re
import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._hmac import HmacSha256
from .errors import SessionTooLarge

SEALED = 0x01
SIGNED = 0x02
FLAG_DEFLATED = 0x01
NONCE_BYTES = 12
TAG_BYTES = 16
MAC_BYTES = 32
HEADER = struct.Struct(">BBI")  # version, flags, expiry
MAX_EXPIRY = 0xFFFFFFFF
MAX_PAYLOAD = 1 << 20  # inflated payloads above 1 MiB are refused (defence in depth)
# Below this, deflate is not tried: setting up zlib costs more CPU than the rest of a seal,
# and a payload this small saves at most a few dozen bytes of cookie.
MIN_DEFLATE = 192
_CONTEXT = b"coatcheck/cookie\x00"
_B64URL = re.compile(rb"^[A-Za-z0-9_-]*\Z")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_PACK = HEADER.pack
_b2a = binascii.b2a_base64
_urandom = os.urandom


class Opened(NamedTuple):
    """A successfully opened value: the payload, which key (0 = current) opened it, and the
    frame's clear-text expiry (Unix seconds, 0 = none)."""

    payload: bytes
    key_index: int
    expiry: int = 0


class FrameCodec(Protocol):
    """Turns a payload into a cookie value bound to a cookie name and an expiry, and back."""

    def seal(self, payload: bytes, *, name: str, expires: float | None) -> str:
        """The cookie value for `payload`, made with the first key."""

    def open(self, value: bytes, *, name: str, now: float) -> Opened | None:
        """The payload, if `value` was made by any key for `name` and has not expired."""


# ---- encodings ------------------------------------------------------------------------------
def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def b64url_decode(text: bytes) -> bytes | None:
    """Strict inverse of `b64url_encode`: only the canonical encoding of some bytes decodes,
    so no two cookie values carry the same frame. None for anything else."""
    if len(text) % 4 == 1 or not _B64URL.match(text):
        return None
    try:
        data = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Unused low bits of the last character must be zero (canonical form).
    return data if b64url_encode(data).encode("ascii") == text else None


def deflate(payload: bytes) -> bytes | None:
    """Raw DEFLATE of `payload`, or None when it would not be smaller."""
    if len(payload) < MIN_DEFLATE:
        return None
    # A window just larger than the payload compresses it as well as the full 32 KiB one,
    # and zlib then sets up ~2 KiB instead of ~300 KiB of state: 5x quicker for a cookie.
    wbits = min(15, max(9, (len(payload) - 1).bit_length()))
    packer = zlib.compressobj(9, zlib.DEFLATED, -wbits, min(8, wbits - 5))
    packed = packer.compress(payload) + packer.flush()
    return packed if len(packed) < len(payload) else None


def inflate(packed: bytes, limit: int = MAX_PAYLOAD) -> bytes | None:
    """Inverse of `deflate`, refusing output above `limit` bytes or trailing garbage."""
    unpacker = zlib.decompressobj(wbits=-15)
    try:
        out = unpacker.decompress(packed, limit + 1)
        if unpacker.unconsumed_tail or not unpacker.eof or unpacker.unused_data:
            return None
    except zlib.error:
        return None
    return out if len(out) <= limit else None


def expiry_field(expires: float | None) -> int:
    """The clear-text expiry: whole seconds rounded up, 0 for none, clamped to uint32."""
    if expires is None:
        return 0
    return min(max(math.ceil(expires), 1), MAX_EXPIRY)


class _Prefixes(dict[str, bytes]):
    """The authenticated context before the header (`_CONTEXT + name + b"\\x00"`), per cookie
    name: built once per name (a middleware uses one or two), not per seal or open.
    Bounded: cleared when it grows past 64 names."""

    def __missing__(self, name: str) -> bytes:
        if len(self) >= 64:
            self.clear()
        prefix = self[name] = _CONTEXT + name.encode("latin-1") + b"\x00"
        return prefix


def _frame_header(version: int, payload: bytes, expires: float | None, compress: bool) -> tuple[bytes, bytes]:
    """(header, body) of a frame of `payload`: deflated if that is worth it."""
    if len(payload) < MIN_DEFLATE:  # the common small session: `expiry_field` inline, no deflate
        if expires is None:
            expiry = 0
        else:
            expiry = math.ceil(expires)
            expiry = 1 if expiry < 1 else MAX_EXPIRY if expiry > MAX_EXPIRY else expiry
        return _PACK(version, 0, expiry), payload
    if len(payload) > MAX_PAYLOAD:
        raise SessionTooLarge(
            f"the client-side session is {len(payload)} bytes serialized, above the 1 MiB "
            f"({MAX_PAYLOAD} bytes) a cookie may hold once inflated: store less in the session, "
            "or use a server-side store"
        )
    packed = deflate(payload) if compress else None
    flags = FLAG_DEFLATED if packed is not None else 0
    return HEADER.pack(version, flags, expiry_field(expires)), packed if packed is not None else payload


def _parse_frame(
    value: bytes, version: int, overhead: int, now: float
) -> tuple[bytes, int, bytes, int] | None:
    """(header bytes, flags, body, expiry) of a live frame of `version`, or None."""
    frame = b64url_decode(value)
    if frame is None or len(frame) < HEADER.size + overhead:
        return None
    got_version, flags, expiry = HEADER.unpack_from(frame)
    if got_version != version or flags & ~FLAG_DEFLATED:
        return None
    if expiry and now >= expiry:
        return None
    return frame[: HEADER.size], flags, frame[HEADER.size :], expiry


def _payload(flags: int, body: bytes) -> bytes | None:
    return inflate(body) if flags & FLAG_DEFLATED else body


# ---- sealed: AES-256-GCM ----------------------------------------------------------------------
class Sealer:
    """AES-256-GCM frames. The first key seals; every key opens (rotation).

    Each seal draws a fresh random 96-bit nonce: safe for far more seals per key than any
    site makes between rotations (NIST's bound for random nonces is 2**32 per key).
    """

    def __init__(self, keys: Sequence[bytes], *, compress: bool = True) -> None:
        if not keys or any(len(k) != 32 for k in keys):
            raise ValueError("Sealer needs one or more 32-byte keys")
        self._ciphers = [AESGCM(k) for k in keys]
        self._encrypt = self._ciphers[0].encrypt
        self._prefixes = _Prefixes()
        self.compress = compress

    def seal(self, payload: bytes, *, name: str, expires: float | None) -> str:
        header, body = _frame_header(SEALED, payload, expires, self.compress)
        nonce = _urandom(NONCE_BYTES)
        sealed = self._encrypt(nonce, body, self._prefixes[name] + header)
        return _b2a(header + nonce + sealed, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")

    def open(self, value: bytes, *, name: str, now: float) -> Opened | None:
        parsed = _parse_frame(value, SEALED, NONCE_BYTES + TAG_BYTES, now)
        if parsed is None:
            return None
        header, flags, body, expiry = parsed
        nonce, sealed = body[:NONCE_BYTES], body[NONCE_BYTES:]
        aad = self._prefixes[name] + header
        for index, cipher in enumerate(self._ciphers):
            try:
                plain = cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            payload = _payload(flags, plain)
            return None if payload is None else Opened(payload, index, expiry)
        return None


# ---- signed: HMAC-SHA256, readable payload ------------------------------------------------------
class Signer:
    """HMAC-SHA256 frames: the payload is authenticated but anyone can read it."""

    def __init__(self, keys: Sequence[bytes], *, compress: bool = True) -> None:
        if not keys or any(len(k) < 32 for k in keys):
            raise ValueError("Signer needs one or more keys of at least 32 bytes")
        self._macs = [HmacSha256(k) for k in keys]
        self._sign = self._macs[0].digest
        self._prefixes = _Prefixes()
        self.compress = compress

    def _mac(self, mac: HmacSha256, name: str, header: bytes, body: bytes) -> bytes:
        return mac.digest(self._prefixes[name] + header + body)

    def seal(self, payload: bytes, *, name: str, expires: float | None) -> str:
        header, body = _frame_header(SIGNED, payload, expires, self.compress)
        frame = header + body
        frame += self._sign(self._prefixes[name] + frame)
        return _b2a(frame, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")

    def open(self, value: bytes, *, name: str, now: float) -> Opened | None:
        parsed = _parse_frame(value, SIGNED, MAC_BYTES, now)
        if parsed is None:
            return None
        header, flags, rest, expiry = parsed
        body, mac = rest[:-MAC_BYTES], rest[-MAC_BYTES:]
        matched = None
        for index, keyed in enumerate(self._macs):
            if hmac.compare_digest(self._mac(keyed, name, header, body), mac) and matched is None:
                matched = index
        if matched is None:
            return None
        payload = _payload(flags, body)
        return None if payload is None else Opened(payload, matched, expiry)


# ---- cookie-session / keygrip compatibility -------------------------------------------------------
def keygrip_sign(key: bytes, data: bytes) -> str:
    """keygrip's default signature: HMAC-SHA1, base64 with '/'->'_', '+'->'-', no padding."""
    digest = hmac.new(key, data, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii").replace("/", "_").replace("+", "-").rstrip("=")


def keygrip_index(keys: Sequence[bytes], data: bytes, signature: bytes) -> int | None:
    """Index of the first key whose keygrip signature of `data` is `signature`, or None.
    Every key is compared in constant time."""
    matched = None
    for index, key in enumerate(keys):
        if hmac.compare_digest(keygrip_sign(key, data).encode("ascii"), signature) and matched is None:
            matched = index
    return matched
