"""Tagged JSON: a pickle-free serializer that keeps Python types across a round trip.

A value JSON cannot express is written as a one-key object whose key is a tag, e.g.
`(1, 2)` -> `{" t":[1,2]}`. Tags start with a space, so ordinary keys never look like
one; a one-key dict whose key starts with a space is itself wrapped (`{" di": ...}`) so it
is never mistaken for a tag. The wire format reads Flask's tagged session JSON (`" t"`,
`" b"`, `" m"`, `" u"`, `" d"`, `" di"`) and adds tags for what Flask cannot keep exactly:
datetimes with microseconds and their offset (or none), dates, times and Decimals.

Output is deterministic: a value always encodes to the same bytes, with or without
orjson (`coatcheck._json`). Dict keys must be str. An aware datetime keeps its UTC offset,
not its tz database name: `ZoneInfo("Europe/Paris")` comes back as a fixed offset.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from uuid import UUID

from . import _json
from .errors import ConfigurationError

_DICT_TAG = " di"
_PLAIN = frozenset({str, int, bool, type(None)})


@dataclass(frozen=True, slots=True)
class Tag:
    """How one Python type is written: `{key: to_json(value)}`, read back with `from_json`.

    `key` must start with a space. `to_json` may return any value this serializer can
    write (it is tagged in turn); `from_json` receives it already decoded. `type` matches
    instances and subclasses, the most specific registered class winning.
    """

    key: str
    type: type
    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]


def _markup_tags() -> list[Tag]:
    try:
        from markupsafe import Markup
    except ImportError:  # pragma: no cover - markupsafe comes with Flask and Jinja
        return []
    return [Tag(" m", Markup, lambda v: str(v.__html__()), Markup)]


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _flask_date(text: str) -> datetime:
    # Flask writes datetimes as HTTP dates in UTC; Flask reads them back as aware UTC.
    return parsedate_to_datetime(text)


def builtin_tags() -> list[Tag]:
    """The tags every TaggedSerializer starts with."""
    return [
        Tag(" t", tuple, list, tuple),
        Tag(" b", bytes, lambda v: base64.b64encode(v).decode("ascii"), _b64decode),
        *_markup_tags(),
        Tag(" u", UUID, lambda v: v.hex, UUID),
        Tag(" d", _FlaskDate, _never, _flask_date),
        Tag(" dt", datetime, datetime.isoformat, datetime.fromisoformat),
        Tag(" da", date, date.isoformat, date.fromisoformat),
        Tag(" ti", time, time.isoformat, time.fromisoformat),
        Tag(" dec", Decimal, str, Decimal),
    ]


class _FlaskDate:
    """Placeholder type: " d" is only ever read (Flask's format), never written."""


def _never(value: Any) -> Any:  # pragma: no cover - no value is a _FlaskDate
    raise TypeError("the ' d' tag is read-only")


class TaggedSerializer:
    """Type-preserving JSON for session data; a `coatcheck.codec.Serializer`.

    Round-trips tuple, bytes, datetime (naive or aware), date, time, UUID, Decimal and
    markupsafe.Markup, plus every Tag given here or added with `register`. Values of any
    other non-JSON type raise TypeError, as plain JSON does. Never pickles.
    """

    def __init__(self, tags: Iterable[Tag] = ()) -> None:
        self._by_key: dict[str, Tag] = {}
        self._by_type: dict[type, Tag] = {}
        for tag in builtin_tags():
            self._add(tag)
        for tag in tags:
            self.register(tag)

    def register(self, tag: Tag, *, replace: bool = False) -> None:
        """Add a tag. Reusing a key or a type raises ConfigurationError unless `replace`."""
        if not isinstance(tag.key, str) or len(tag.key) < 2 or not tag.key.startswith(" "):
            raise ConfigurationError(f"tag key {tag.key!r} must be a space followed by a name")
        if tag.key == _DICT_TAG:
            raise ConfigurationError(f"tag key {_DICT_TAG!r} is reserved")
        if tag.type in (dict, list, str, int, float, bool, type(None)):
            raise ConfigurationError(f"{tag.type.__name__} is plain JSON and cannot be tagged")
        taken = self._by_key.get(tag.key) or self._by_type.get(tag.type)
        if taken is not None and not replace:
            raise ConfigurationError(
                f"a tag for key {taken.key!r} / type {taken.type.__name__} exists; pass replace=True"
            )
        for old in (self._by_key.get(tag.key), self._by_type.get(tag.type)):
            if old is not None:
                self._by_key.pop(old.key, None)
                self._by_type.pop(old.type, None)
        self._add(tag)

    def _add(self, tag: Tag) -> None:
        self._by_key[tag.key] = tag
        self._by_type[tag.type] = tag

    def dumps(self, value: Any) -> bytes:
        """Encode `value`; equal inputs of the same types give identical bytes."""
        return _Encoder(self._by_type).encode(value)

    def loads(self, data: bytes | str) -> Any:
        """Decode bytes from `dumps` (or Flask's tagged JSON). ValueError if corrupt."""
        try:
            return self.untag(_json.loads(data))
        except RecursionError as exc:
            raise ValueError("tagged JSON nested too deeply") from exc

    def untag(self, tree: Any) -> Any:
        """Turn parsed JSON back into Python values (children first, like Flask)."""
        kind = type(tree)
        if kind is list:
            return [self.untag(item) for item in tree]
        if kind is not dict:
            return tree
        plain = {key: self.untag(item) for key, item in tree.items()}
        if len(plain) != 1:
            return plain
        ((key, inner),) = plain.items()
        if key == _DICT_TAG and type(inner) is dict and len(inner) == 1:
            ((wrapped, item),) = inner.items()
            if wrapped.endswith("__"):
                return {wrapped[:-2]: item}
        tag = self._by_key.get(key)
        if tag is None:
            return plain
        try:
            return tag.from_json(inner)
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise ValueError(f"corrupt {key.strip()!r} tagged value: {exc}") from exc


class _Encoder:
    """One encoding pass: builds the plain JSON tree and notes what `_json` must know."""

    __slots__ = ("by_type", "stdlib")

    def __init__(self, by_type: dict[type, Tag]) -> None:
        self.by_type = by_type
        self.stdlib = False

    def encode(self, value: Any) -> bytes:
        tree = self.tag(value, 0)
        return _json.emit(tree, self.stdlib)

    def tag(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is float:
            self.stdlib = _json.check(value) or self.stdlib
            return value
        if depth >= _json.MAX_DEPTH:
            raise ValueError(f"session data nested deeper than {_json.MAX_DEPTH} levels (or circular)")
        if kind is dict:
            return self.tag_dict(value, depth)
        if kind is list:
            return self.tag_list(value, depth)
        tag = self.find(kind)
        if tag is not None:
            return {tag.key: self.tag(tag.to_json(value), depth + 1)}
        return self.tag_subclass(value, depth)

    def tag_list(self, value: list[Any], depth: int) -> list[Any]:
        # Plain leaves are copied inline: a call per string or number would double the cost.
        return [item if type(item) in _PLAIN else self.tag(item, depth + 1) for item in value]

    def tag_dict(self, value: dict[Any, Any], depth: int) -> Any:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not {type(key).__name__} ({key!r})")
                key = str.__str__(key)
            out[key] = item if type(item) in _PLAIN else self.tag(item, depth + 1)
        if len(out) == 1:
            ((key, item),) = out.items()
            if key.startswith(" "):
                return {_DICT_TAG: {key + "__": item}}
        return out

    def find(self, kind: type) -> Tag | None:
        for cls in kind.__mro__:
            tag = self.by_type.get(cls)
            if tag is not None:
                return tag
        return None

    def tag_subclass(self, value: Any, depth: int) -> Any:
        # Subclasses of the JSON types without a tag of their own travel as the base type.
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return self.tag(float.__float__(value), depth)
        if isinstance(value, dict):
            return self.tag_dict(value, depth)
        if isinstance(value, list):
            return self.tag_list(value, depth)
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
