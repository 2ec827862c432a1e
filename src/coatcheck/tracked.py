"""A dict that knows which of its keys changed: the data half of a Session."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .codec import Serializer

_MISSING: Any = object()
_NO_KEYS: frozenset[str] = frozenset()


# Values of these exact types cannot change in place: a loaded key holding one can only
# change through __setitem__/__delitem__, so reading it needs no serialized baseline.
_IMMUTABLE = frozenset((str, int, float, bool, bytes, type(None)))
# ...and of these, equal values of the same type serialize alike (not float: -0.0 == 0.0).
_EQUAL_ALIKE = frozenset((str, int, bool, bytes, type(None)))


class TrackedDict(dict[str, Any]):
    """A `dict` that records reads (`accessed`) and can tell which keys changed since
    `track()`: a loaded key whose value may be mutated in place (a list, a dict, anything
    not a plain str/int/float/bool/bytes/None) has its serialized value kept when it is first handed
    out and compared at `changes()`, so `s["cart"].append(x)` is a change of that key.
    A plain immutable value is kept as is when it is first overwritten, and compared by
    identity or same-type equality (the serializer is deterministic for equal values),
    falling back to the serialized comparison."""

    __slots__ = ("_accessed", "_baseline", "_before", "_loaded_keys", "_serializer", "_written")
    _loaded_keys: frozenset[str]
    _baseline: dict[str, bytes]
    _before: dict[str, Any]

    def __init__(self, serializer: Serializer) -> None:
        super().__init__()
        self._serializer = serializer
        self.track({})

    def start_tracking(self, serializer: Serializer) -> None:
        """`__init__` for an instance made by `dict.__new__` (empty, nothing tracked)."""
        self._serializer = serializer
        self._loaded_keys = _NO_KEYS
        self._baseline = {}
        self._before = {}
        self._written = False
        self._accessed = False

    def track(self, data: dict[str, Any]) -> None:
        """Hold `data` from now on, as loaded (unchanged, unread)."""
        dict.clear(self)
        dict.update(self, data)
        self._loaded_keys = frozenset(data)
        self._baseline = {}
        self._before = {}
        self._written = False
        self._accessed = False

    def settle(self) -> None:
        """What the dict holds now was just stored: it is the new baseline."""
        self._loaded_keys = frozenset(dict.keys(self))
        self._baseline = {}
        self._before = {}
        self._written = False

    def all_new(self) -> None:
        """Treat every key held now as added (the data moves to a new id)."""
        self._loaded_keys = frozenset()
        self._baseline = {}
        self._before = {}
        self._written = True

    @property
    def unchanged(self) -> bool:
        """True if nothing was written and no value that could be mutated in place was
        handed out: `changes()` is certainly empty, without serializing anything."""
        return not (self._written or self._baseline)

    def _before_write(self) -> None:
        """Called before every change; subclasses refuse or react (read-only, destroyed)."""
        self._accessed = True

    def _seen(self, key: str) -> None:
        """Keep the loaded value of `key` before it is first handed out or overwritten."""
        if key not in self._loaded_keys or key in self._baseline or key in self._before:
            return
        if dict.__contains__(self, key):
            value = dict.__getitem__(self, key)
            if type(value) in _IMMUTABLE:
                self._before[key] = value
            else:
                self._baseline[key] = self._serializer.dumps(value)

    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        value = dict.__getitem__(self, key)
        if type(value) not in _IMMUTABLE and key in self._loaded_keys and key not in self._baseline:
            self._baseline[key] = self._serializer.dumps(value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self._accessed = True
        if not dict.__contains__(self, key):
            return default
        return self[key]  # one home for the read rule (the baseline of a mutable loaded value)

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be strings, got {type(key).__name__}")
        self._before_write()
        self._seen(key)
        self._written = True
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self._before_write()
        self._written = True
        dict.__delitem__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._accessed = True
        return iter(list(dict.keys(self)))

    def __len__(self) -> int:
        self._accessed = True
        return dict.__len__(self)

    def __contains__(self, key: object) -> bool:
        self._accessed = True
        return dict.__contains__(self, key)

    def keys(self) -> Any:
        self._accessed = True
        return dict.keys(self)

    def values(self) -> Any:
        self._all_seen()
        return dict.values(self)

    def items(self) -> Any:
        self._all_seen()
        return dict.items(self)

    def _all_seen(self) -> None:
        self._accessed = True
        for key in self._loaded_keys:
            self._seen(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if not dict.__contains__(self, key):
            self._accessed = True
            if default is _MISSING:
                raise KeyError(key)
            return default
        value = self[key]
        del self[key]
        return value

    def popitem(self) -> tuple[str, Any]:
        if not dict.__len__(self):
            raise KeyError("popitem(): session is empty")
        key = next(reversed(dict.keys(self)))
        return key, self.pop(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self[key]
        self[key] = default
        return default

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        pairs: Iterable[tuple[str, Any]]
        if isinstance(other, Mapping):
            pairs = ((k, other[k]) for k in other)
        elif hasattr(other, "keys"):  # dict.update's rule: anything with keys() is a mapping
            keys = other.keys()
            pairs = ((k, other[k]) for k in keys)
        else:
            pairs = other
        for key, value in pairs:
            self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        self._before_write()
        self._written = True
        dict.clear(self)

    def copy(self) -> dict[str, Any]:
        """A shallow copy of the data, as a plain dict."""
        self._all_seen()
        return dict(dict.items(self))

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the data."""
        return self.copy()

    def changes(self) -> tuple[dict[str, Any], set[str]]:
        """(changed or added keys with their values, removed keys) since load."""
        if not (self._written or self._baseline):  # `unchanged`, without a property call
            return {}, set()
        dumps = self._serializer.dumps
        loaded, baseline, kept = self._loaded_keys, self._baseline, self._before
        changed: dict[str, Any] = {}
        for key, value in dict.items(self):
            if key not in loaded:
                changed[key] = value
                continue
            before = baseline.get(key)
            if before is None:
                if key not in kept:
                    continue  # never handed out nor overwritten: cannot have changed
                old = kept[key]
                if value is old:
                    continue
                if type(value) is type(old) and type(old) in _EQUAL_ALIKE:
                    # Equal values of these types serialize alike: an unequal one is reported
                    # changed without serializing either (at worst a write of the same bytes).
                    if value != old:
                        changed[key] = value
                    continue
                before = dumps(old)
            try:
                after = dumps(value)
            except TypeError as exc:
                raise TypeError(f"session[{key!r}] cannot be serialized: {exc}") from None
            if after != before:
                changed[key] = value
        # The loaded keys no longer held (a set difference: no comprehension frame).
        removed = set(loaded - dict.keys(self)) if loaded else set()
        return changed, removed
