"""Flash messages: one top-level session key per message, claimed once per process."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

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


def take(data: Mapping[str, Any], category: str | None) -> tuple[list[str], list[Flash]]:
    """(keys to delete, messages to show) for `flashes(category)`, oldest first.

    Every matching key is deleted, also when another request claimed it (the store copy is
    stale); a message is shown only by the first caller in this process (`FLASH_CLAIMS`).
    """
    delete: list[str] = []
    taken: list[Flash] = []
    for key in sorted(k for k in data if k.startswith(FLASH_PREFIX)):
        entry = data[key]
        valid = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
        if valid and category is not None and entry[0] != category:
            continue
        delete.append(key)
        if valid and FLASH_CLAIMS.claim(key):
            taken.append(Flash(entry[0], entry[1]))
    return delete, taken
