"""Record <-> bytes. JSON (orjson when installed, byte-identical without) or tagged JSON; never pickle."""

from __future__ import annotations

from typing import Any, Protocol

from . import _json
from .errors import ConfigurationError, SessionStoreError
from .record import Meta, Record
from .tagged import TaggedSerializer


class Serializer(Protocol):
    """Turns JSON-able values into bytes and back. Must be deterministic for equal values."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JSONSerializer:
    """The default serializer: plain JSON, the same bytes and errors with or without orjson.

    Accepts dict (str keys only), list, tuple (written as a list), str, int, float, bool,
    None and their subclasses, nested up to 100 levels. Anything else raises TypeError
    (datetime, UUID, bytes, ...: use the tagged serializer); NaN and infinities raise
    ValueError. Output is compact UTF-8 with keys in insertion order.
    """

    def dumps(self, value: Any) -> bytes:
        return _json.dumps(value)

    def loads(self, data: bytes | str) -> Any:
        return _json.loads(data)


DEFAULT_SERIALIZER: Serializer = JSONSerializer()

SERIALIZER_NAMES = ("json", "tagged")


def serializer_for(choice: str | Serializer) -> Serializer:
    """The serializer a setting names: "json" (the default), "tagged", or a Serializer object.

    "tagged" gives a new `TaggedSerializer` (build one yourself to register app tags).
    Anything else raises ConfigurationError at start-up.
    """
    if isinstance(choice, str):
        if choice == "json":
            return DEFAULT_SERIALIZER
        if choice == "tagged":
            return TaggedSerializer()
        raise ConfigurationError(
            f"serializer={choice!r} is unknown: use one of {', '.join(map(repr, SERIALIZER_NAMES))} "
            "or an object with dumps(value) -> bytes and loads(bytes) -> value"
        )
    if callable(getattr(choice, "dumps", None)) and callable(getattr(choice, "loads", None)):
        return choice
    raise ConfigurationError(
        f"serializer={choice!r} is not a serializer: pass 'json', 'tagged' or an object with "
        "dumps(value) -> bytes and loads(bytes) -> value"
    )


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
