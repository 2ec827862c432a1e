"""connect-redis's layout on a RedisStore's connections (`SessionMiddleware(compat="express")`).

One string key per session, ``<prefix><id>`` (prefix ``sess:`` unless the RedisStore was
given another), holding express-session's JSON, with a TTL (connect-redis: ``SET ... EX``
from ``cookie.expires``, else its ``ttl``; coatcheck: `ExpressFormat.deadline`).

- load: GET and PTTL in one round trip; the TTL is the idle deadline, since Node's
  ``touch`` slides it (``EXPIRE``) without rewriting the JSON.
- save of a new id: one SET with PX (connect-redis's ``set``).
- delta commit: read the JSON, apply this request's changed and removed keys to it in
  Python, and write it back with a Lua compare-and-set on the SHA-1 of what was read; if
  another writer (Node or Python) got there first, the script returns the new value and
  the delta is applied again (bounded retries). Values are never decoded by Redis's cjson,
  which would turn ``[]`` into ``{}`` and round numbers to 14 digits, so every field this
  request did not change, Node's included, is written back byte for byte as JSON.
  Node's own saves are whole-object SETs: a Node request that saves concurrently with a
  Python one still replaces the object (connect-redis has no delta commits).
- touch: PEXPIRE (connect-redis's ``touch`` is EXPIRE); destroy: DEL.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ..errors import SessionStoreError
from ..express import ExpressFormat, dumps, loads
from ..record import Meta, Record
from ._toolkit import store_errors, ttl_ms
from .redis import DEFAULT_PREFIX as COATCHECK_PREFIX
from .redis import RedisStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection

    from ._redis_io import Arg, Commands

DEFAULT_PREFIX = "sess:"  # connect-redis's
MAX_ATTEMPTS = 50  # a commit loses a round only to another commit that won: enough for 50 at once

# KEYS[1] the session; ARGV: [1] SHA-1 of the value the delta was applied to, [2] the new
# value, [3] TTL in ms (-1: keep the key's TTL; 0: dead, delete). Returns nil if the session
# is gone, 1 once written, or {current value} if someone else wrote it first.
_CAS = """
local current = redis.call('GET', KEYS[1])
if not current then return false end
if redis.sha1hex(current) ~= ARGV[1] then return {current} end
local ttl = tonumber(ARGV[3])
if ttl == 0 then
  redis.call('DEL', KEYS[1])
elseif ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
"""
_CAS_SHA = hashlib.sha1(_CAS.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


class ExpressRedisStore:
    """Sessions in connect-redis's layout, over `redis`'s connections (standalone, Cluster,
    Sentinel: one key per session, so no hash tags are needed).

    Built by `coatcheck.stores.compat.adopt_store`, which `SessionMiddleware(compat="express")` calls;
    construct it yourself only to pick a `prefix` other than the RedisStore's (connect-redis's
    ``prefix`` option: the RedisStore's default "coatcheck:" becomes connect-redis's "sess:").
    Implements Store and PatchingStore; connect-redis keeps no user index, so neither does this.
    """

    def __init__(self, redis: RedisStore, *, prefix: str | None = None) -> None:
        self.redis = redis
        if prefix is None:
            prefix = DEFAULT_PREFIX if redis.prefix == COATCHECK_PREFIX else redis.prefix
        self.prefix = prefix
        self._format: ExpressFormat | None = None
        self._clock = redis.clock

    def with_format(self, record_format: ExpressFormat) -> ExpressRedisStore:
        """Adopt the middleware's `ExpressFormat` (one middleware per store)."""
        self._format = record_format
        return self

    def __repr__(self) -> str:
        return f"ExpressRedisStore({self.redis!r}, prefix={self.prefix!r})"

    # ---- plumbing -----------------------------------------------------------------------
    @property
    def format(self) -> ExpressFormat:
        if self._format is None:
            raise RuntimeError(
                "this ExpressRedisStore has no format: pass it to SessionMiddleware(compat='express')"
            )
        return self._format

    def _commands(self) -> Commands:
        return self.redis.connection()

    def _failing(self, action: str, key: str) -> AbstractContextManager[None]:
        """Driver errors inside become SessionStoreError; the key (here the session id
        itself) is never quoted."""
        message = f"Redis ({self.redis!r}, connect-redis layout) could not {action}"
        return store_errors(self.redis.errors, message, key=key)

    def _ttl(self, deadline: float | None) -> int:
        return ttl_ms(deadline, self._clock())

    async def _cas(self, commands: Commands, name: str, args: list[Arg]) -> Any:
        try:
            return await commands.execute("EVALSHA", _CAS_SHA, 1, name, *args)
        except NoScriptError:  # first use on this server (or after SCRIPT FLUSH)
            return await commands.execute("EVAL", _CAS, 1, name, *args)

    # ---- Store --------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        name = self.prefix + key
        with self._failing("load a session", key):
            blob, pttl = await self._commands().pipeline([("GET", name), ("PTTL", name)])
        if blob is None or pttl == -2:
            return None
        now = self._clock()
        expires_at = None if pttl < 0 else now + pttl / 1000
        return self.format.record(loads(blob), now=now, expires_at=expires_at)

    async def set(self, key: str, record: Record) -> None:
        fmt = self.format
        ttl = self._ttl(fmt.deadline(record.meta))
        name = self.prefix + key
        with self._failing("save a session", key):
            if ttl == 0:  # connect-redis deletes a session whose cookie already expired
                await self._commands().execute("DEL", name)
                return
            blob = dumps(fmt.session_object(record.data, record.meta))
            if ttl > 0:
                await self._commands().execute("SET", name, blob, "PX", ttl)
            else:
                await self._commands().execute("SET", name, blob)

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        fmt = self.format
        name = self.prefix + key
        with self._failing("save a session", key):
            commands = self._commands()
            blob = await commands.execute("GET", name)
            for _ in range(MAX_ATTEMPTS):
                if blob is None:
                    return False  # destroyed meanwhile: never resurrected
                merged = dumps(fmt.merge(loads(blob), changed, removed, meta))
                ttl = self._ttl(fmt.deadline(meta))
                sha = hashlib.sha1(blob).hexdigest()  # noqa: S324 - compared with Redis's sha1hex
                reply = await self._cas(commands, name, [sha, merged, ttl])
                if reply is None:
                    return False
                if not isinstance(reply, list):
                    return True
                blob = reply[0]  # someone else wrote first: apply the delta to their value
        raise SessionStoreError(
            f"Redis ({self.redis!r}, connect-redis layout): a session changed under {MAX_ATTEMPTS} "
            "consecutive delta commits; giving up"
        )

    async def touch(self, key: str, meta: Meta) -> None:
        ttl = self._ttl(self.format.deadline(meta))
        name = self.prefix + key
        with self._failing("touch a session", key):
            if ttl == 0:
                await self._commands().execute("DEL", name)
            elif ttl > 0:  # PEXPIRE never creates a key: a destroyed session stays destroyed
                await self._commands().execute("PEXPIRE", name, ttl)

    async def destroy(self, key: str) -> None:
        with self._failing("destroy a session", key):
            await self._commands().execute("DEL", self.prefix + key)

    async def close(self) -> None:
        await self.redis.close()

    # ---- migrations ---------------------------------------------------------------------
    async def session_ids(self) -> AsyncIterator[str]:
        """Every session id under the prefix (SCAN; may repeat one while Redis resizes), for
        moving sessions to coatcheck's own layout when compat is switched off. The ids are
        live credentials: never log them."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"
        skip = len(self.prefix.encode())
        with store_errors(self.redis.errors, f"Redis ({self.redis!r}) could not list sessions"):
            async for name in self._commands().scan(pattern.encode(), 1000):
                yield name[skip:].decode()
