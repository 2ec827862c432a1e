"""PgDirect's statements: one queue per event loop, served by a few connections from the
loop's callbacks.

A caller hands over a prepared statement and awaits one future. The reader callback that
reads a statement's last result answers its caller and sends the next queued statement on
the same connection at once, so a connection is busy for the server's time alone. With a
pool (a connection held by a task from checkout to release) it was also busy while the
caller's task waited for its turn on the loop, and again while the next one did: under
load (32 requests in flight on 5 connections) that waiting was most of a connection's time.

One statement in flight per connection: no pipelining, since each write commits on its own
and waits for its WAL flush. A caller that stops waiting (cancelled, timed out) leaves its
statement to finish; the result is dropped and the connection goes on, its state known.
A connection lost under a statement it was handed after serving others (the server
restarted while it sat idle) is replaced and the statement sent once more on a new one:
every statement here is idempotent (an upsert, an update to given values or a
compare-and-set, a delete)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result

from .._anyloop import running_asyncio_loop
from ._sql_pool import FORKS

R = TypeVar("R")
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


class Job:
    """One statement (or, with no `name`, a request to borrow a connection) and its caller's future."""

    __slots__ = ("first", "future", "name", "params", "prepare", "retried", "sql", "types")

    def __init__(
        self,
        future: asyncio.Future[Any],
        name: bytes | None,
        sql: bytes = b"",
        types: Sequence[int] = (),
        params: Sequence[bytes | None] = (),
    ) -> None:
        self.future, self.name, self.sql, self.types, self.params = future, name, sql, types, params
        self.first: pq.abc.PGresult | None = None  # its first result, once read
        self.prepare = False  # its PREPARE is on the way (first use on this connection)
        self.retried = False


class Conn(Protocol):
    """What the queue needs of a connection (`_sql_pg._Connection`)."""

    pgconn: pq.abc.PGconn
    names: set[bytes]  # the statements prepared on it
    job: Job | None  # the one in flight on it
    fd: int  # its socket, as registered with the loop
    served: int  # statements it has answered

    def release_reader(self) -> None:
        """Drop the reader psycopg's own waits registered for the socket (after a loan)."""


class StatementQueue:
    """At most `size` connections per event loop and per process, made by `open_conn` and
    closed by `discard`: each loop has a lane of its own (a sync caller's claim may run on
    another loop, in another thread), and a forked child starts afresh."""

    def __init__(
        self,
        size: int,
        open_conn: Callable[[], Awaitable[Conn]],
        discard: Callable[[Conn], Coroutine[Any, Any, None]],
    ) -> None:
        self._new_lane = functools.partial(_Lane, size=size, open_conn=open_conn, discard=discard)
        self._lanes: dict[asyncio.AbstractEventLoop, _Lane] = {}
        self._last: _Lane | None = None  # the lane used last: nearly always the one wanted
        self._forks = FORKS[0]

    def run(
        self, name: bytes, sql: bytes, types: Sequence[int], params: Sequence[bytes | None]
    ) -> asyncio.Future[Any]:
        """Statement `name` (prepared from `sql` on a connection's first use) with text
        `params`: a future of its first result (a PGresult), or of the error it raised."""
        return self._lane().run(name, sql, types, params)

    def borrow(self, work: Callable[[Conn], Awaitable[R]]) -> Awaitable[R]:
        """`work(conn)` with a connection to itself (psycopg's cursors: the flash claim)."""
        return self._lane().borrow(work)

    async def close(self) -> None:
        """Close the idle connections of the running loop; busy and lent ones are left."""
        lane = self._lanes.get(running_asyncio_loop())  # type: ignore[arg-type]
        if lane is not None and self._forks == FORKS[0]:
            await lane.close()

    def _lane(self) -> _Lane:
        loop = running_asyncio_loop()
        lane = self._last
        if lane is not None and lane.loop is loop and self._forks == FORKS[0]:
            return lane
        if loop is None:
            raise RuntimeError("SQLStore's PostgreSQL statements need a running asyncio event loop")
        if self._forks != FORKS[0]:  # a forked child: the parent's connections are not ours
            self._lanes, self._forks = {}, FORKS[0]
        lane = self._lanes.get(loop)
        if lane is None:
            for old in [old for old in self._lanes if old.is_closed()]:
                del self._lanes[old]
            lane = self._lanes[loop] = self._new_lane(loop)
        self._last = lane
        return lane


class _Lane:
    """The queue and connections of one event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        size: int,
        open_conn: Callable[[], Awaitable[Conn]],
        discard: Callable[[Conn], Coroutine[Any, Any, None]],
    ) -> None:
        self.loop = loop
        self._size = size
        self._open_conn = open_conn
        self._discard = discard
        self._idle: list[Conn] = []
        self._queue: deque[Job] = deque()
        self._count = 0  # connections open, opening or lent
        self._tasks: set[asyncio.Task[None]] = set()  # openings and closings under way

    def run(
        self, name: bytes, sql: bytes, types: Sequence[int], params: Sequence[bytes | None]
    ) -> asyncio.Future[Any]:
        return self._submit(Job(self.loop.create_future(), name, sql, types, params))

    async def borrow(self, work: Callable[[Conn], Awaitable[R]]) -> R:
        for attempt in (1, 2):
            lent = self._submit(Job(self.loop.create_future(), None))
            try:
                conn: Conn = await lent
            except asyncio.CancelledError:
                if lent.done() and not lent.cancelled() and lent.exception() is None:  # lent, then cancelled
                    self._give_back(lent.result())
                raise
            reused = conn.served > 0
            try:
                result = await work(conn)
            except psycopg.OperationalError:
                self._drop(conn)
                if reused and attempt == 1:
                    continue  # closed by the server while idle (a restart): once more, fresh
                raise
            except BaseException:  # cancelled or timed out mid-statement: its state is unknown
                self._drop(conn)
                raise
            conn.served += 1
            self._give_back(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._unwatch(conn)
            self._count -= 1
            await self._discard(conn)

    # ---- the loop's side ------------------------------------------------------------------
    def _submit(self, job: Job) -> asyncio.Future[Any]:
        if self._idle:  # an idle connection means nothing is queued
            self._start(self._idle.pop(), job)
        else:
            self._queue.append(job)
            self._grow()
        return job.future

    def _grow(self) -> None:
        """Open one more connection for the queue, if the limit allows."""
        if self._count < self._size:
            self._count += 1
            self._spawn(self._opening())

    async def _opening(self) -> None:
        try:
            conn = await self._open_conn()
        except BaseException as exc:
            self._count -= 1
            if self._count == 0:  # no connection will serve the queue: every caller hears why
                error = exc if isinstance(exc, Exception) else psycopg.OperationalError("not connected")
                queue, self._queue = self._queue, deque()
                for job in queue:
                    if not job.future.done():
                        job.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        conn.job, conn.served, conn.fd = None, 0, conn.pgconn.socket
        self._watch(conn)
        self._next(conn)

    def _start(self, conn: Conn, job: Job) -> None:
        conn.job = job
        if job.name is None:  # a loan: psycopg's waits watch the socket meanwhile
            self._unwatch(conn)
            job.future.set_result(conn)
            return
        pgconn = conn.pgconn
        try:
            if job.name in conn.names:
                pgconn.send_query_prepared(job.name, job.params)
            else:
                job.prepare = True
                pgconn.send_prepare(job.name, job.sql, param_types=job.types)
            if pgconn.flush():  # a large write the socket did not take at once
                self.loop.add_writer(conn.fd, self._writable, conn)
        except psycopg.Error as exc:
            self._broken(conn, exc)

    def _readable(self, conn: Conn) -> None:
        pgconn = conn.pgconn
        try:
            pgconn.consume_input()
            job = conn.job
            if job is None:  # idle: a notice, or the server closing the connection
                if pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the server closed the connection")
                return
            while not pgconn.is_busy():  # no read before the socket is readable: one recv() fewer
                result = pgconn.get_result()
                if result is None:  # the statement is complete
                    self._finished(conn, job)
                    return
                if job.first is None:
                    job.first = result
        except psycopg.Error as exc:
            self._broken(conn, exc)

    def _writable(self, conn: Conn) -> None:
        try:
            if not conn.pgconn.flush():
                self.loop.remove_writer(conn.fd)
        except psycopg.Error as exc:
            self._broken(conn, exc)

    def _finished(self, conn: Conn, job: Job) -> None:
        first, job.first = job.first, None
        ok = first is not None and first.status in _OK
        if job.prepare:
            job.prepare = False
            if ok:
                conn.names.add(job.name)  # type: ignore[arg-type]  # a statement has a name
                self._start(conn, job)  # now the statement itself
                return
        conn.served += 1
        future = job.future
        if not future.done():  # else its caller stopped waiting: the result is dropped
            if ok:
                future.set_result(first)
            else:
                future.set_exception(
                    psycopg.OperationalError("no result") if first is None else error_from_result(first)
                )
        self._next(conn)

    def _next(self, conn: Conn) -> None:
        """`conn` is free: the oldest statement still waited for, else the idle list."""
        conn.job = None
        queue = self._queue
        while queue:
            job = queue.popleft()
            if not job.future.done():  # done: cancelled while queued
                self._start(conn, job)
                return
        self._idle.append(conn)

    def _broken(self, conn: Conn, error: psycopg.Error) -> None:
        job = conn.job
        self._drop(conn)
        if job is not None and not job.future.done():
            if isinstance(error, psycopg.OperationalError) and conn.served > 0 and not job.retried:
                job.retried, job.prepare, job.first = True, False, None
                self._queue.appendleft(job)
            else:
                job.future.set_exception(error)
        if self._queue:
            self._grow()

    def _give_back(self, conn: Conn) -> None:
        """A lent connection returns: our reader again, then the next statement."""
        conn.release_reader()
        self._watch(conn)
        self._next(conn)

    def _drop(self, conn: Conn) -> None:
        """Close `conn` (broken, or in an unknown state) and free its place."""
        conn.job = None
        if conn in self._idle:
            self._idle.remove(conn)
        self._unwatch(conn)
        self._count -= 1
        self._spawn(self._discard(conn))

    def _watch(self, conn: Conn) -> None:
        self.loop.add_reader(conn.fd, self._readable, conn)

    def _unwatch(self, conn: Conn) -> None:
        with contextlib.suppress(Exception):  # the loop may be closed
            self.loop.remove_reader(conn.fd)
        with contextlib.suppress(Exception):
            self.loop.remove_writer(conn.fd)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
