"""How the `coatcheck` command talks to a store: open it from a URL, run one piece of async
work with a bounded wait, and turn every failure the user can fix into one line on stderr.

Full session ids never appear: sessions are named by a hint, the start of their storage
key (SHA-256 of the id), which is what `SessionInfo.id_hint` holds too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import ConfigurationError, SessionStoreError
from .record import SessionInfo
from .stores.base import Inventory, Store
from .stores.sqlite import SQLiteStore
from .stores.url import from_url

T = TypeVar("T")
MIN_HINT = 4
STORE_TIMEOUT = 10.0


class Failure(click.ClickException):
    """One line on stderr, no traceback. Exit 1: the work failed; 2: wrong usage."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        # click >= 8.5 declares exit_code a ClassVar; this instance's own code shadows it.
        setattr(self, "exit_code", exit_code)  # noqa: B010

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


def redact(url: str) -> str:
    """The store URL with any password replaced, fit to print."""
    from .stores._toolkit import redact_url

    return redact_url(url)


def open_store(url: str) -> Store:
    """A store for `url`, refusing the ones the command line cannot usefully open."""
    if url.split("://", 1)[0].lower() == "memory":
        raise Failure(
            "memory:// sessions live inside one server process; the command line cannot see them. "
            "Use a shared store (sqlite:///..., redis://..., postgresql://...)",
            2,
        )
    try:
        store = from_url(url)
    except ConfigurationError as exc:
        raise Failure(str(exc), 2) from None
    if isinstance(store, SQLiteStore):
        if isinstance(store.path, Path) and not store.path.exists():
            # SQLiteStore would create an empty database: a typo would look like "no sessions".
            raise Failure(f"no SQLite database at {str(store.path)!r}: check the path in {url!r}", 1)
        # No memory map: a count or a page read touches the whole file once, and mapped pages
        # would count as this command's memory; requests, which revisit pages, keep the map.
        store = SQLiteStore(store.path, mmap_size=0, auto_purge=False)
    return store


def need(store: Store, capability: type, what: str) -> None:
    """Fail clearly when the store lacks an optional capability."""
    if isinstance(store, capability):
        return
    kind = type(store).__name__
    if kind == "CookieStore":
        raise Failure(f"cookie:// sessions live in the browsers' cookies: the server has none to {what}", 2)
    raise Failure(f"{kind} cannot {what}: it does not keep an index of its sessions", 2)


def run(url: str, work: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    """Open the store, run `work` on it in an event loop, close it; every error is a Failure."""

    async def main() -> T:
        store = open_store(url)
        try:
            return await work(store)
        finally:
            with contextlib.suppress(Exception):  # the work's own outcome is what matters
                await store.close()

    debug = os.environ.get("COATCHECK_DEBUG", "") not in ("", "0")
    try:
        return asyncio.run(main())
    except (Failure, KeyboardInterrupt):
        raise
    except ConfigurationError as exc:
        raise Failure(str(exc), 2) from None
    except SessionStoreError as exc:
        if debug:
            raise
        raise Failure(str(exc)) from None  # store errors name the store (password redacted)
    except TimeoutError:
        raise Failure(f"the store at {redact(url)} did not answer within {STORE_TIMEOUT:g}s") from None
    except Exception as exc:
        if debug:
            raise
        raise Failure(f"the store at {redact(url)} failed: {type(exc).__name__}: {exc}") from None


async def ask(call: Awaitable[T]) -> T:
    """One store call, bounded so an unreachable server cannot hang the command."""
    return await asyncio.wait_for(call, STORE_TIMEOUT)


async def listed(store: Store, limit: int | None = None) -> list[SessionInfo]:
    """The store's live sessions, most recently seen first (at most `limit`)."""
    assert isinstance(store, Inventory)
    return await ask(store.list_sessions(limit=limit))


def check_hint(hint: str) -> str:
    """A hint long enough to name one session, or a usage error."""
    hint = hint.strip()
    if len(hint) < MIN_HINT:
        raise Failure(f"an id hint needs at least {MIN_HINT} characters (from `coatcheck sessions list`)", 2)
    return hint
