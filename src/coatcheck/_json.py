"""Canonical JSON bytes: the same output, and the same errors, with or without orjson.

The standard library is the reference. orjson is only a faster way to produce the same
bytes, so every value first goes through `check`, which refuses what the standard library
would refuse (anything but dict, list, tuple, str, int, float, bool and None, including
their subclasses), refuses what it would quietly accept but we do not (non-str dict keys,
NaN and infinities, nesting deeper than `MAX_DEPTH`), and reports the one case where orjson
formats differently (floats below 1e-3 in magnitude: `1e-07` vs `1e-7`). Anything orjson
raises on (integers beyond 64 bits, lone surrogates, str-subclass keys) is redone by the
standard library, which then either succeeds or raises its own error: one behaviour.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

try:  # pragma: no cover - depends on the environment
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

MAX_DEPTH = 100
"""Containers nested deeper than this are refused (ValueError); it also catches cycles."""

_SMALL_FLOAT = 1e-3
_PLAIN = frozenset({str, int, bool, type(None)})
# orjson turns integers past 64 bits into floats when parsing, so any run of 19 digits goes
# to the stdlib. translate+find is a C-speed scan; a regex here costs more than the parse.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_STDLIB_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_stdlib_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check(value: Any) -> bool:
    """Raise TypeError/ValueError for anything the canonical encoding refuses.

    Returns True when the value holds a float orjson would format differently, so the
    standard library must write it.
    """
    return _check(value, 0)


def _check(value: Any, depth: int) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return False
    if kind is float:
        return _check_float(value)
    if depth >= MAX_DEPTH:
        raise ValueError(f"session data nested deeper than {MAX_DEPTH} levels (or circular)")
    if kind is dict:
        return _check_dict(value, depth)
    if kind is list or kind is tuple:
        return _check_items(value, depth)
    return _check_subclass(value, depth)


def _check_float(value: float) -> bool:
    if not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return value != 0.0 and -_SMALL_FLOAT < value < _SMALL_FLOAT


def _check_dict(value: dict[Any, Any], depth: int) -> bool:
    for key in value:
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__} ({key!r})")
    return _check_items(value.values(), depth)


def _check_items(items: Iterable[Any], depth: int) -> bool:
    # Leaves are checked inline: a call per string or number would double the cost.
    stdlib = False
    for item in items:
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind is float:
            if not math.isfinite(item):
                _check_float(item)  # raises
            if item != 0.0 and -_SMALL_FLOAT < item < _SMALL_FLOAT:
                stdlib = True
        elif kind is dict and depth + 1 < MAX_DEPTH:
            if _check_dict(item, depth + 1):
                stdlib = True
        elif _check(item, depth + 1):
            stdlib = True
    return stdlib


def _check_subclass(value: Any, depth: int) -> bool:
    # The standard library writes subclasses of the JSON types as their base type.
    if isinstance(value, str | int):
        return False
    if isinstance(value, float):
        return _check_float(value)
    if isinstance(value, dict):
        return _check_dict(value, depth)
    if isinstance(value, list | tuple):
        return _check_items(value, depth)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps_stdlib(value: Any) -> bytes:
    """The reference encoding: compact, UTF-8, keys in insertion order."""
    check(value)
    return _stdlib_encoder.encode(value).encode("utf-8")


def loads_stdlib(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON (UTF-8 bytes or str) with the standard library; NaN/Infinity are refused.

    Every failure, nesting too deep included, is a ValueError.
    """
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return _STDLIB_DECODER.decode(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def _orjson_default(value: Any) -> Any:
    # Reached only for subclasses `check` accepted but orjson does not serialize itself.
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, list | tuple):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps_orjson(value: Any) -> bytes:
    """Same bytes and errors as `dumps_stdlib`, faster. Needs orjson."""
    if type(value) in _PLAIN:  # a counter, a user name: `check` would accept it as it is
        try:
            return orjson.dumps(value)
        except TypeError:  # an integer past 64 bits, a lone surrogate: the stdlib decides
            return _stdlib_encoder.encode(value).encode("utf-8")
    if check(value):
        return _stdlib_encoder.encode(value).encode("utf-8")
    try:
        return orjson.dumps(value, default=_orjson_default)
    except TypeError:  # orjson.JSONEncodeError: the stdlib decides (succeeds or raises its own)
        return _stdlib_encoder.encode(value).encode("utf-8")


def loads_orjson(data: bytes | bytearray | memoryview | str) -> Any:
    """Same result as `loads_stdlib`, faster. Needs orjson."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if raw.translate(_DIGITS_TO_ZERO).find(_LONG_RUN) >= 0:
        return loads_stdlib(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return loads_stdlib(data)


def emit(tree: Any, stdlib: bool) -> bytes:
    """Encode a tree already known to pass `check` (its result given as `stdlib`)."""
    if stdlib or orjson is None:
        return _stdlib_encoder.encode(tree).encode("utf-8")
    try:
        return orjson.dumps(tree)
    except TypeError:
        return _stdlib_encoder.encode(tree).encode("utf-8")


dumps: Callable[[Any], bytes] = dumps_stdlib if orjson is None else dumps_orjson
loads: Callable[[bytes | bytearray | memoryview | str], Any] = (
    loads_stdlib if orjson is None else loads_orjson
)
