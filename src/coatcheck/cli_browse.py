"""How the command line reads a big store: lookups by hint on the key index, pages read one
bounded call at a time (so no single call waits on a million sessions), a progress bar on a
terminal, and counts from aggregate queries where the store has them.

Stores with the `Browsing` capability get all of this; other inventories (MongoDB) are read
the old way, with one `list_sessions` call.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .cli_output import stderr
from .cli_store import Failure, ask, listed
from .record import Meta, SessionInfo
from .stores._browse import Tally
from .stores.base import Browsing, Inventory, SessionTally, Store

PAGE = 1000  # sessions per store call when reading a whole store
_SHOWN = 10  # an ambiguous hint: count matches up to this many, not all of them


async def find(store: Store, hint: str) -> tuple[str, Meta]:
    """(storage key, Meta) of the one live session whose storage key starts with `hint`."""
    searched = ""
    if callable(getattr(store, "find_steps", None)):  # Redis: the hint index, or SCAN steps
        matches, searched = await _find_stepwise(store, hint)
    elif isinstance(store, Browsing):
        matches = [info.storage_key for info in await ask(store.find_sessions(hint, limit=_SHOWN))]
    else:
        matches = [info.storage_key for info in await listed(store) if info.storage_key.startswith(hint)]
    if not matches:
        raise Failure(f"no live session has an id hint starting with {hint!r}{searched}")
    if len(matches) > 1:
        many = f"{_SHOWN} or more" if len(matches) >= _SHOWN else str(len(matches))
        raise Failure(f"{hint!r} matches {many} sessions: type more characters of the id hint")
    record = await ask(store.get(matches[0]))
    if record is None:
        raise Failure(f"the session {hint!r} ended while it was being looked up")
    return matches[0], record.meta


async def _find_stepwise(store: Any, hint: str) -> tuple[list[str], str]:
    """(storage keys starting with `hint`, where they were looked for), a store call per step
    (each within the time limit): the store's hint index first (Redis), then, when it has no
    match, the whole keyspace, which may take many steps in a database shared with other data."""
    if not getattr(store, "hint_index", False):
        steps = store.find_steps(hint, limit=_SHOWN)
        return await _steps(steps, f"Looking up {hint} with SCAN", "SCAN steps"), ""
    steps = store.hint_steps(hint, limit=_SHOWN)
    matches = await _steps(steps, f"Looking up {hint} in the hint index", "pages")
    if matches:
        return matches, ""
    # a session saved before the index existed has no entry (`purge` adds those): walk the keys
    what = f"Looking up {hint}: not in the hint index, walking the key space with SCAN"
    matches = await _steps(store.find_steps(hint, limit=_SHOWN), what, "SCAN steps")
    return matches, " (neither in the hint index nor in the key space)"


async def _steps(steps: AsyncIterator[list[SessionInfo]], what: str, unit: str) -> list[str]:
    """The storage keys found, `_SHOWN` at most, a store call per step with a progress line."""
    walk = steps.__aiter__()
    matches: list[str] = []
    done = 0
    with reading(what, unit) as advance:
        while len(matches) < _SHOWN:
            try:
                step = await ask(anext(walk))
            except StopAsyncIteration:
                break
            matches += [info.storage_key for info in step]
            done += 1
            advance(done)
    await walk.aclose()  # type: ignore[attr-defined]
    return matches


@contextmanager
def reading(what: str, unit: str = "sessions") -> Iterator[Any]:
    """A progress line on stderr while pages are read (only on a terminal); yields a callback
    taking the number of sessions (or `unit`) read so far."""
    if not stderr.is_terminal:
        yield lambda done: None
        return
    columns = (SpinnerColumn(), TextColumn(f"{what}: {{task.completed:,}} {unit}"), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done: bar.update(task, completed=done)


async def pages(store: Browsing, what: str) -> AsyncIterator[list[SessionInfo]]:
    """Every live session, a page per store call, each call bounded by the CLI's time limit."""
    steps = store.scan(batch=PAGE).__aiter__()
    done = 0
    with reading(what) as advance:
        while True:
            try:
                page = await ask(anext(steps))
            except StopAsyncIteration:
                return
            done += len(page)
            advance(done)
            if page:  # a store may hand back an empty page to keep each call short
                yield page


async def newest(store: Store, limit: int) -> tuple[list[SessionInfo], int]:
    """(the `limit` most recently seen live sessions, newest first; how many there are)."""
    assert isinstance(store, Inventory)
    if not isinstance(store, Browsing) or store.ordered:
        return await listed(store, limit), await ask(store.count())
    kept: list[SessionInfo] = []  # a bounded heap: memory holds `limit` sessions, not all
    total = 0
    async for page in pages(store, "Reading sessions"):
        total += len(page)
        kept = heapq.nlargest(limit, [*kept, *page], key=_last_seen)
    return kept, total


async def tally(store: Store, age_bounds: Sequence[float], top: int) -> SessionTally:
    """Counts by age and user: aggregate queries on stores that have them, else page by page."""
    if isinstance(store, Browsing):
        if store.ordered:
            return await ask(store.tally(age_bounds, top))
        counter = Tally(age_bounds, datetime.now(UTC).timestamp())
        async for page in pages(store, "Counting sessions"):
            counter.add(page)
        return counter.result(top)
    counter = Tally(age_bounds, datetime.now(UTC).timestamp())
    counter.add(await listed(store))
    return counter.result(top)


def _last_seen(info: SessionInfo) -> datetime:
    return info.last_seen
