"""RedisStore's per-request helpers: a record from its hash (an HGETALL reply), the codec
functions a store calls per value, and the SessionStoreError a failed command becomes.

Kept out of `redis.py` so the store module stays about commands; these run on every load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _json
from ..codec import JSONSerializer, Serializer
from ..errors import SessionStoreError
from ..record import Meta, Record
from ._toolkit import describe_error

_CORRUPT = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def codec_of(serializer: Serializer) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """(dumps, loads) for `serializer`; for the default JSON one, the functions behind its
    methods (the same bytes and values, one call layer fewer per value)."""
    if type(serializer) is JSONSerializer:
        return _json.dumps, _json.loads
    return serializer.dumps, serializer.loads


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
    if meta.is_expired(now):
        return None
    return Record(data=data, meta=meta)


def failure(where: str, action: str, exc: BaseException, key: str | None) -> SessionStoreError:
    """What `store_errors` raises for a driver error, built only when one happened (the
    per-call `with` block it replaces cost a generator and two calls on every command)."""
    return SessionStoreError(f"Redis ({where}) could not {action}: {describe_error(exc, key)}")
