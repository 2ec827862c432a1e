"""The driver connections behind SQLStore's direct MySQL/MariaDB statements (`_sql_my`): at
most `size` per event loop and per process, reused LIFO, with one retry rule. (PostgreSQL's
queue them instead: `_sql_pg_queue`.)"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

C = TypeVar("C")
R = TypeVar("R")

FORKS = [0]  # bumped in a forked child: cheaper than os.getpid() (a system call) per statement
os.register_at_fork(after_in_child=lambda: FORKS.__setitem__(0, FORKS[0] + 1))


class LoopPool(Generic[C]):
    """Connections of one driver, for one event loop and one process at a time: another loop
    or a forked child opens its own (the old ones are left to their loop, or to the parent).
    A connection the server closed while it sat idle (one of `lost`) is replaced and the
    work retried once on a new one: every statement run here is idempotent (an upsert, an
    update to given values or a compare-and-set, a delete).

    The slots are counted here rather than by an asyncio.Semaphore: a free slot is taken with
    no coroutine call (the semaphore's `async with` cost two per statement), and a slot freed
    while others wait goes straight to the oldest waiter."""

    def __init__(self, size: int, lost: tuple[type[BaseException], ...]) -> None:
        self._size = size
        self._lost = lost
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forks = -1
        self._idle: list[C] = []
        self._slots = _Slots(size)

    async def _open(self) -> C:
        raise NotImplementedError

    async def _discard(self, conn: C) -> None:
        """Close `conn`, which is broken or in an unknown state; errors are ignored."""
        raise NotImplementedError

    def _usable(self, conn: C) -> bool:
        """False for an idle connection the driver already knows is closed."""
        return True

    async def _run(self, work: Callable[..., Awaitable[R]], *args: Any) -> R:
        """`work(conn, *args)` on a connection of this pool (see the class docstring)."""
        loop = self._bind()
        slots = self._slots  # released to the same, should another loop rebind the pool meanwhile
        if slots.free > 0 and not slots.waiters:
            slots.free -= 1
        else:
            await slots.wait(loop)
        try:
            for attempt in (1, 2):
                conn: C | None = None
                while self._idle and conn is None:
                    conn = self._idle.pop()
                    if not self._usable(conn):
                        await self._discard(conn)
                        conn = None
                reused = conn is not None
                if conn is None:
                    conn = await self._open()
                try:
                    result = await work(conn, *args)
                except self._lost:
                    await self._discard(conn)
                    if reused and attempt == 1:
                        continue  # closed by the server while idle (a restart): once more, fresh
                    raise
                except BaseException:  # cancelled or timed out mid-statement: its state is unknown
                    await self._discard(conn)
                    raise
                self._idle.append(conn)
                return result
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            slots.release()

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._forks != FORKS[0]:
            self._loop, self._forks = loop, FORKS[0]
            self._idle = []
            self._slots = _Slots(self._size)
        return loop

    async def close(self) -> None:
        if self._loop is not asyncio.get_running_loop() or self._forks != FORKS[0]:
            return
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._discard(conn)


class _Slots:
    """A pool's slots: `free` ones, and the waiters a freed one goes to, oldest first."""

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size  # neither in use nor promised to a waiter
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until `release` hands the caller a slot."""
        handed: asyncio.Future[None] = loop.create_future()
        self.waiters.append(handed)
        try:
            await handed
        except BaseException:
            if handed.done() and not handed.cancelled():
                self.release()  # handed a slot, then cancelled before using it: pass it on
            elif handed in self.waiters:  # `release` drops cancelled ones it meets first
                self.waiters.remove(handed)
            raise

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            handed = waiters.popleft()
            if not handed.done():
                handed.set_result(None)
                return
        self.free += 1
