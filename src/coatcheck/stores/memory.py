"""MemoryStore: a bounded in-process store, for tests and single-process apps."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

from ..audit import revoked
from ..codec import DEFAULT_SERIALIZER, Serializer, decode_record, encode_record
from ..errors import ConfigurationError
from ..record import Meta, Record, SessionInfo
from ._browse import Tally
from ._toolkit import SerializerChoice
from .base import SessionTally

_SWEEP_PER_WRITE = 2


class MemoryStore(SerializerChoice):
    """Sessions in a dict in this process: O(1) operations, at most `max_entries` sessions.

    When a write would exceed `max_entries`, the least recently used session *without a
    user* is evicted; a logged-in session (one bound by `login()`) is evicted, least
    recently used first, only when every stored session is logged in. So anonymous traffic,
    however heavy, cannot push out a logged-in user; `max_entries` logged-in users can.
    Expired entries are dropped when read and swept a few at a time on every write, so no
    background task is needed. Data is kept serialized, so requests never share objects.
    Everything is lost when the process exits. It runs under asyncio and trio alike.
    """

    anyio_compatible = True

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        serializer: Serializer = DEFAULT_SERIALIZER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError(f"MemoryStore(max_entries=...) must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._serializer = serializer
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, Meta]] = OrderedDict()
        self._anonymous: OrderedDict[str, None] = OrderedDict()  # keys without a user, LRU order
        self._users: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(max_entries={self.max_entries})"

    def _live(self, key: str) -> tuple[bytes, Meta] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1].is_expired(self._clock()):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        if key in self._anonymous:
            self._anonymous.move_to_end(key)
        return entry

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        self._anonymous.pop(key, None)
        if entry is not None and entry[1].user_id is not None:
            keys = self._users.get(entry[1].user_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._users[entry[1].user_id]

    def _put(self, key: str, record: Record) -> None:
        self._drop(key)
        self._entries[key] = (encode_record(record, self._serializer), record.meta)
        if record.meta.user_id is not None:
            self._users.setdefault(record.meta.user_id, set()).add(key)
        else:
            self._anonymous[key] = None
        self._sweep()

    def _sweep(self) -> None:
        now = self._clock()
        for _ in range(_SWEEP_PER_WRITE):
            oldest = next(iter(self._entries), None)
            if oldest is None or not self._entries[oldest][1].is_expired(now):
                break
            self._drop(oldest)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._anonymous or self._entries)))

    async def get(self, key: str) -> Record | None:
        entry = self._live(key)
        return None if entry is None else decode_record(entry[0], self._serializer)

    async def set(self, key: str, record: Record) -> None:
        self._put(key, record)

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        entry = self._live(key)
        if entry is None:
            return False
        record = decode_record(entry[0], self._serializer)
        for name in removed:
            record.data.pop(name, None)
        record.data.update(changed)
        record.meta = meta
        self._put(key, record)
        return True

    async def touch(self, key: str, meta: Meta) -> None:
        entry = self._live(key)
        if entry is not None:
            record = decode_record(entry[0], self._serializer)
            record.meta = meta
            self._put(key, record)

    async def destroy(self, key: str) -> None:
        self._drop(key)

    async def sessions_for(self, user_id: str) -> list[SessionInfo]:
        infos = []
        for key in list(self._users.get(str(user_id), ())):
            entry = self._live(key)
            if entry is not None:
                infos.append(SessionInfo.from_meta(key, entry[1]))
        return infos

    async def destroy_user(self, user_id: str) -> int:
        keys = list(self._users.get(str(user_id), ()))
        for key in keys:
            self._drop(key)
        revoked(self, user_id, len(keys))
        return len(keys)

    async def count(self) -> int:
        now = self._clock()
        return sum(1 for _, meta in self._entries.values() if not meta.is_expired(now))

    async def purge_expired(self) -> int:
        now = self._clock()
        dead = [key for key, (_, meta) in self._entries.items() if meta.is_expired(now)]
        for key in dead:
            self._drop(key)
        return len(dead)

    async def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        now = self._clock()
        live = [
            SessionInfo.from_meta(key, meta)
            for key, (_, meta) in reversed(self._entries.items())
            if not meta.is_expired(now)
        ]
        live.sort(key=lambda info: info.last_seen, reverse=True)
        return live[:limit] if limit is not None else live

    ordered = True  # everything is in memory: a sort is cheap at max_entries

    async def find_sessions(self, prefix: str, *, limit: int) -> list[SessionInfo]:
        now = self._clock()
        found: list[SessionInfo] = []
        for key, (_, meta) in self._entries.items():
            if len(found) >= limit:
                break
            if key.startswith(prefix) and not meta.is_expired(now):
                found.append(SessionInfo.from_meta(key, meta))
        return found

    async def scan(self, *, batch: int = 1000) -> AsyncIterator[list[SessionInfo]]:
        now = self._clock()
        live = [(key, meta) for key, (_, meta) in self._entries.items() if not meta.is_expired(now)]
        for start in range(0, len(live), batch):
            yield [SessionInfo.from_meta(key, meta) for key, meta in live[start : start + batch]]

    async def tally(self, age_bounds: Sequence[float], top: int) -> SessionTally:
        counter = Tally(age_bounds, self._clock())
        async for infos in self.scan():
            counter.add(infos)
        return counter.result(top)

    async def close(self) -> None:
        self._entries.clear()
        self._anonymous.clear()
        self._users.clear()
