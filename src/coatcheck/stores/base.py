"""The store protocol. Its docstrings are the contract every backend keeps.

Stores see only storage keys (a hash of the session id, see `coatcheck.crypto.storage_key`),
never the ids themselves. "Not found" and "expired" are normal results (None / False);
exceptions are for system failures only and are always `SessionStoreError`.

A store runs on asyncio. One that also runs under trio (through anyio) says so with the
class attribute `anyio_compatible = True`; under trio the middleware refuses the others
with a message naming the library (`coatcheck._anyloop`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from ..record import Meta, Record, SessionInfo

if TYPE_CHECKING:
    from ..codec import Serializer
    from ..crypto import Keyring


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
class FlashClaiming(Protocol):
    """A store that can take flash messages out of a record atomically, so a message queued
    once is shown once even when requests in several processes hold it at the same time."""

    async def claim(self, key: str, names: Collection[str]) -> frozenset[str]:
        """Delete the data keys `names` from the live record under `key`, atomically with
        respect to every other write; return the ones this call removed (those still present).
        Of concurrent calls for the same name, exactly one gets it. A missing record: empty set."""


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

    async def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        """The live sessions, most recently seen first, at most `limit` of them (None: all);
        the same shape `UserIndex.sessions_for` returns."""


class SessionTally(NamedTuple):
    """Live sessions counted, as `Browsing.tally` returns them (what `coatcheck sessions stats` shows)."""

    total: int
    anonymous: int
    users: int
    """How many distinct users have at least one live session."""
    by_age: tuple[int, ...]
    """Sessions per age bucket: `by_age[i]` counts ages (now - created) under `age_bounds[i]`
    and at least `age_bounds[i - 1]`."""
    top_users: tuple[tuple[str, int], ...]
    """The users with the most live sessions, most first (ties: by user id)."""


@runtime_checkable
class Browsing(Protocol):
    """An inventory that finds sessions without reading them all: by storage-key prefix (the id
    hints the command line shows), in batches with bounded memory, and counted in aggregate.

    `ordered` says whether `Inventory.list_sessions(limit=n)` reads about `n` records (an
    index on last seen: SQL, SQLite, memory) or must read every session to sort them (Redis),
    in which case a caller that bounds each call's time should page through `scan` instead.
    """

    ordered: bool

    async def find_sessions(self, prefix: str, *, limit: int) -> list[SessionInfo]:
        """Live sessions whose storage key starts with `prefix`, at most `limit` of them, in
        no particular order. Costs about `limit` lookups on an index or key range (Redis: a
        SCAN with a MATCH pattern), never a decode of every session."""

    def scan(self, *, batch: int = 1000) -> AsyncIterator[list[SessionInfo]]:
        """Every live session, in lists of at most `batch`, in no particular order. Each step
        is one bounded call (a keyset page, a SCAN cursor step), so memory stays bounded by
        `batch` and no single call waits on the whole store."""

    async def tally(self, age_bounds: Sequence[float], top: int) -> SessionTally:
        """Live sessions counted by age since creation and by user, with aggregate queries
        where the backend has them. `age_bounds` are increasing, in seconds; an age at or past
        the last bound is counted in the last bucket."""


class SyncTwin(Protocol):
    """Blocking twins of a store's per-request calls, for WSGI threads (Flask under gunicorn):
    the same keys, records and semantics as the store's `get`/`set`/`patch`/`touch`/`destroy`,
    without the event-loop bridge. A store that has one offers it through
    `sync_twin(store_timeout) -> SyncTwin | None` (None: this configuration has none); each
    call is bounded by `store_timeout` and raises SessionStoreError, as the async ones do."""

    def get(self, key: str) -> Record | None: ...

    def set(self, key: str, record: Record) -> None: ...

    def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool: ...

    def touch(self, key: str, meta: Meta) -> None: ...

    def destroy(self, key: str) -> None: ...


# ---- client-side sessions -------------------------------------------------------------------
RenderCookie = Callable[[str, str, float | None], bytes]
"""(cookie name, value, max_age) -> one Set-Cookie value with the session cookie's attributes."""


class OpenedSession(NamedTuple):
    """A client-side session read from the request's cookies.

    `session_id` is the random per-session id kept in the payload; `reseal` is True when the
    cookie must be re-issued even if nothing changes (it was opened with an older secret).
    """

    session_id: str
    record: Record
    reseal: bool


@runtime_checkable
class ClientSideStore(Protocol):
    """A store that keeps the whole record (data and meta) in the cookie itself.

    The middleware detects it once at start-up, binds it to its keyring, and then never
    calls the key/value `Store` methods: loading is `open`, committing is `seal`/`expire`.
    """

    debug: bool
    """True: `SessionTooLarge` reaches the adapter (a 500 naming the cause); False: it is
    logged as an error and no Set-Cookie is sent, so the browser keeps its previous cookie."""

    def bind(self, keyring: Keyring, serializer: Serializer) -> None:
        """Adopt the middleware's secrets and serializer (called once, at start-up)."""

    async def open(self, cookie_header: bytes | None, name: str, now: float) -> OpenedSession | None:
        """The session in the request's cookies, or None if absent, tampered, sealed for another
        cookie name, expired or revoked. Never raises on hostile input."""

    def seal(
        self,
        session_id: str,
        record: Record,
        *,
        name: str,
        cookie_header: bytes | None,
        max_age: float | None,
        render: RenderCookie,
    ) -> list[bytes]:
        """Set-Cookie values carrying `record`, plus expirations for cookies of this session
        the request had that are no longer needed (stale chunks). Raises SessionTooLarge."""

    def expire(self, *, name: str, cookie_header: bytes | None, render: RenderCookie) -> list[bytes]:
        """Set-Cookie values expiring every cookie of this session (all chunks)."""

    async def close(self) -> None:
        """Release resources (usually none)."""
