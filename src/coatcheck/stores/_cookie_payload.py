"""The payload a client-side session's cookie carries: its id, metadata and data as JSON.

Kept apart from `CookieStore` (cookie.py) so each stays small; `encode_payload` is on the
hot path of every re-sealed session, `decode_payload` of every opened one.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import _json
from ..codec import DEFAULT_SERIALIZER, Serializer
from ..record import Meta, Record

try:  # pragma: no cover - depends on the environment
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

MAX_ID = 128  # longest session id a payload may carry

# Short keys keep the cookie small: id, data, and meta as created/last seen/idle/absolute/user/cookie.
_META_KEYS = (
    ("c", "created"),
    ("l", "last_seen"),
    ("x", "idle_deadline"),
    ("a", "absolute_deadline"),
    ("u", "user_id"),
    ("k", "cookie"),
)


def encode_payload(session_id: str, record: Record, serializer: Serializer) -> bytes:
    """`serializer.dumps({"i": id, "m": meta with _META_KEYS' short names, "d": data})`."""
    meta = record.meta
    created, seen, idle, absolute = meta.created, meta.last_seen, meta.idle_deadline, meta.absolute_deadline
    compact: dict[str, Any] = {"c": created, "l": seen}  # Meta.to_dict's keys and order, renamed
    if idle is not None:
        compact["x"] = idle
    if absolute is not None:
        compact["a"] = absolute
    if meta.user_id is not None:
        compact["u"] = meta.user_id
    if meta.cookie:
        compact["k"] = meta.cookie
    data = record.data
    doc = {"i": session_id, "m": compact, "d": data}
    if serializer is not DEFAULT_SERIALIZER or orjson is None or _json.dumps is not _json.dumps_orjson:
        return serializer.dumps(doc)
    # `_json.dumps_orjson(doc)` without its walk of the whole document (`_json.check`) when
    # that walk has nothing to find: an id and user id of type str, times that are floats
    # orjson writes as the standard library does (finite, not below 1e-3: timestamps), no
    # per-session cookie options, and data of str keys and str/int/bool/None values. Then
    # orjson's `default` is never called, and what it refuses (ints past 64 bits, lone
    # surrogates) goes to the standard library as in `dumps_orjson`.
    if not (
        type(session_id) is str
        and type(created) is float
        and _FLOAT_MIN <= created <= _FLOAT_MAX
        and type(seen) is float
        and _FLOAT_MIN <= seen <= _FLOAT_MAX
        and (idle is None or (type(idle) is float and _FLOAT_MIN <= idle <= _FLOAT_MAX))
        and (absolute is None or (type(absolute) is float and _FLOAT_MIN <= absolute <= _FLOAT_MAX))
        and (meta.user_id is None or type(meta.user_id) is str)
        and not meta.cookie
        and type(data) is dict
    ):
        return _json.dumps_orjson(doc)
    for key, value in data.items():
        if type(key) is not str or type(value) not in _JSON_LEAVES:
            return _json.dumps_orjson(doc)
    try:
        return orjson.dumps(doc)
    except TypeError:
        return _json.dumps_stdlib(doc)


_JSON_LEAVES = frozenset((str, int, bool, type(None)))
_FLOAT_MIN, _FLOAT_MAX = 1e-3, sys.float_info.max


def decode_payload(payload: bytes, serializer: Serializer) -> tuple[str, Record] | None:
    """(session id, record) from an authenticated payload; None if it is not one of ours."""
    try:
        raw = serializer.loads(payload)
        if not isinstance(raw, dict):
            return None
        session_id, data, compact = raw.get("i"), raw.get("d"), raw.get("m")
        if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_ID:
            return None
        if not isinstance(data, dict) or not isinstance(compact, dict):
            return None
        for short, _ in _META_KEYS[:4]:
            if isinstance(compact.get(short), bool):
                return None
        meta = Meta.from_dict({long: compact[short] for short, long in _META_KEYS if short in compact})
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    return session_id, Record(data=data, meta=meta)


_FLAT = frozenset((str, int, float, bool, type(None)))


def is_flat(record: Record) -> bool:
    """True if the data and metadata hold nothing a handler could change in place."""
    meta = record.meta
    return (
        all(type(v) in _FLAT for v in record.data.values())
        and all(type(v) in _FLAT for v in meta.cookie.values())
        and all(type(v) in _FLAT for v in meta.hints.values())
    )


def fresh(record: Record) -> Record:
    """A copy of a flat record that shares nothing mutable with it."""
    m = record.meta
    cookie, hints = m.cookie, m.hints  # mostly empty: a literal {} is cheaper than dict({})
    meta = Meta(
        m.created,
        m.last_seen,
        m.idle_deadline,
        m.absolute_deadline,
        m.user_id,
        dict(cookie) if cookie else {},
        dict(hints) if hints else {},
    )
    return Record(dict(record.data), meta)
