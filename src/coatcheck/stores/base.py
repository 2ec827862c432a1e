"""The store protocol. Its docstrings are the contract every backend keeps.

Stores see only storage keys (a hash of the session id, see `coatcheck.crypto.storage_key`),
never the ids themselves. "Not found" and "expired" are normal results (None / False);
exceptions are for system failures only and are always `SessionStoreError`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

from ..record import Meta, Record, SessionInfo


@runtime_checkable
class Store(Protocol):
    """The four operations every server-side store implements."""

    async def get(self, key: str) -> Record | None:
        """The live record under `key`, or None if there is none or its deadline has passed
        (checked here, whether or not the backend has reaped it yet)."""

    async def set(self, key: str, record: Record) -> None:
        """Create or replace the record; it expires at `record.expires` (None: never)."""

    async def touch(self, key: str, meta: Meta) -> None:
        """Replace only the metadata (deadlines, last seen) of an existing live record.
        Never creates a record: touching a destroyed session is a no-op."""

    async def destroy(self, key: str) -> None:
        """Delete the record (and its user-index entry). Deleting a missing key is a no-op."""

    async def close(self) -> None:
        """Release connections and threads. The store may not be used afterwards."""


@runtime_checkable
class PatchingStore(Protocol):
    """A store that applies delta commits atomically, so concurrent requests that change
    different keys both keep their changes."""

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        """Set `changed` keys, delete `removed` keys and replace the metadata of an existing
        live record, atomically. Returns False, writing nothing, if the record is gone:
        a destroyed session is never resurrected."""


@runtime_checkable
class UserIndex(Protocol):
    """A store that knows which sessions belong to which user (`Meta.user_id`)."""

    async def sessions_for(self, user_id: str) -> list[SessionInfo]:
        """The live sessions bound to `user_id`."""

    async def destroy_user(self, user_id: str) -> int:
        """Delete every session of `user_id` ("log out everywhere"); returns how many."""


@runtime_checkable
class Inventory(Protocol):
    """A store whose sessions can be counted, listed and purged (the operations view)."""

    async def count(self) -> int:
        """How many live sessions the store holds."""

    async def purge_expired(self) -> int:
        """Delete every record past its deadline; returns how many were deleted."""

    async def list_sessions(self, *, limit: int | None = None) -> list[tuple[str, Meta]]:
        """(storage key, metadata) of live sessions, most recently seen first."""
