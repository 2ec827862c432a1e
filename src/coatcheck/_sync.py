"""The sync bridge: run the async SessionManager and stores from WSGI threads.

Design, chosen by measurement (docs/flask.md has the figures): every coroutine of a
process runs on ONE asyncio event loop, so a store's connections are only ever used from
the loop they were made on, but there is no dedicated loop thread. The request thread that
needs a result runs the loop itself (`run_until_complete`) while it waits, so the common
case costs no thread hand-off at all. With several request threads (gunicorn gthread) one
of them is the *leader* that runs the loop; the others queue their coroutine onto it with
`run_coroutine_threadsafe` and wait; a waiter whose result is not ready when the leader
leaves becomes the next leader. A background loop thread measured 1.4x slower per Redis
load (every call pays two cross-thread wake-ups), and under gunicorn gthread this sharing
beat both a lock around the loop and a loop per thread.

Fork safety: the loop and its lock belong to the process that made them. A forked child
(gunicorn workers of a preloaded app) builds its own on first use and never touches the
parent's: closing an inherited loop would unregister the parent's file descriptors from
the epoll instance both processes share, so inherited loops are kept, unused, forever.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class _ProcessLoop:
    """The event loop of one process and who is running it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.cond = threading.Condition(threading.Lock())
        self.leader = False  # True while some thread is inside run_until_complete

    def _lead(self) -> bool:
        with self.cond:
            if self.leader:
                return False
            self.leader = True
            return True

    def _step_down(self) -> None:
        with self.cond:
            self.leader = False
            self.cond.notify_all()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._lead():
            try:
                return self.loop.run_until_complete(coro)
            finally:
                self._step_down()
        # Another thread runs the loop: hand the coroutine over and wait, ready to take
        # over the loop if that thread leaves before our coroutine is done.
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        future.add_done_callback(self._notify)
        while True:
            with self.cond:
                while self.leader and not future.done():
                    self.cond.wait()
                if future.done():
                    return future.result()
                self.leader = True
            try:
                self.loop.run_until_complete(asyncio.wrap_future(future, loop=self.loop))
            finally:
                self._step_down()

    def _notify(self, _: object) -> None:
        with self.cond:
            self.cond.notify_all()


_state: _ProcessLoop | None = None
_state_lock = threading.Lock()
_inherited: list[object] = []  # parents' loops and stores, kept so they are never closed here
_helper: ThreadPoolExecutor | None = None
_fork_hooks: list[weakref.WeakMethod[Callable[[], None]]] = []


def keep_forever(obj: object) -> None:
    """Keep an object inherited from the parent process alive, so garbage collection never
    closes it (and its file descriptors, which the parent still uses)."""
    _inherited.append(obj)


def after_fork_in_child(method: Callable[[], None]) -> None:
    """Call the bound `method` in every forked child, right after fork() (single-threaded
    then), for as long as its object lives."""
    _fork_hooks[:] = [ref for ref in _fork_hooks if ref() is not None]
    _fork_hooks.append(weakref.WeakMethod(method))


def _forget_after_fork() -> None:
    global _state, _state_lock, _helper
    if _state is not None:
        _inherited.append(_state)
    _state = None
    _state_lock = threading.Lock()  # the parent's lock may have been held by another thread
    _helper = None
    live = []
    for ref in _fork_hooks:
        method = ref()
        if method is not None:
            method()
            live.append(ref)
    _fork_hooks[:] = live


os.register_at_fork(after_in_child=_forget_after_fork)


def _process_loop() -> _ProcessLoop:
    global _state
    state = _state
    if state is None or state.pid != os.getpid():
        with _state_lock:
            state = _state
            if state is None or state.pid != os.getpid():
                if state is not None:
                    _inherited.append(state)
                state = _state = _ProcessLoop()
    return state


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on this process's session loop and return its result
    (or raise its exception). Safe from any number of threads and across fork()."""
    running = _running_loop()
    if running is not None:
        if _state is not None and running is _state.loop:
            coro.close()
            raise RuntimeError(
                "a coroutine on coatcheck's session loop called a sync API: await the async one"
            )
        # A thread already running another loop (an async Flask view) cannot run ours;
        # a helper thread does it, and this thread blocks as the sync API promises.
        global _helper
        if _helper is None:
            _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coatcheck-sync")
        return _helper.submit(_process_loop().run, coro).result()
    return _process_loop().run(coro)
