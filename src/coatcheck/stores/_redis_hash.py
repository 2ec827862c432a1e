"""RedisStore's per-request helpers: a record from its hash (an HGETALL reply), the codec
functions a store calls per value, and the SessionStoreError a failed command becomes.

Kept out of `redis.py` so the store module stays about commands; these run on every load.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

try:  # pragma: no cover - depends on the environment
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

from .. import _json
from ..codec import JSONSerializer, Serializer
from ..errors import SessionStoreError
from ..record import Meta, Record
from ._toolkit import describe_error

_INF = math.inf
_CORRUPT = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def codec_of(serializer: Serializer) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """(dumps, loads) for `serializer`; for the default JSON one, the functions behind its
    methods (the same bytes and values, one call layer fewer per value)."""
    if type(serializer) is JSONSerializer:
        return _json.dumps, _json.loads
    return serializer.dumps, serializer.loads


def encode_meta(meta: Meta, dumps: Callable[[Any], bytes]) -> bytes:
    """`dumps(meta.to_dict())`. With the default JSON encoder and orjson, the usual metadata
    (float times, a str user id, no cookie overrides or hints) goes to orjson directly: the
    same bytes, without the value walk `_json.dumps` makes to find what orjson would write
    differently (a write's metadata is encoded on every save and touch). A time qualifies if
    it is a finite float of at least 1e-3 (`_json` leaves smaller ones to the standard
    library, which formats them its way); the checks and `Meta.to_dict` are written out."""
    user = meta.user_id
    if dumps is _json.dumps and orjson is not None and not (meta.cookie or meta.hints):
        created, last_seen = meta.created, meta.last_seen
        idle, absolute = meta.idle_deadline, meta.absolute_deadline
        if (
            (user is None or type(user) is str)
            and type(created) is float
            and 1e-3 <= created < _INF
            and type(last_seen) is float
            and 1e-3 <= last_seen < _INF
            and (idle is None or (type(idle) is float and 1e-3 <= idle < _INF))
            and (absolute is None or (type(absolute) is float and 1e-3 <= absolute < _INF))
        ):
            out: dict[str, Any] = {"created": created, "last_seen": last_seen}
            if idle is not None:
                out["idle_deadline"] = idle
            if absolute is not None:
                out["absolute_deadline"] = absolute
            if user is not None:
                out["user_id"] = user
            try:
                return orjson.dumps(out)
            except TypeError:  # e.g. a lone surrogate in the user id: `_json` decides, as always
                pass
    return dumps(meta.to_dict())


def decode_hash(reply: Any, loads: Callable[[bytes], Any], where: str, now: float) -> Record | None:
    """An HGETALL reply (a flat list, or a dict from redis-py) as a live record, or None if
    its metadata says it is dead; a corrupt hash raises SessionStoreError."""
    if isinstance(reply, dict):
        pairs: Any = reply.items()
    else:
        fields = iter(reply)
        pairs = zip(fields, fields, strict=True)
    data: dict[str, Any] = {}
    meta_blob = None
    try:
        for name, value in pairs:
            if name[0] == 46:  # b"." starts a data field
                data[name[1:].decode()] = loads(value)
            elif name == b"m":
                meta_blob = value
        if meta_blob is None:
            raise ValueError("no metadata field")
        meta = Meta.from_dict(loads(meta_blob))
    except _CORRUPT as exc:
        raise SessionStoreError(f"corrupt session record in Redis ({where}): {exc}") from None
    idle, absolute = meta.idle_deadline, meta.absolute_deadline  # `meta.is_expired(now)`, inline
    if (idle is not None and now >= idle) or (absolute is not None and now >= absolute):
        return None
    return Record(data, meta)


def failure(where: str, action: str, exc: BaseException, key: str | None) -> SessionStoreError:
    """What `store_errors` raises for a driver error, built only when one happened (the
    per-call `with` block it replaces cost a generator and two calls on every command)."""
    return SessionStoreError(f"Redis ({where}) could not {action}: {describe_error(exc, key)}")
