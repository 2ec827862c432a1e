"""RedisStore's hint index: `<prefix>hints`, a sorted set of every storage key, all scores 0,
so Redis keeps its members in key order and a lookup by hint is a ZRANGEBYLEX range
(`[HINT` to `(HINT\\xff`) instead of a SCAN of the whole keyspace.

The write scripts add a session's entry and the destroy scripts remove it, in the same
EVALSHA as the record itself (`_redis_lua`). Sessions that Redis expires leave their entry
behind: each new entry drops the ended ones among the few after it, a lookup drops the ones
it meets, and `purge_expired()` walks the whole index (and adds the sessions saved before
the index existed, which it meets on its SCAN of the keyspace).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._redis_lua import HINTS_SYNC, Script

if TYPE_CHECKING:
    from ._redis_io import Arg, Commands

    Eval = Callable[[Commands, Script, Sequence[str], Sequence[Arg]], Awaitable[Any]]

HINT_PAGE = 100  # index entries per lookup step (one ZRANGEBYLEX, one pipeline of HGETs)
SYNC_PAGE = 500  # index entries (or scanned keys) per HINTS_SYNC script in purge


def hint_range(prefix: str) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds of every member starting with `prefix` (0xff never occurs in UTF-8)."""
    start = prefix.encode()
    return b"[" + start, b"(" + start + b"\xff"


async def index_pages(
    commands: Commands, hints: str, low: bytes, high: bytes, page: int
) -> AsyncIterator[list[bytes]]:
    """The index's members from `low` to `high`, `page` per ZRANGEBYLEX; each page starts
    after the last member of the one before, so entries added or removed meanwhile never
    make a page repeat or skip the others."""
    while True:
        members = list(await commands.execute("ZRANGEBYLEX", hints, low, high, "LIMIT", 0, page))
        if members:
            yield members
        if len(members) < page:
            return
        low = b"(" + members[-1]


async def sync_hints(
    evaluate: Eval, commands: Commands, hints: str, session_prefix: str, keys: Sequence[bytes | str]
) -> int:
    """Make the index agree with the keyspace for `keys` (add the live, drop the gone), in
    one atomic script per `SYNC_PAGE`; returns how many entries it dropped."""
    dropped = 0
    for start in range(0, len(keys), SYNC_PAGE):
        chunk = keys[start : start + SYNC_PAGE]
        dropped += int(await evaluate(commands, HINTS_SYNC, [hints], [session_prefix, *chunk]))
    return dropped


async def prune_hints(evaluate: Eval, commands: Commands, hints: str, session_prefix: str) -> int:
    """Walk the whole index in pages of `SYNC_PAGE`, dropping the entries of ended sessions."""
    dropped = 0
    async for members in index_pages(commands, hints, b"-", b"+", SYNC_PAGE):
        dropped += await sync_hints(evaluate, commands, hints, session_prefix, members)
    return dropped
