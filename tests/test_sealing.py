"""The sealing primitives: frame layout, AES-256-GCM, HMAC-SHA256, keygrip, encodings."""

from __future__ import annotations

import json
import os
import secrets
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coatcheck import sealing
from coatcheck.crypto import Keyring
from coatcheck.errors import SessionTooLarge
from coatcheck.sealing import (
    FLAG_DEFLATED,
    HEADER,
    MAC_BYTES,
    MAX_PAYLOAD,
    MIN_DEFLATE,
    NONCE_BYTES,
    SEALED,
    SIGNED,
    TAG_BYTES,
    Sealer,
    Signer,
    b64url_decode,
    b64url_encode,
    deflate,
    expiry_field,
    inflate,
    keygrip_index,
    keygrip_sign,
)

NOW = 1_700_000_000.0


def keys(count: int = 1) -> list[bytes]:
    return [os.urandom(32) for _ in range(count)]


def frame(value: str) -> bytes:
    decoded = b64url_decode(value.encode())
    assert decoded is not None
    return decoded


# ---- encodings ------------------------------------------------------------------------------
@given(st.binary(max_size=300))
def test_b64url_round_trips_any_bytes(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text
    assert b64url_decode(text.encode()) == data


def test_b64url_accepts_only_the_canonical_encoding() -> None:
    assert b64url_decode(b"AQ") == b"\x01"
    assert b64url_decode(b"AR") is None  # same byte, non-zero unused bits
    assert b64url_decode(b"AQ==") is None  # padding is not ours
    assert b64url_decode(b"A") is None  # no byte string encodes to one character
    assert b64url_decode(b"A+Q") is None  # standard alphabet
    assert b64url_decode(b"AQ\x00") is None


def test_deflate_is_used_only_when_it_pays() -> None:
    assert deflate(b"short") is None
    assert deflate(os.urandom(500)) is None
    text = b'{"cart":[' + b"1," * 300 + b"1]}"
    packed = deflate(text)
    assert packed is not None and len(packed) < len(text) // 5
    assert inflate(packed) == text


def test_inflate_refuses_bombs_garbage_and_trailing_bytes() -> None:
    packed = deflate(b"\x00" * 100_000)
    assert packed is not None
    assert inflate(packed, limit=99_999) is None
    assert inflate(packed, limit=100_000) == b"\x00" * 100_000
    assert inflate(b"\xff\xfe garbage") is None
    assert inflate(packed + b"extra") is None
    assert inflate(packed[:-2]) is None  # truncated stream


def test_expiry_field_rounds_up_and_clamps() -> None:
    assert expiry_field(None) == 0
    assert expiry_field(10.2) == 11
    assert expiry_field(10.0) == 10
    assert expiry_field(1e15) == 0xFFFFFFFF


# ---- sealed frames ------------------------------------------------------------------------------
def test_sealed_frame_layout() -> None:
    payload = b'{"i":"x","d":{}}'
    value = Sealer(keys()).seal(payload, name="session", expires=NOW + 60.5)
    raw = frame(value)
    version, flags, expiry = HEADER.unpack_from(raw)
    assert (version, flags, expiry) == (SEALED, 0, int(NOW) + 61)
    assert len(raw) == HEADER.size + NONCE_BYTES + len(payload) + TAG_BYTES
    assert payload not in raw  # encrypted


def test_sealed_round_trip_and_compression_flag() -> None:
    sealer = Sealer(keys())
    small = b'{"a":1}'
    opened = sealer.open(sealer.seal(small, name="s", expires=None).encode(), name="s", now=NOW)
    assert opened is not None and opened.payload == small and opened.key_index == 0
    big = json.dumps({"cart": list(range(400))}).encode()
    value = sealer.seal(big, name="s", expires=None)
    assert frame(value)[1] == FLAG_DEFLATED
    assert len(value) < len(big)
    opened = sealer.open(value.encode(), name="s", now=NOW)
    assert opened is not None and opened.payload == big


@pytest.mark.parametrize("codec", [Sealer, Signer])
def test_sealing_refuses_a_payload_that_opening_would_refuse(codec: type[Sealer] | type[Signer]) -> None:
    frames = codec(keys())
    largest = b"a" * MAX_PAYLOAD  # deflates to about 1 KB: small enough for one cookie
    opened = frames.open(frames.seal(largest, name="s", expires=None).encode(), name="s", now=NOW)
    assert opened is not None and opened.payload == largest
    with pytest.raises(SessionTooLarge, match="1 MiB"):
        frames.seal(largest + b"a", name="s", expires=None)


@pytest.mark.parametrize("codec", [Sealer, Signer])
def test_small_payloads_are_not_deflated_but_deflated_ones_still_open(
    codec: type[Sealer] | type[Signer], monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = codec(keys())
    small = b'{"a":"' + b"x" * (MIN_DEFLATE - 9) + b'"}'  # compresses well, under MIN_DEFLATE
    assert len(small) < MIN_DEFLATE
    assert frame(frames.seal(small, name="s", expires=None))[1] == 0
    monkeypatch.setattr(sealing, "MIN_DEFLATE", 0)  # as an older release sealed it
    value = frames.seal(small, name="s", expires=None)
    monkeypatch.undo()
    assert frame(value)[1] == FLAG_DEFLATED
    opened = frames.open(value.encode(), name="s", now=NOW)
    assert opened is not None and opened.payload == small


def test_sealed_without_compression_never_deflates() -> None:
    big = json.dumps({"cart": list(range(400))}).encode()
    value = Sealer(keys(), compress=False).seal(big, name="s", expires=None)
    assert frame(value)[1] == 0


def test_every_flipped_bit_of_a_sealed_frame_is_rejected() -> None:
    sealer = Sealer(keys())
    raw = frame(sealer.seal(b'{"user":"alice","role":"admin"}', name="session", expires=NOW + 3600))
    for position in range(len(raw)):
        for bit in range(8):
            tampered = bytearray(raw)
            tampered[position] ^= 1 << bit
            value = b64url_encode(bytes(tampered)).encode()
            assert sealer.open(value, name="session", now=NOW) is None, (position, bit)


def test_truncated_and_extended_sealed_frames_are_rejected() -> None:
    sealer = Sealer(keys())
    raw = frame(sealer.seal(b"payload", name="s", expires=None))
    for cut in range(len(raw)):
        assert sealer.open(b64url_encode(raw[:cut]).encode(), name="s", now=NOW) is None
    assert sealer.open(b64url_encode(raw + b"\x00").encode(), name="s", now=NOW) is None


def test_sealed_value_is_bound_to_the_cookie_name() -> None:
    sealer = Sealer(keys())
    value = sealer.seal(b"payload", name="alpha", expires=None).encode()
    assert sealer.open(value, name="alpha", now=NOW) is not None
    assert sealer.open(value, name="beta", now=NOW) is None
    assert sealer.open(value, name="alpha.0", now=NOW) is None


def test_sealed_value_is_rejected_from_its_expiry_on() -> None:
    sealer = Sealer(keys())
    value = sealer.seal(b"payload", name="s", expires=NOW + 10.2).encode()
    assert sealer.open(value, name="s", now=NOW + 10.5) is not None  # the clear expiry rounds up to NOW + 11
    assert sealer.open(value, name="s", now=NOW + 11) is None


def test_moving_the_clear_expiry_breaks_the_seal() -> None:
    sealer = Sealer(keys())
    raw = bytearray(frame(sealer.seal(b"payload", name="s", expires=NOW + 10)))
    struct.pack_into(">I", raw, 2, int(NOW) + 10_000)
    assert sealer.open(b64url_encode(bytes(raw)).encode(), name="s", now=NOW) is None
    struct.pack_into(">I", raw, 2, 0)  # "no expiry"
    assert sealer.open(b64url_encode(bytes(raw)).encode(), name="s", now=NOW) is None


def test_unknown_flags_and_versions_are_rejected() -> None:
    key = keys()
    sealer, signer = Sealer(key), Signer(key)
    raw = bytearray(frame(sealer.seal(b"payload", name="s", expires=None)))
    raw[1] = 0x80
    assert sealer.open(b64url_encode(bytes(raw)).encode(), name="s", now=NOW) is None
    # a signed frame is never opened as sealed, nor the reverse
    assert sealer.open(signer.seal(b"payload", name="s", expires=None).encode(), name="s", now=NOW) is None
    assert signer.open(sealer.seal(b"payload", name="s", expires=None).encode(), name="s", now=NOW) is None


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    old, new = keys(2)
    value = Sealer([old]).seal(b"payload", name="s", expires=None).encode()
    opened = Sealer([new, old]).open(value, name="s", now=NOW)
    assert opened is not None and opened.key_index == 1
    assert Sealer([new]).open(value, name="s", now=NOW) is None
    resealed = Sealer([new, old]).seal(b"payload", name="s", expires=None).encode()
    reopened = Sealer([new]).open(resealed, name="s", now=NOW)
    assert reopened is not None and reopened.key_index == 0


def test_nonces_are_never_reused_across_100k_seals() -> None:
    sealer = Sealer(keys())
    seen = set()
    for _ in range(100_000):
        raw = frame(sealer.seal(b"{}", name="session", expires=None))
        seen.add(raw[HEADER.size : HEADER.size + NONCE_BYTES])
    assert len(seen) == 100_000


def test_keys_derived_by_purpose_differ_per_secret_and_purpose() -> None:
    ring = Keyring([secrets.token_urlsafe(32), secrets.token_urlsafe(32)])
    seal_keys = ring.derive("cookie-store/aes-256-gcm")
    sign_keys = ring.derive("cookie-store/hmac-sha256")
    assert len({*seal_keys, *sign_keys}) == 4
    assert all(len(k) == 32 for k in seal_keys)


@given(st.binary(max_size=400))
def test_opening_arbitrary_bytes_never_raises(junk: bytes) -> None:
    key = [b"k" * 32]
    assert Sealer(key).open(junk, name="s", now=NOW) is None
    assert Signer(key).open(junk, name="s", now=NOW) is None


@given(st.binary(min_size=HEADER.size, max_size=300))
def test_opening_arbitrary_well_formed_base64_never_raises(junk: bytes) -> None:
    value = b64url_encode(bytes([SEALED, 0]) + junk[2:]).encode()
    assert Sealer([b"k" * 32]).open(value, name="s", now=NOW) is None


# ---- signed frames --------------------------------------------------------------------------------
def test_signed_frame_is_readable_and_authenticated() -> None:
    signer = Signer(keys())
    payload = b'{"i":"x","d":{"theme":"dark"}}'
    value = signer.seal(payload, name="session", expires=NOW + 60)
    raw = frame(value)
    assert raw[0] == SIGNED
    assert raw[HEADER.size : -MAC_BYTES] == payload  # anyone can read it
    opened = signer.open(value.encode(), name="session", now=NOW)
    assert opened is not None and opened.payload == payload
    assert signer.open(value.encode(), name="other", now=NOW) is None
    assert signer.open(value.encode(), name="session", now=NOW + 61) is None
    for position in range(len(raw)):
        tampered = bytearray(raw)
        tampered[position] ^= 0x20
        assert signer.open(b64url_encode(bytes(tampered)).encode(), name="session", now=NOW) is None


def test_signed_rotation() -> None:
    old, new = keys(2)
    value = Signer([old]).seal(b"payload", name="s", expires=None).encode()
    opened = Signer([new, old]).open(value, name="s", now=NOW)
    assert opened is not None and opened.key_index == 1
    assert Signer([new]).open(value, name="s", now=NOW) is None


def test_sealer_and_signer_refuse_short_keys() -> None:
    with pytest.raises(ValueError):
        Sealer([b"short"])
    with pytest.raises(ValueError):
        Signer([b"short"])
    with pytest.raises(ValueError):
        Sealer([])


# ---- keygrip (cookie-session) ------------------------------------------------------------------------
def test_keygrip_vectors_match_cookie_session() -> None:
    data = b"session=eyJtZXNzYWdlIjoiaGkifQ=="
    assert keygrip_sign(b"a", data) == "vdp2-kj-91tgzbWcV1QzofT3hu0"
    assert keygrip_sign(b"b", data) == "SiRRAEncekXEzVdvey_7SkWaMM4"
    assert keygrip_index([b"a", b"b"], data, b"vdp2-kj-91tgzbWcV1QzofT3hu0") == 0
    assert keygrip_index([b"a", b"b"], data, b"SiRRAEncekXEzVdvey_7SkWaMM4") == 1
    assert keygrip_index([b"a"], data, b"SiRRAEncekXEzVdvey_7SkWaMM4") is None
    assert keygrip_index([b"a", b"b"], data + b"x", b"vdp2-kj-91tgzbWcV1QzofT3hu0") is None
    assert keygrip_index([b"a"], data, "vdp2-kj-91tgzbWcV1QzofT3hu\xe9".encode()) is None
