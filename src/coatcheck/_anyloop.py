"""Running under asyncio or under another async library (trio), through anyio.

Starlette apps run on asyncio or trio (anyio picks). coatcheck's own code needs only
three things from the event loop: a deadline, a worker thread, and to know which loop it
is on. On asyncio those are asyncio's (no anyio needed, no extra cost); elsewhere they are
anyio's, which is always installed where Starlette is. Stores whose drivers are asyncio-only
(Redis, SQL servers, MongoDB, memcached) are refused there with a message saying so; a store
that works under any loop sets the class attribute `anyio_compatible = True`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from .errors import ConfigurationError

T = TypeVar("T")

ANYIO_STORES = "MemoryStore, SQLiteStore or CookieStore"


# The running asyncio event loop, or None (under trio, or outside any loop): asyncio's own C
# function, which answers None instead of raising; every store call asks it.
running_asyncio_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop


def on_asyncio() -> bool:
    """True when the caller runs on an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def library_name() -> str:
    """The async library the caller runs under, for error messages."""
    if on_asyncio():
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    return "an async library other than asyncio"


def _anyio() -> Any:
    try:
        import anyio
        import anyio.to_thread
    except ImportError as exc:
        raise ConfigurationError(
            f"coatcheck runs under {library_name()} only through anyio: pip install anyio"
        ) from exc
    return anyio


def fail_after(seconds: float | None) -> AbstractContextManager[Any]:
    """anyio's deadline (raises TimeoutError), for code not running on asyncio."""
    return _anyio().fail_after(seconds)  # type: ignore[no-any-return]


async def in_thread(executor: Executor, call: Callable[[], T]) -> T:
    """Run `call` on `executor` (e.g. a store's single worker thread) and await its result,
    on asyncio or, through anyio, under trio."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        future = executor.submit(call)
        # Waiting on the future from one of anyio's threads keeps `call` on `executor`'s
        # thread, which owns the store's connection.
        return await _anyio().to_thread.run_sync(future.result)  # type: ignore[no-any-return]
    return await loop.run_in_executor(executor, call)


def needs_asyncio(what: str, target: object) -> str:
    """The message for a store that cannot run under the current async library."""
    return (
        f"{what} failed: {target!r} needs asyncio, but this app runs under {library_name()}: "
        f"use {ANYIO_STORES} there, or run the app on asyncio"
    )
