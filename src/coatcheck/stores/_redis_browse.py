"""RedisStore's operations view: listing, counting and looking sessions up by hint, with SCAN.

Redis keeps no index of our keys: every listing walks the keyspace with SCAN, which also
walks keys that are not ours (other apps, other prefixes, in one database). So no call here
waits on the whole keyspace: pages come back after at most `MAX_SCAN_CALLS` SCAN calls of
`SCAN_COUNT` keys each, short or even empty when the database holds mostly foreign keys, and
a lookup by hint reads the hint index (`_redis_hints`, one ZRANGEBYLEX page per step) and
only when that finds nothing (a session saved before the index existed, or Cluster without a
hash-tagged prefix, which keeps no index) walks the keyspace (`MATCH <prefix>s:<hint>*`), one
SCAN call per step, so the command line can bound each step's time and show progress. SCAN may return a key twice while Redis
resizes its table; the keys end in a hex digest, so 16 of its digits tell them apart,
kept as 8 bytes each (`Unseen`).
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..record import Meta, SessionInfo
from ._browse import Tally
from ._redis_hints import HINT_PAGE, hint_range, index_pages, sync_hints
from .base import SessionTally

if TYPE_CHECKING:
    from ._redis_io import Commands

BATCH = 500  # keys per pipeline of HGETs
SCAN_COUNT = 2000  # SCAN's COUNT hint: how much of the keyspace one SCAN call walks
MAX_SCAN_CALLS = 32  # SCAN calls per page at most: about 64k keys walked, tens of milliseconds


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def scan_steps(commands: Commands, pattern: bytes, count: int) -> AsyncIterator[list[bytes]]:
    """The keys matching `pattern`, one list per SCAN call (often empty). On a Redis Cluster
    redis-py walks every primary itself: lists of up to `count` matches, calls not bounded."""
    from redis.asyncio.cluster import RedisCluster

    if isinstance(getattr(commands, "client", None), RedisCluster):
        keys: list[bytes] = []
        async for key in commands.scan(pattern, count):
            keys.append(key)
            if len(keys) >= count:
                yield keys
                keys = []
        yield keys
        return
    cursor: Any = b"0"
    while True:
        cursor, found = await commands.execute("SCAN", cursor, "MATCH", pattern, "COUNT", count)
        yield list(found)
        if cursor in (b"0", 0, "0"):
            return


class Unseen:
    """Drops keys SCAN already returned. Each key is remembered as 8 bytes (16 hex digits of
    its digest), in 65,536 small sorted arrays picked by the top 16 bits: about 14 MiB at a
    million sessions, where a set of Python ints takes 60-80 MiB."""

    def __init__(self, skip: int) -> None:
        self._skip = skip
        self._buckets: list[array[int] | None] = [None] * (1 << 16)
        self._odd: set[bytes] = set()  # keys that do not end in hex digits (not ours, normally)

    def __call__(self, raws: list[bytes]) -> list[str]:
        fresh = []
        for raw in raws:
            if self._first(raw):
                fresh.append(raw[self._skip :].decode())
        return fresh

    def _first(self, raw: bytes) -> bool:
        try:
            mark = int(raw[-16:], 16)
        except ValueError:
            if raw in self._odd:
                return False
            self._odd.add(raw)
            return True
        bucket = self._buckets[mark >> 48]
        if bucket is None:
            bucket = self._buckets[mark >> 48] = array("Q")
        low = mark & _LOW_48
        at = bisect_left(bucket, low)
        if at < len(bucket) and bucket[at] == low:
            return False
        bucket.insert(at, low)
        return True


_LOW_48 = (1 << 48) - 1


class RedisBrowsing:
    """`Inventory` listing and `Browsing` for RedisStore (a mixin: it reads the store's prefix,
    clock, connection and metadata decoder)."""

    if TYPE_CHECKING:
        _session_prefix: str
        _hints_key: str
        hint_index: bool
        _clock: Callable[[], float]
        _eval: Any

        def connection(self) -> Commands: ...
        def _failing(self, action: str, key: str | None = None) -> AbstractContextManager[None]: ...
        def _decode_meta(self, blob: Any) -> Meta | None: ...

    ordered = False  # no index by last seen: a sorted listing reads every session

    async def _session_key_batches(self, commands: Commands) -> AsyncIterator[list[str]]:
        """Storage keys of every session record: a batch per `BATCH` keys or per
        `MAX_SCAN_CALLS` SCAN calls, whichever comes first (so possibly short or empty)."""
        pattern = (glob_escape(self._session_prefix) + "*").encode()
        unseen = Unseen(len(self._session_prefix.encode()))
        batch: list[str] = []
        calls = 0
        async for raws in scan_steps(commands, pattern, SCAN_COUNT):
            batch += unseen(raws)
            calls += 1
            if len(batch) >= BATCH or calls >= MAX_SCAN_CALLS:
                yield batch
                batch, calls = [], 0
        if batch or calls:
            yield batch

    async def _metas(self, commands: Commands, keys: list[str]) -> list[Meta | None]:
        if not keys:
            return []
        blobs = await commands.pipeline([("HGET", self._session_prefix + k, "m") for k in keys])
        return [self._decode_meta(blob) for blob in blobs]

    async def _live_infos(self, commands: Commands, keys: list[str], now: float) -> list[SessionInfo]:
        metas = await self._metas(commands, keys)
        return [
            SessionInfo.from_meta(key, meta)
            for key, meta in zip(keys, metas, strict=True)
            if meta is not None and not meta.is_expired(now)
        ]

    async def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        """Reads every session (Redis keeps no order by last seen); with `limit`, memory holds
        only the `limit` most recent. Callers that bound each call's time page with `scan`."""
        newest: list[SessionInfo] = []
        async for batch in self.scan(batch=BATCH):
            newest.extend(batch)
            if limit is not None and len(newest) > 4 * limit + BATCH:
                newest = heapq.nlargest(limit, newest, key=_last_seen)
        newest.sort(key=_last_seen, reverse=True)
        return newest[:limit] if limit is not None else newest

    async def hint_steps(self, prefix: str, *, limit: int) -> AsyncIterator[list[SessionInfo]]:
        """Live sessions whose storage key starts with `prefix`, from the hint index: one
        ZRANGEBYLEX page and one pipeline of HGETs per step, yielding that step's matches;
        entries whose session is gone are dropped on the way. Stops after `limit` matches.
        Yields nothing when the store keeps no index (`hint_index` false)."""
        if not self.hint_index:
            return
        with self._failing("look sessions up by hint"):
            commands = self.connection()
            low, high = hint_range(prefix)
            found = 0
            async for members in index_pages(commands, self._hints_key, low, high, HINT_PAGE):
                keys = [m.decode() for m in members]
                blobs = await commands.pipeline([("HGET", self._session_prefix + k, "m") for k in keys])
                if None in blobs:  # ended sessions (or a record without metadata: kept)
                    gone = [m for m, blob in zip(members, blobs, strict=True) if blob is None]
                    await sync_hints(self._eval, commands, self._hints_key, self._session_prefix, gone)
                now = self._clock()
                infos = []
                for key, blob in zip(keys, blobs, strict=True):
                    meta = self._decode_meta(blob)
                    if meta is not None and not meta.is_expired(now):
                        infos.append(SessionInfo.from_meta(key, meta))
                found += len(infos)
                yield infos
                if found >= limit:
                    return

    async def find_steps(self, prefix: str, *, limit: int) -> AsyncIterator[list[SessionInfo]]:
        """Like `hint_steps`, without the index: one SCAN call (MATCH `<prefix>s:<hint>*`,
        Redis filters the keys) per step, yielding that step's matches; stops after `limit`
        matches. Each step is one bounded round trip (two with matches)."""
        with self._failing("look sessions up by hint"):
            commands = self.connection()
            pattern = (glob_escape(self._session_prefix + prefix) + "*").encode()
            unseen = Unseen(len(self._session_prefix.encode()))
            found = 0
            async for raws in scan_steps(commands, pattern, SCAN_COUNT):
                infos = await self._live_infos(commands, unseen(raws), self._clock())
                found += len(infos)
                yield infos
                if found >= limit:
                    return

    async def find_sessions(self, prefix: str, *, limit: int) -> list[SessionInfo]:
        """The hint index, then (when it has no match) SCAN with a MATCH pattern."""
        found: list[SessionInfo] = []
        async for infos in self.hint_steps(prefix, limit=limit):
            found += infos
        if not found:
            async for infos in self.find_steps(prefix, limit=limit):
                found += infos
        return found[:limit]

    async def scan(self, *, batch: int = 1000) -> AsyncIterator[list[SessionInfo]]:
        """Live sessions in pages of at most `batch`; a page comes back early (short, even
        empty) after `MAX_SCAN_CALLS` SCAN calls, so no page waits on the whole keyspace."""
        with self._failing("list sessions"):
            commands = self.connection()
            now = self._clock()
            pending: list[str] = []
            async for keys in self._session_key_batches(commands):
                pending.extend(keys)
                while len(pending) >= batch:
                    chunk, pending = pending[:batch], pending[batch:]
                    yield await self._live_infos(commands, chunk, now)
                if len(keys) < BATCH:  # this batch ended on the SCAN-call bound (or the end)
                    chunk, pending = pending, []
                    yield await self._live_infos(commands, chunk, now)
            if pending:
                yield await self._live_infos(commands, pending, now)

    async def tally(self, age_bounds: Sequence[float], top: int) -> SessionTally:
        counter = Tally(age_bounds, self._clock())
        async for infos in self.scan():
            counter.add(infos)
        return counter.result(top)


def _last_seen(info: SessionInfo) -> Any:
    return info.last_seen
