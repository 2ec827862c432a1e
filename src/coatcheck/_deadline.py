"""A fixed timeout around many short awaits, with one timer per event loop instead of one per call.

`asyncio.timeout()` arms and cancels a timer handle per call (about 4 us each on uvloop),
which is more than a pipelined Redis read costs the client. Every store call of a runtime
has the same timeout, so deadlines come in the order calls start: the oldest pending call
always has the earliest deadline, and one timer, re-armed for the oldest pending call when it
fires, is enough. A call then costs a clock read and a dict insert and delete.
"""

from __future__ import annotations

import asyncio
from itertools import count


class _LoopWatch:
    """The pending calls of one event loop, oldest first, and the one timer watching them."""

    __slots__ = ("expired", "loop", "pending", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[int, tuple[asyncio.Task[object], float]] = {}
        self.expired: set[int] = set()
        self.timer: asyncio.TimerHandle | None = None

    def fire(self) -> None:
        """Cancel every call past its deadline; re-arm for the oldest one still pending."""
        self.timer = None
        now = self.loop.time()
        pending = self.pending
        while pending:
            token = next(iter(pending))
            task, deadline = pending[token]
            if deadline > now:
                self.timer = self.loop.call_at(deadline, self.fire)
                return
            del pending[token]
            self.expired.add(token)
            task.cancel()


class Deadlines:
    """The state of one fixed timeout (seconds; None: no limit) over many awaits. A caller
    arms it, awaits, asks `expired` on CancelledError and disarms in a `finally`, inline
    (`RuntimeBase.bounded`, `_toolkit.kept_to`: a coroutine of its own here would cost every
    store call one more layer), and raises its timeout for a call that outlives it, exactly
    as `asyncio.timeout(seconds)` around it would."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.watch: _LoopWatch | None = None  # the watch of the loop last used
        self.tokens = count()  # one per call, in the order calls start

    def watch_for(self, loop: asyncio.AbstractEventLoop) -> _LoopWatch:
        """The watch of `loop` (a new one when the loop changed)."""
        watch = self.watch
        if watch is None or watch.loop is not loop:
            watch = self.watch = _LoopWatch(loop)
        return watch

    def arm(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object]) -> tuple[_LoopWatch, int, int]:
        """Start watching one call of `task` (seconds must be set): (its watch, its token,
        the task's cancel count before it) for `expired` and `disarm`."""
        assert self.seconds is not None
        watch = self.watch
        if watch is None or watch.loop is not loop:
            watch = self.watch_for(loop)
        token = next(self.tokens)
        deadline = loop.time() + self.seconds
        watch.pending[token] = (task, deadline)
        if watch.timer is None:
            watch.timer = loop.call_at(deadline, watch.fire)
        return watch, token, task.cancelling()

    @staticmethod
    def expired(watch: _LoopWatch, token: int, task: asyncio.Task[object], cancelling: int) -> bool:
        """For a call that raised CancelledError: True if this deadline cancelled it and
        nobody else did (the call timed out), as `asyncio.timeout` decides."""
        if token in watch.expired:
            watch.expired.discard(token)
            return task.uncancel() <= cancelling
        return False

    @staticmethod
    def disarm(watch: _LoopWatch, token: int, task: asyncio.Task[object]) -> None:
        """Stop watching the call (in a `finally`)."""
        watch.pending.pop(token, None)
        if token in watch.expired:  # fired as the call finished: withdraw our cancel
            watch.expired.discard(token)
            task.uncancel()
