"""The client-side session's fast paths agree with the general paths they shortcut.

Each test rebuilds what the code did before the shortcut from the general building blocks
(`_frame_header`, `b64url_encode`, `Meta.to_dict`, `serializer.dumps`, `CookieStore._find`,
`render_set_cookie`) and checks the hot path gives the same bytes, or the same error.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from coatcheck import sealing
from coatcheck._hmac import HmacSha256
from coatcheck.codec import DEFAULT_SERIALIZER, Serializer
from coatcheck.cookies import render_set_cookie
from coatcheck.crypto import Keyring
from coatcheck.record import Meta, Record
from coatcheck.sealing import MIN_DEFLATE, SEALED, SIGNED, Sealer, Signer, b64url_encode
from coatcheck.stores import CookieStore
from coatcheck.stores._cookie_payload import _META_KEYS, encode_payload
from coatcheck.stores.cookie import _chunk_order
from coatcheck.tagged import TaggedSerializer

NOW = 1_700_000_000.0


# ---- payload encoding -------------------------------------------------------------------------------
def reference_payload(session_id: Any, record: Record, serializer: Serializer) -> bytes:
    meta = record.meta.to_dict()
    compact = {short: meta[long] for short, long in _META_KEYS if long in meta}
    return serializer.dumps({"i": session_id, "m": compact, "d": record.data})


class Text(str):
    pass


class Number(float):
    pass


class Items(list[Any]):
    pass


leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # past 64 bits: the stdlib writes them
    | st.floats()  # NaN, infinities and floats below 1e-3 included
    | st.sampled_from([1e-7, -1e-4, 1e16, 1e300, 0.0, -0.0])
    | st.text(max_size=12)  # lone surrogates included
    | st.builds(Text, st.text(max_size=5))
    | st.builds(Number, st.floats(allow_nan=False))
)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.builds(Items, st.lists(children, max_size=3))
        | st.dictionaries(st.text(max_size=6) | st.builds(Text, st.text(max_size=3)), children, max_size=4)
    ),
    max_leaves=12,
)
times = st.floats() | st.integers(min_value=-5, max_value=2**40) | st.sampled_from([NOW, 1e-4, 0.0])


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except (TypeError, ValueError) as exc:
        return "error", type(exc)


@settings(max_examples=400)
@given(
    data=st.dictionaries(st.text(max_size=8), values, max_size=5)
    | st.dictionaries(st.integers() | st.builds(Text, st.text(max_size=3)), leaves, max_size=2),
    created=times,
    seen=times,
    idle=st.none() | times,
    absolute=st.none() | times,
    user=st.none() | st.text(max_size=8) | st.builds(Text, st.text(max_size=3)) | st.integers(),
    cookie=st.sampled_from([{}, {"max_age": 60.0}, {"max_age": 1e-5}]),
    session_id=st.text(max_size=8) | st.builds(Text, st.text(max_size=3)) | st.integers(),
    tagged=st.booleans(),
)
def test_payload_encoding_agrees_with_the_general_path(
    data: dict[Any, Any],
    created: float,
    seen: float,
    idle: float | None,
    absolute: float | None,
    user: Any,
    cookie: dict[str, Any],
    session_id: Any,
    tagged: bool,
) -> None:
    serializer: Serializer = TaggedSerializer() if tagged else DEFAULT_SERIALIZER
    record = Record(data, Meta(created, seen, idle, absolute, user, dict(cookie), {"ip": "127.0.0.1"}))
    assert _outcome(lambda: encode_payload(session_id, record, serializer)) == _outcome(
        lambda: reference_payload(session_id, record, serializer)
    )


@pytest.mark.parametrize("field", ["created", "last_seen", "idle_deadline", "absolute_deadline"])
@pytest.mark.parametrize(
    "time",
    [
        1e-4,
        1e-5,
        2e-7,
        -1e-4,
        9.99e-4,
        1e-3,
        0.0,
        -1.0,
        1e16,
        1e300,
        float("nan"),
        float("inf"),
        5,
        True,
        Number(2.5),
    ],
)
@pytest.mark.parametrize("data", [{}, {"a": "b", "n": 1, "t": True, "z": None}, {"f": 1e-5}, {"big": 2**70}])
def test_payload_encoding_of_any_time_agrees_with_the_general_path(
    field: str, time: float, data: dict[str, Any]
) -> None:
    meta = Meta(NOW, NOW, NOW + 60, NOW + 3600)
    setattr(meta, field, time)
    record = Record(data, meta)
    assert _outcome(lambda: encode_payload("sid", record, DEFAULT_SERIALIZER)) == _outcome(
        lambda: reference_payload("sid", record, DEFAULT_SERIALIZER)
    )


@pytest.mark.parametrize("depth", [96, 97, 98, 99, 100, 101])
def test_payload_encoding_refuses_the_same_nesting_as_the_general_path(depth: int) -> None:
    nested: Any = 1
    for _ in range(depth):
        nested = [nested]
    for value in (nested, {"a": nested}):
        record = Record({"deep": value}, Meta(NOW, NOW, NOW + 60))
        got = _outcome(lambda: encode_payload("sid", record, DEFAULT_SERIALIZER))  # noqa: B023
        assert got == _outcome(lambda: reference_payload("sid", record, DEFAULT_SERIALIZER))  # noqa: B023


# ---- frames ---------------------------------------------------------------------------------------
def reference_context(name: str, header: bytes) -> bytes:
    return b"coatcheck/cookie\x00" + name.encode("latin-1") + b"\x00" + header


expiries = (
    st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, 0.5, -3.0, 2.0**40])
)
payloads = st.integers(0, MIN_DEFLATE + 64).flatmap(
    lambda n: st.binary(min_size=n, max_size=n) | st.just(b"a" * n)
)


@settings(max_examples=300)
@given(
    payload=payloads, expires=expiries, compress=st.booleans(), name=st.sampled_from(["session", "s", "é"])
)
def test_signed_frames_are_the_bytes_the_general_path_makes(
    payload: bytes, expires: float | None, compress: bool, name: str
) -> None:
    key = b"k" * 32
    header, body = sealing._frame_header(SIGNED, payload, expires, compress)
    expected = b64url_encode(header + body + HmacSha256(key).digest(reference_context(name, header) + body))
    signer = Signer([key], compress=compress)
    assert signer.seal(payload, name=name, expires=expires) == expected
    opened = signer.open(expected.encode(), name=name, now=0.0)
    assert opened is not None and opened.payload == payload


@settings(max_examples=300)
@given(
    payload=payloads, expires=expiries, compress=st.booleans(), name=st.sampled_from(["session", "s", "é"])
)
def test_sealed_frames_are_the_bytes_the_general_path_makes(
    payload: bytes, expires: float | None, compress: bool, name: str
) -> None:
    key, nonce = b"k" * 32, os.urandom(12)
    header, body = sealing._frame_header(SEALED, payload, expires, compress)
    expected = b64url_encode(
        header + nonce + AESGCM(key).encrypt(nonce, body, reference_context(name, header))
    )
    sealer = Sealer([key], compress=compress)
    real = sealing._urandom
    sealing._urandom = lambda size: nonce  # type: ignore[assignment]
    try:
        assert sealer.seal(payload, name=name, expires=expires) == expected
    finally:
        sealing._urandom = real
    opened = sealer.open(expected.encode(), name=name, now=0.0)
    assert opened is not None and opened.payload == payload


def test_a_frame_that_cannot_be_expired_raises_as_before() -> None:
    for codec in (Sealer([b"k" * 32]), Signer([b"k" * 32])):
        for bad in (float("nan"), float("inf")):
            with pytest.raises((ValueError, OverflowError)) as raised:
                codec.seal(b"{}", name="session", expires=bad)
            with pytest.raises(raised.type):
                sealing.expiry_field(bad)


# ---- stale chunks ------------------------------------------------------------------------------------
def render(name: str, value: str, max_age: float | None) -> bytes:
    return render_set_cookie(name, value, max_age=max_age, path="/", now=NOW)


def reference_seal(store: CookieStore, record: Record, header: bytes | None) -> list[bytes]:
    """CookieStore.seal as it was: always scan the header for the session's cookie names."""
    assert store._codec is not None
    found = store._find(header, "session")
    value = store._codec.seal(
        encode_payload("sid", record, DEFAULT_SERIALIZER), name="session", expires=record.meta.expires
    )
    out, written = store._lay_out(value, "session", None, render, render("session", value, None))
    out.extend(render(n, "", 0) for n in sorted(found.names - written, key=_chunk_order))
    return out


cookie_parts = st.lists(
    st.sampled_from(
        [
            b"session=abc",
            b"session.0=a",
            b"session.1=b",
            b"session.7=c",
            b"session.01=x",
            b"session.60=x",
            b"session.sig=s",
            b"other=session.0",
            b"xsession.0=a",
            b" session.2 =d",
            b"session.=e",
            b"session=abc  ",
            b" session=abc",
            b"session",
            b"session=",
        ]
    ),
    max_size=5,
)


@settings(max_examples=200)
@given(parts=cookie_parts, size=st.sampled_from([10, 5000, 9000]))
def test_sealing_clears_the_same_stale_chunks_as_a_full_scan(parts: list[bytes], size: int) -> None:
    store = CookieStore(mode="signed", compress=False)  # signed: the same bytes every time
    store.bind(Keyring(secrets.token_urlsafe(32)), DEFAULT_SERIALIZER)
    record = Record({"x": "y" * size}, Meta(NOW, NOW, NOW + 60))
    header = b"; ".join(parts) or None
    got = store.seal("sid", record, name="session", cookie_header=header, max_age=None, render=render)
    assert got == reference_seal(store, record, header)


@settings(max_examples=200)
@given(
    parts=cookie_parts,
    chunked=st.booleans(),
    mode=st.sampled_from(["sealed", "signed"]),
    trailer=st.sampled_from([b"", b" ", b"\t ", b"x", b"=", b";"]),
)
async def test_opening_finds_the_same_session_as_a_full_scan(
    parts: list[bytes], chunked: bool, mode: str, trailer: bytes
) -> None:
    store = CookieStore(mode=mode)  # type: ignore[arg-type]
    store.bind(Keyring(secrets.token_urlsafe(32)), DEFAULT_SERIALIZER)
    record = Record({"x": "y" * (9000 if chunked else 10)}, Meta(NOW, NOW, NOW + 60))
    sealed = store.seal("sid", record, name="session", cookie_header=None, max_age=None, render=render)
    ours = [c.split(b";", 1)[0] for c in sealed]
    header = b"; ".join(parts + ours + parts) or None
    if header is not None and trailer:
        header += trailer
    found = store._find(header, "session")
    expected = None
    for value in (found.single, store._joined_chunks(found.chunks)):
        if value is not None and expected is None:
            expected = store._open_frame(value, "session", NOW, DEFAULT_SERIALIZER)
    opened = await store.open(header, "session", NOW)
    assert (opened is None) == (expected is None)
    if opened is not None and expected is not None:
        assert (opened.session_id, opened.record) == (expected.session_id, expected.record)
