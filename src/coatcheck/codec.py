"""Record <-> bytes. JSON only (orjson when installed); never pickle."""

from __future__ import annotations

import json
from typing import Any, Protocol

from .errors import SessionStoreError
from .record import Meta, Record

try:  # pragma: no cover - depends on the environment
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]


class Serializer(Protocol):
    """Turns JSON-able values into bytes and back. Must be deterministic for equal values."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JSONSerializer:
    """The default serializer: orjson if installed, else the standard library (same output)."""

    def dumps(self, value: Any) -> bytes:
        if orjson is not None:
            return orjson.dumps(value)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        if orjson is not None:
            return orjson.loads(data)
        return json.loads(data)


DEFAULT_SERIALIZER: Serializer = JSONSerializer()


def encode_record(record: Record, serializer: Serializer = DEFAULT_SERIALIZER) -> bytes:
    """The whole record as one JSON document: {"v": 1, "meta": {...}, "data": {...}}."""
    return serializer.dumps({"v": 1, "meta": record.meta.to_dict(), "data": record.data})


def decode_record(blob: bytes | str, serializer: Serializer = DEFAULT_SERIALIZER) -> Record:
    """Inverse of `encode_record`; a corrupt blob raises SessionStoreError, never anything else."""
    try:
        raw = serializer.loads(blob.encode() if isinstance(blob, str) else blob)
        if not isinstance(raw, dict) or raw.get("v") != 1 or not isinstance(raw.get("data"), dict):
            raise ValueError("not a coatcheck v1 record")
        return Record(data=raw["data"], meta=Meta.from_dict(raw["meta"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise SessionStoreError(f"corrupt session record: {exc}") from exc
