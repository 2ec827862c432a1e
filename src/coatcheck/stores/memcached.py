"""MemcachedStore: sessions in memcached, through aiomcache.

A record is one item, `<prefix><storage key>` -> the JSON record (`coatcheck.codec`), with
memcached's own expiry set to the record's deadline. Delta commits and touches are
read-modify-write cycles guarded by memcached's CAS (`gets` then `cas`), retried a bounded
number of times when another request wrote the item in between.

memcached can evict any item when it runs out of memory, and keeps no index: there is no
user index ("log out everywhere") and no inventory (count, list, purge) for this store.
Use Redis, SQL, MongoDB or SQLite when you need those.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar
from urllib.parse import urlsplit

try:
    import aiomcache
    from aiomcache.exceptions import ClientException, ValidationException
except ModuleNotFoundError as exc:  # keep the missing module's name for from_url
    raise ModuleNotFoundError(
        f"MemcachedStore needs the {exc.name!r} package: pip install 'coatcheck[memcached]'", name=exc.name
    ) from exc

from ..codec import DEFAULT_SERIALIZER, Serializer, decode_record, encode_record
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record
from ._toolkit import SerializerChoice, describe_error, guarded, redact_url
from .url import query_options, register_scheme

__all__ = ["THIRTY_DAYS", "MemcachedStore", "memcached_exptime"]

T = TypeVar("T")

THIRTY_DAYS = 2_592_000
"""memcached reads an expiry time above this many seconds as an absolute Unix timestamp."""

_MAX_KEY = 250  # memcached's limit, in bytes
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+\Z")  # printable ASCII, no space or control characters


def memcached_exptime(expires: float | None, now: float) -> int | None:
    """The expiry time to send memcached for a record that dies at `expires` (Unix seconds).

    0 means never; up to 30 days it is the number of seconds left (rounded up, so memcached
    never drops a live record early); beyond that it must be the absolute Unix time, since
    memcached reads any larger number as a timestamp. None: the record is already dead.
    """
    if expires is None:
        return 0
    remaining = math.ceil(expires - now)
    if remaining <= 0:
        return None
    if remaining <= THIRTY_DAYS:
        return remaining
    return math.ceil(expires)


class MemcachedStore(SerializerChoice):
    """Sessions in one memcached server; implements Store and PatchingStore (CAS-based).

    Give `host`/`port`, or an existing `aiomcache.Client` as `client` (the store then never
    closes it). Item keys are `prefix` + the storage key and must fit memcached's 250-byte,
    printable-ASCII key rule. Every operation is bounded by `timeout` seconds; a delta
    commit or touch retries its CAS write at most `cas_retries` times, then fails with
    SessionStoreError. No user index, no inventory (see the module docstring).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 11211,
        *,
        client: aiomcache.Client | None = None,
        prefix: str = "coatcheck:",
        timeout: float = 5.0,
        pool_size: int = 4,
        cas_retries: int = 32,
        serializer: Serializer = DEFAULT_SERIALIZER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if prefix and (not _KEY_CHARS.match(prefix) or len(prefix) > 100):
            raise ConfigurationError(
                f"MemcachedStore prefix {prefix!r} is not allowed: use up to 100 printable ASCII "
                "characters without spaces (e.g. 'coatcheck:')"
            )
        if not timeout > 0:
            raise ConfigurationError(
                f"MemcachedStore timeout must be a positive number of seconds, got {timeout!r}"
            )
        if cas_retries < 1:
            raise ConfigurationError(f"MemcachedStore cas_retries must be at least 1, got {cas_retries!r}")
        if pool_size < 1:
            raise ConfigurationError(f"MemcachedStore pool_size must be at least 1, got {pool_size!r}")
        if not 0 < port < 65536:
            raise ConfigurationError(f"MemcachedStore port must be 1-65535, got {port!r}")
        self.host, self.port = host, port
        self._owns_client = client is None
        self._client = client if client is not None else aiomcache.Client(host, port, pool_size=pool_size)
        self.prefix = prefix
        self._timeout = float(timeout)
        self._cas_retries = cas_retries
        self._serializer = serializer
        self._clock = clock

    def __repr__(self) -> str:
        return f"MemcachedStore({self.host!r}, {self.port})"

    # ---- plumbing -----------------------------------------------------------------------
    def _key(self, key: str) -> bytes:
        item = (self.prefix + key).encode()
        if len(item) > _MAX_KEY or not _KEY_CHARS.match(self.prefix + key):
            raise SessionStoreError(
                f"storage key is not a valid memcached key (printable ASCII, at most {_MAX_KEY} bytes with the prefix)"
            )
        return item

    async def _run(self, what: str, work: Callable[[aiomcache.Client], Awaitable[T]]) -> T:
        """aiomcache has no timeouts of its own: `timeout` bounds every call here, or a silent
        server would hang any caller that is not the middleware (a script, the CLI)."""
        client = self._client
        return await guarded(
            f"memcached store ({self.host}:{self.port})",
            what,
            lambda: work(client),
            errors=(ClientException, ValidationException, OSError),
            time_limit=self._timeout,
            describe=_describe,
            on_abort=lambda: self._forget_connections(client),
        )

    @staticmethod
    async def _forget_connections(client: aiomcache.Client) -> None:
        # aiomcache returns a connection interrupted mid-command to its pool, where the next
        # command would read the stale reply. Closing the idle connections drops it; the pool
        # opens fresh ones on demand. (clear() does not suspend while the pool is non-empty.)
        await client.close()

    def _decode(self, blob: bytes) -> Record:
        return decode_record(blob, self._serializer)

    def _encode(self, record: Record) -> bytes:
        return encode_record(record, self._serializer)

    # ---- Store --------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        item = self._key(key)
        blob = await self._run("loading a session", lambda c: c.get(item))
        if blob is None:
            return None
        record = self._decode(blob)
        return None if record.meta.is_expired(self._clock()) else record

    async def set(self, key: str, record: Record) -> None:
        item = self._key(key)
        exptime = memcached_exptime(record.expires, self._clock())
        if exptime is None:  # already dead: replacing the record means removing it
            await self._run("saving a session", lambda c: c.delete(item))
            return
        blob = self._encode(record)
        stored = await self._run("saving a session", lambda c: c.set(item, blob, exptime))
        if not stored:
            raise SessionStoreError(
                f"memcached store ({self.host}:{self.port}): the server did not store the session"
            )

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        def apply(record: Record) -> Record:
            for name in removed:
                if name not in changed:
                    record.data.pop(name, None)
            record.data.update(changed)
            record.meta = meta
            return record

        return await self._run("saving a session", lambda c: self._cas_update(c, self._key(key), apply))

    async def touch(self, key: str, meta: Meta) -> None:
        def replace_meta(record: Record) -> Record:
            record.meta = meta
            return record

        await self._run("touching a session", lambda c: self._cas_update(c, self._key(key), replace_meta))

    async def _cas_update(
        self, client: aiomcache.Client, item: bytes, change: Callable[[Record], Record]
    ) -> bool:
        """gets -> change -> cas until the write wins. False if the item is gone or dead,
        which is how a destroyed session stays destroyed."""
        for attempt in range(self._cas_retries):
            blob, token = await client.gets(item)
            now = self._clock()
            if blob is None or token is None:
                return False
            record = self._decode(blob)
            if record.meta.is_expired(now):
                return False
            record = change(record)
            exptime = memcached_exptime(record.expires, now)
            if exptime is None:  # the new metadata ends the session
                await client.delete(item)
                return True
            if await client.cas(item, self._encode(record), token, exptime):
                return True
            # another request wrote in between: back off a little, randomly, so the
            # contenders do not collide again in lockstep
            await asyncio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 10)))
        raise SessionStoreError(
            f"memcached store ({self.host}:{self.port}): gave up after {self._cas_retries} CAS retries "
            "(too many concurrent writes to one session)"
        )

    async def destroy(self, key: str) -> None:
        item = self._key(key)
        await self._run("destroying a session", lambda c: c.delete(item))

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()


def _describe(exc: BaseException, key: str | None = None) -> str:
    if isinstance(exc, ValidationException):
        return "invalid key or value"
    if isinstance(exc, ClientException):
        reply = exc.args[1] if len(exc.args) > 1 else b""
        detail = reply.decode("latin-1").strip() if isinstance(reply, bytes) else ""
        if "too large" in detail:
            return f"{detail} (memcached's item size limit is 1 MB unless started with -I)"
        return f"{exc.args[0] if exc.args else 'error'}: {detail}"[:300]
    return describe_error(exc, key)


@register_scheme("memcached")
def _from_url(url: str) -> MemcachedStore:
    """memcached://host:port?prefix=coatcheck:&timeout=5&pool_size=4 (one server)."""
    parts = urlsplit(url)
    shown = redact_url(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if "," in netloc:
        raise ConfigurationError(
            f"memcached URL {shown!r} names several servers, but aiomcache connects to one: "
            "use one host, e.g. 'memcached://127.0.0.1:11211'"
        )
    try:
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 11211
    except ValueError:
        raise ConfigurationError(
            f"malformed memcached URL {shown!r}: expected 'memcached://host:port', e.g. 'memcached://127.0.0.1:11211'"
        ) from None
    if parts.path not in ("", "/"):
        raise ConfigurationError(
            f"memcached URL {shown!r} has a path; memcached has no databases: use 'memcached://host:port?prefix=app:'"
        )
    options = query_options(url)
    kwargs: dict[str, Any] = {}
    try:
        if "prefix" in options:
            kwargs["prefix"] = options["prefix"]
        if "timeout" in options:
            kwargs["timeout"] = float(options["timeout"])
        if "pool_size" in options:
            kwargs["pool_size"] = int(options["pool_size"])
        if "cas_retries" in options:
            kwargs["cas_retries"] = int(options["cas_retries"])
    except ValueError:
        raise ConfigurationError(
            f"bad option in memcached URL {shown!r}: timeout is seconds, pool_size and cas_retries whole numbers"
        ) from None
    return MemcachedStore(host, port, **kwargs)
