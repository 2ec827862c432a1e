"""Flash messages: one top-level session key per message, shown once.

Who may show a message that several overlapping requests loaded: with a store that can
claim (`stores.base.FlashClaiming`: SQLite, Redis, SQL) the store decides, atomically, across
processes; otherwise the first request *in this process* (`FLASH_CLAIMS`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple, Protocol

from . import _sync
from .errors import SessionStoreError

logger = logging.getLogger("coatcheck")

# Each flash message is its own top-level key ("_flash.<time><random>" -> [category, message]),
# so a request that adds one and a concurrent request that takes another write disjoint keys
# and a delta commit keeps both.
FLASH_PREFIX = "_flash."


class Flash(NamedTuple):
    """One flash message; `str(flash)` is the message."""

    category: str
    message: Any

    def __str__(self) -> str:
        return str(self.message)


class FlashClaims:
    """Flash messages already taken by some request in this process.

    Two requests that loaded a session before either committed both hold its messages;
    the first `flashes()` call claims each one here and the other request skips it. A claim
    is kept `ttl` seconds (at most `max_entries` claims, oldest dropped first), long after
    the claiming request has committed and the store has stopped returning the message.
    """

    def __init__(self, ttl: float = 300.0, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}  # insertion order is expiry order (constant ttl)
        self._lock = threading.Lock()  # WSGI servers call flashes() from several threads

    def claim(self, key: str) -> bool:
        """True exactly once per key (within `ttl`): the caller may show the message."""
        now = time.monotonic()
        with self._lock:
            expiry = self._expiry
            while expiry:
                oldest = next(iter(expiry))
                if expiry[oldest] > now and len(expiry) < self.max_entries:
                    break
                del expiry[oldest]
            if key in expiry:
                return False
            expiry[key] = now + self.ttl
            return True


FLASH_CLAIMS = FlashClaims()
_last_flash_seq = 0


def new_flash_key() -> str:
    """A new, unique message key that sorts in the order messages were flashed."""
    global _last_flash_seq
    seq = max(time.time_ns(), _last_flash_seq + 1)
    _last_flash_seq = seq
    return f"{FLASH_PREFIX}{seq:016x}{secrets.token_hex(8)}"


class FlashClaimer(Protocol):
    """A runtime whose store claims flash messages (`ServerSideRuntime` on a FlashClaiming store)."""

    can_claim_flashes: bool

    async def claim_flashes(self, session: Any, names: list[str]) -> set[str]: ...


def _valid(entry: Any) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)


def to_take(data: Mapping[str, Any], category: str | None) -> list[str]:
    """The message keys a `flashes(category)` call removes, oldest first (malformed ones too)."""
    return [
        key
        for key in sorted(k for k in data if k.startswith(FLASH_PREFIX))
        if category is None or not _valid(data[key]) or data[key][0] == category
    ]


def can_claim(host: object) -> bool:
    return bool(getattr(host, "can_claim_flashes", False))


class Claim(NamedTuple):
    """What the store said about the stored messages a caller asked for.

    `names`: the ones this caller may show (None: the store does not claim, use
    `FLASH_CLAIMS`); `failed`: the store did not answer, so none is shown and all stay queued.
    """

    names: set[str] | None
    failed: bool = False


NO_STORE_CLAIM = Claim(None)


def claim_now(host: object, session: Any, names: list[str]) -> Claim:
    """Claim stored messages from sync code: the claim runs on the process's session loop and
    this thread waits for it (one store round trip, only when stored messages are taken)."""
    if not can_claim(host):
        return NO_STORE_CLAIM
    if not names:
        return Claim(set())
    claimer: FlashClaimer = host  # type: ignore[assignment]
    try:
        return Claim(_sync.run_sync(claimer.claim_flashes(session, names)))
    except SessionStoreError as exc:
        return _failed(exc)


async def claim(host: object, session: Any, names: list[str]) -> Claim:
    """`claim_now` for async code: awaited on the caller's loop, nothing blocks."""
    if not can_claim(host):
        return NO_STORE_CLAIM
    if not names:
        return Claim(set())
    claimer: FlashClaimer = host  # type: ignore[assignment]
    try:
        return Claim(await claimer.claim_flashes(session, names))
    except SessionStoreError as exc:
        return _failed(exc)


def _failed(exc: SessionStoreError) -> Claim:
    logger.error("coatcheck: could not claim flash messages (they stay queued): %s", exc)
    return Claim(set(), failed=True)


def take_claimed(
    data: Mapping[str, Any], keys: Collection[str], stored: Collection[str], claim: Claim
) -> tuple[list[str], list[Flash]]:
    """(keys to delete, messages to show) among `keys`: a stored message is shown if the store
    gave it to this caller or, without store claims, if `FLASH_CLAIMS` does; a message queued
    by this request (not in `stored`) is always shown. After a failed claim, stored messages
    are neither shown nor deleted."""
    delete: list[str] = []
    taken: list[Flash] = []
    claimed = claim.names
    for key in keys:
        is_stored = key in stored
        if is_stored and claim.failed:
            continue
        entry = data[key]
        delete.append(key)
        if not _valid(entry):
            continue
        if not is_stored or (key in claimed if claimed is not None else FLASH_CLAIMS.claim(key)):
            taken.append(Flash(entry[0], entry[1]))
    return delete, taken


def take(data: Mapping[str, Any], category: str | None) -> tuple[list[str], list[Flash]]:
    """(keys to delete, messages to show) for `flashes(category)` without a store claim: a
    message is shown only by the first caller in this process (`FLASH_CLAIMS`)."""
    keys = to_take(data, category)
    return take_claimed(data, keys, keys, NO_STORE_CLAIM)
