"""RedisStore: sessions in Redis (standalone, TLS, Cluster, Sentinel) with native expiry.

Layout, for prefix "coatcheck:" and storage key K (a hash of the session id):

- ``coatcheck:s:K`` — a hash: field ``m`` the metadata (JSON), ``u`` the user id when
  bound, and one field ``.name`` per top-level data key (its JSON value). A hash makes a
  delta commit a few HSET/HDEL calls instead of a rewrite of the whole record, and a load
  one HGETALL. Its TTL is the record's deadline, so Redis reaps dead sessions itself.
- ``coatcheck:u:USER`` — a set of the storage keys bound to USER, expiring no earlier than
  its longest-lived member; stale members are dropped when read and by purge_expired().
- ``coatcheck:hints`` — the hint index: a sorted set of every storage key (all scores 0),
  so a lookup by hint is one ZRANGEBYLEX instead of a SCAN of the keyspace. The write
  scripts add to it and the destroy scripts remove from it (no extra command per request);
  entries of sessions Redis expired are dropped by later writes, lookups and purge_expired()
  (`_redis_hints`). Not kept on Cluster without a hash-tagged prefix (another slot).

Every per-request operation is one round trip: load = HGETALL; save = one EVALSHA (a Lua
script: replace or patch, deadline, user index, never resurrecting a deleted record);
touch = the patch script with no data; destroy = one EVALSHA. On Redis Cluster a session
is one key, so it needs no hash tag; the user index lives in other slots and is then
updated by a second, concurrent call (only when a user binding or index expiry changes),
unless the prefix itself carries a hash tag ("{app}:"), which puts everything in one slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..audit import revoked
from ..codec import DEFAULT_SERIALIZER, Serializer
from ..errors import ConfigurationError
from ..record import Meta, Record, SessionInfo
from ._redis_browse import RedisBrowsing
from ._redis_conn import DEFAULT_PREFIX, DEFAULT_SOCKET_TIMEOUT, DEFAULT_URL, Connection, Connections, resolve
from ._redis_hash import codec_of, decode_hash, encode_meta, failure
from ._redis_hints import prune_hints, sync_hints
from ._redis_lua import CLAIM, DESTROY, DESTROY_IF_OWNED, INDEX_ADD, PATCH, SET, Script
from ._redis_url import parse_url
from ._toolkit import SerializerChoice, store_errors, ttl_ms
from .url import register_scheme

if TYPE_CHECKING:
    from ._redis_io import Arg, Commands

__all__ = ["DEFAULT_PREFIX", "DEFAULT_SOCKET_TIMEOUT", "DEFAULT_URL", "Connection", "RedisStore", "parse_url"]

_BATCH = 500  # keys per pipeline / SCAN page in the operations calls


def _has_hash_tag(prefix: str) -> bool:
    """True if keys starting with `prefix` all hash to one Cluster slot ("{app}:...")."""
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 1) > start + 1


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# ---- the store --------------------------------------------------------------------------------
class RedisStore(RedisBrowsing, SerializerChoice):
    """Sessions in Redis: `RedisStore("redis://localhost:6379/0")` or `RedisStore(client=...)`.

    Accepts redis://, rediss://, redis+cluster://host:port,host:port and
    redis+sentinel://host:port,.../service_name?db=0, or an existing redis.asyncio client
    (`Redis`, a Sentinel `master_for(...)` client, or `RedisCluster`), which is used as
    given and left open by close(). Options given as arguments win over the URL's query.

    `prefix` starts every key ("coatcheck:"). `socket_timeout` (default 2 s) bounds every
    command and `socket_connect_timeout` (default: the same) every connection attempt,
    so a dead or hung server fails fast with SessionStoreError; connections are re-opened
    on the next call, so the app recovers by itself. `connection="pipelined"` (default for
    redis:// and rediss://) uses one automatically pipelined connection per event loop;
    `"pool"` uses redis-py's connection pool. Connections are opened lazily, per event loop
    and per process, so a store built before a fork or before the loop starts works.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str | None = None,
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
        connection: Connection | None = None,
        max_connections: int | None = None,
        serializer: Serializer = DEFAULT_SERIALIZER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        target = resolve(
            url,
            client=client,
            prefix=prefix,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            connection=connection,
            max_connections=max_connections,
        )
        from redis.exceptions import NoScriptError, RedisClusterException, RedisError  # resolve() checked it

        self._errors: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)
        self._no_script = NoScriptError
        self._serializer = serializer
        self._dumps, self._loads = codec_of(serializer)
        self._clock = clock
        self._where = target.where
        self._url_text = target.url_text
        self._connections = Connections(target.open)
        self._blocking = target.blocking
        cluster, resolved_prefix = target.cluster, target.prefix

        if not isinstance(resolved_prefix, str):
            raise ConfigurationError(f"prefix must be a string, got {type(resolved_prefix).__name__}")
        self.prefix = resolved_prefix
        self._session_prefix = resolved_prefix + "s:"
        self._user_prefix = resolved_prefix + "u:"
        # One script may only touch one Cluster slot; the user sets live in other slots,
        # unless the prefix's hash tag puts every key in the same one.
        self._index_in_script = not cluster or _has_hash_tag(resolved_prefix)
        self._index_flag = "1" if self._index_in_script else "0"
        # The hint index is one key: the scripts can keep it only in the sessions' slot.
        self._hints_key = resolved_prefix + "hints"
        self.hint_index = self._index_in_script

    def use_serializer(self, serializer: Serializer) -> None:
        self._serializer = serializer
        self._dumps, self._loads = codec_of(serializer)

    def __repr__(self) -> str:
        where = repr(self._url_text) if self._url_text is not None else self._where
        return f"RedisStore({where}, prefix={self.prefix!r})"

    @property
    def clock(self) -> Callable[[], float]:
        """The store's clock (Unix seconds), for layouts built on this store."""
        return self._clock

    @property
    def where(self) -> str:
        """Where the sessions live, for messages (never the password)."""
        return self._where

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's failure types, which the store reports as SessionStoreError."""
        return self._errors

    def sync_twin(self, store_timeout: float | None) -> Any:
        """`SyncTwin` for WSGI threads (`_redis_sync`); None: Cluster, Sentinel, a given client."""
        return None if self._blocking is None else self._blocking(self, store_timeout)

    def connection(self) -> Commands:
        """The connection for the running event loop in this process (opened on first use),
        shared by layouts built on this store (`ExpressRedisStore`)."""
        return self._connections.current()

    # ---- plumbing -----------------------------------------------------------------------
    def _failing(self, action: str, key: str | None = None) -> AbstractContextManager[None]:
        """Driver errors inside become SessionStoreError (the key never quoted)."""
        return store_errors(self._errors, f"Redis ({self._where}) could not {action}", key=key)

    async def _eval(
        self, commands: Commands, script: Script, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        try:
            return await commands.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._no_script:  # first use on this server (or after SCRIPT FLUSH)
            return await commands.execute("EVAL", script.text, len(keys), *keys, *args)

    def _ttl(self, deadline: float | None) -> int:
        return ttl_ms(deadline, self._clock())

    def _index_ttl(self, meta: Meta, ttl: int) -> int:
        """How long the user's set must live for this member. The absolute deadline bounds
        every later idle extension, so using it spares index updates on each touch."""
        if ttl < 0:
            return -1
        absolute = self._ttl(meta.absolute_deadline)
        return absolute if absolute > ttl else ttl

    def _script_argv(self, script: Script, key: str, meta: Meta) -> tuple[list[Arg], int]:
        """(the EVALSHA command of a write script up to its shared ARGV, the record's TTL in ms):
        ``EVALSHA sha numkeys KEYS... ARGV[1..8]`` (see `_redis_lua`); the caller appends the
        script's own arguments. `_ttl`, `_index_ttl` and the KEYS in one call, on one clock
        reading: this runs for every save and touch."""
        now = self._clock()
        idle, absolute = meta.idle_deadline, meta.absolute_deadline
        # The record's deadline (`meta.expires`) and `ttl_ms` of it, inline.
        deadline = absolute if idle is None or (absolute is not None and absolute < idle) else idle
        if deadline is None:
            ttl = index_ttl = -1
        else:
            ttl = math.ceil((deadline - now) * 1000)
            if ttl <= 0:
                ttl = 0
            index_ttl = ttl
            if absolute is not None:  # `_index_ttl`: the user's set lives as long as the longest member
                until = math.ceil((absolute - now) * 1000)
                if until > ttl:
                    index_ttl = until
        user = meta.user_id
        session_key = self._session_prefix + key
        if not self._index_in_script:
            argv: list[Arg] = ["EVALSHA", script.sha, 1, session_key]
        elif user is not None:
            argv = ["EVALSHA", script.sha, 3, session_key, self._hints_key, self._user_prefix + user]
        else:
            argv = ["EVALSHA", script.sha, 2, session_key, self._hints_key]
        argv += (
            self._index_flag,
            self._user_prefix,
            key,
            ttl,
            index_ttl,
            encode_meta(meta, self._dumps),
            "0" if user is None else "1",
            "" if user is None else user,
        )
        return argv, ttl

    def _destroy_keys(self, key: str) -> list[str]:
        """The destroy scripts' KEYS: the hash, and the hint index when the scripts keep it."""
        if self._index_in_script:
            return [self._session_prefix + key, self._hints_key]
        return [self._session_prefix + key]

    async def _reindex(self, commands: Commands, key: str, old: Any, meta: Meta, ttl: int) -> None:
        """Cluster without a hash-tagged prefix: the user sets are updated by their own calls."""
        previous = old[1:].decode() if isinstance(old, bytes) and old[:1] == b"+" else None
        user = meta.user_id
        calls = []
        if previous is not None and (previous != user or ttl == 0):
            calls.append(commands.execute("SREM", self._user_prefix + previous, key))
        if user is not None and ttl != 0 and (previous != user or meta.absolute_deadline is None):
            calls.append(
                self._eval(commands, INDEX_ADD, [self._user_prefix + user], [key, self._index_ttl(meta, ttl)])
            )
        if calls:
            await asyncio.gather(*calls)

    def _decode(self, reply: Any) -> Record | None:
        """An HGETALL reply (a flat list, or a dict from redis-py) as a live record, or None."""
        return decode_hash(reply, self._loads, self._where, self._clock())

    def _decode_meta(self, blob: Any) -> Meta | None:
        """Metadata for the operations view; a corrupt or missing field reads as None."""
        if not blob:
            return None
        try:
            return Meta.from_dict(self._loads(blob))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    # ---- Store --------------------------------------------------------------------------
    async def get(self, key: str) -> Record | None:
        try:  # not `with self._failing(...)`: a context manager per call costs more than the read
            reply = await self._connections.current().execute("HGETALL", self._session_prefix + key)
        except self._errors as exc:
            raise failure(self._where, "load a session", exc, key) from None
        return decode_hash(reply, self._loads, self._where, self._clock()) if reply else None

    async def set(self, key: str, record: Record) -> None:
        meta = record.meta
        argv, ttl = self._script_argv(SET, key, meta)
        dumps = self._dumps
        for name, value in record.data.items():
            argv.append("." + name)
            argv.append(dumps(value))
        try:
            commands = self._connections.current()
            try:  # not `_eval`: one coroutine fewer per save
                old = await commands.execute(*argv)
            except self._no_script:  # first use on this server (or after SCRIPT FLUSH)
                old = await commands.execute("EVAL", SET.text, *argv[2:])
            if not self._index_in_script:
                await self._reindex(commands, key, old, meta, ttl)
        except self._errors as exc:
            raise failure(self._where, "save a session", exc, key) from None

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        argv, ttl = self._script_argv(PATCH, key, meta)
        argv.append(len(changed))
        dumps = self._dumps
        for name, value in changed.items():
            argv.append("." + name)
            argv.append(dumps(value))
        if removed:
            argv.extend("." + name for name in removed)
        try:
            commands = self._connections.current()
            try:  # not `_eval`: one coroutine fewer per save
                old = await commands.execute(*argv)
            except self._no_script:  # first use on this server (or after SCRIPT FLUSH)
                old = await commands.execute("EVAL", PATCH.text, *argv[2:])
            if old is None:
                return False
            if not self._index_in_script:
                await self._reindex(commands, key, old, meta, ttl)
        except self._errors as exc:
            raise failure(self._where, "save a session", exc, key) from None
        return True

    async def touch(self, key: str, meta: Meta) -> None:
        argv, ttl = self._script_argv(PATCH, key, meta)
        argv.append(0)
        try:
            commands = self._connections.current()
            try:
                old = await commands.execute(*argv)
            except self._no_script:
                old = await commands.execute("EVAL", PATCH.text, *argv[2:])
            if old is not None and not self._index_in_script:
                await self._reindex(commands, key, old, meta, ttl)
        except self._errors as exc:
            raise failure(self._where, "touch a session", exc, key) from None

    async def claim(self, key: str, names: Collection[str]) -> frozenset[str]:
        """`FlashClaiming`: one script of HDELs; HDEL never creates a record that is gone."""
        if not names:
            return frozenset()
        with self._failing("claim flash messages", key):
            taken = await self._eval(
                self.connection(), CLAIM, [self._session_prefix + key], ["." + n for n in names]
            )
        return frozenset((t.decode() if isinstance(t, bytes) else str(t))[1:] for t in taken or ())

    async def destroy(self, key: str) -> None:
        with self._failing("destroy a session", key):
            commands = self.connection()
            old = await self._eval(
                commands, DESTROY, self._destroy_keys(key), [self._index_flag, self._user_prefix, key]
            )
            if not self._index_in_script and isinstance(old, bytes) and old[:1] == b"+":
                await commands.execute("SREM", self._user_prefix + old[1:].decode(), key)

    async def close(self) -> None:
        """Close this event loop's connection (a given client stays open). Connections of
        other, still running loops are left to those loops."""
        await self._connections.close(self._errors)

    # ---- user index ---------------------------------------------------------------------
    async def _members(self, commands: Commands, user_key: str) -> list[bytes]:
        return sorted(await commands.execute("SMEMBERS", user_key))

    async def sessions_for(self, user_id: str) -> list[SessionInfo]:
        user = str(user_id)
        user_key = self._user_prefix + user
        infos: list[SessionInfo] = []
        with self._failing("list a user's sessions"):
            commands = self.connection()
            members = await self._members(commands, user_key)
            stale: list[bytes] = []
            now = self._clock()
            for start in range(0, len(members), _BATCH):
                chunk = members[start : start + _BATCH]
                replies = await commands.pipeline(
                    [("HMGET", self._session_prefix + m.decode(), "m", "u") for m in chunk]
                )
                for member, (meta_blob, owner) in zip(chunk, replies, strict=True):
                    meta = self._decode_meta(meta_blob)
                    if meta is None or owner != user.encode() or meta.is_expired(now):
                        stale.append(member)
                    else:
                        infos.append(SessionInfo.from_meta(member.decode(), meta))
            if stale:  # members whose session ended or moved to another user
                await commands.execute("SREM", user_key, *stale)
        infos.sort(key=lambda info: info.last_seen, reverse=True)
        return infos

    async def destroy_user(self, user_id: str) -> int:
        user = str(user_id)
        user_key = self._user_prefix + user
        deleted = 0
        with self._failing("destroy a user's sessions"):
            commands = self.connection()
            members = await self._members(commands, user_key)
            for start in range(0, len(members), _BATCH):
                chunk = members[start : start + _BATCH]
                results = await asyncio.gather(
                    *(
                        self._eval(commands, DESTROY_IF_OWNED, self._destroy_keys(m.decode()), [user, m])
                        for m in chunk
                    )
                )
                deleted += sum(int(r) for r in results)
                await commands.execute("SREM", user_key, *chunk)
        revoked(self, user, deleted)
        return deleted

    # ---- inventory ----------------------------------------------------------------------
    async def count(self) -> int:
        """Live sessions (Redis deletes expired ones itself)."""
        total = 0
        with self._failing("count sessions"):
            async for batch in self._session_key_batches(self.connection()):
                total += len(batch)
        return total

    async def purge_expired(self) -> int:
        """Redis's own expiry does the real work; this deletes any record whose metadata says
        it is dead (e.g. written by a clock that ran behind), drops user-index and hint-index
        entries whose session is gone, and adds to the hint index the sessions saved before
        it existed. Returns how many records it deleted."""
        deleted = 0
        with self._failing("purge expired sessions"):
            commands = self.connection()
            now = self._clock()
            async for batch in self._session_key_batches(commands):
                metas = await self._metas(commands, batch)
                dead = [
                    k
                    for k, meta in zip(batch, metas, strict=True)
                    if meta is not None and meta.is_expired(now)
                ]
                for key in dead:
                    await self.destroy(key)
                deleted += len(dead)
                if self.hint_index and batch:  # sessions saved before the index existed join it
                    await sync_hints(self._eval, commands, self._hints_key, self._session_prefix, batch)
            if self.hint_index:
                await prune_hints(self._eval, commands, self._hints_key, self._session_prefix)
            pattern = (_glob_escape(self._user_prefix) + "*").encode()
            user_keys = [key async for key in commands.scan(pattern, 1000)]
            for user_key in set(user_keys):
                await self._prune_user_set(commands, user_key)
        return deleted

    async def _prune_user_set(self, commands: Commands, user_key: bytes) -> None:
        members = await self._members(commands, user_key.decode())
        for start in range(0, len(members), _BATCH):
            chunk = members[start : start + _BATCH]
            exists = await commands.pipeline([("EXISTS", self._session_prefix + m.decode()) for m in chunk])
            gone = [m for m, present in zip(chunk, exists, strict=True) if not present]
            if gone:
                await commands.execute("SREM", user_key, *gone)


@register_scheme("redis", "rediss", "redis+cluster", "redis+sentinel")
def _from_url(url: str) -> RedisStore:
    return RedisStore(url)
