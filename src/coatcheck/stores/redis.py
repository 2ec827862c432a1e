"""RedisStore: sessions in Redis (standalone, TLS, Cluster, Sentinel) with native expiry.

Layout, for prefix "coatcheck:" and storage key K (a hash of the session id):

- ``coatcheck:s:K`` — a hash: field ``m`` the metadata (JSON), ``u`` the user id when
  bound, and one field ``.name`` per top-level data key (its JSON value). A hash makes a
  delta commit a few HSET/HDEL calls instead of a rewrite of the whole record, and a load
  one HGETALL. Its TTL is the record's deadline, so Redis reaps dead sessions itself.
- ``coatcheck:u:USER`` — a set of the storage keys bound to USER, expiring no earlier than
  its longest-lived member; stale members are dropped when read and by purge_expired().

Every per-request operation is one round trip: load = HGETALL; save = one EVALSHA (a Lua
script: replace or patch, deadline, user index, never resurrecting a deleted record);
touch = the patch script with no data; destroy = one EVALSHA. On Redis Cluster a session
is one key, so it needs no hash tag; the user index lives in other slots and is then
updated by a second, concurrent call (only when a user binding or index expiry changes),
unless the prefix itself carries a hash tag ("{app}:"), which puts everything in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..codec import DEFAULT_SERIALIZER, Serializer
from ..errors import ConfigurationError, SessionStoreError
from ..record import Meta, Record, SessionInfo
from ._redis_url import parse_url, redact, seconds, ssl_context, tls_settings, whole_number
from .url import missing_extra, register_scheme

if TYPE_CHECKING:
    from ..express import ExpressFormat
    from ._redis_io import Arg, Commands
    from .express_redis import ExpressRedisStore

Connection = Literal["pipelined", "pool"]

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_PREFIX = "coatcheck:"
DEFAULT_SOCKET_TIMEOUT = 2.0
_BATCH = 500  # keys per pipeline / SCAN page in the operations calls

# ---- Lua --------------------------------------------------------------------------------------
# ARGV shared by the write scripts: [1] "1" if the script maintains the user index, [2] the
# user-set key prefix, [3] the storage key (the set member), [4] the record TTL in ms (-1: none,
# 0: already dead: delete, never write), [5] the user set's TTL, [6] metadata JSON,
# [7] "1" if bound to a user, [8] the user id.
_LUA_HELPERS = """
local function each_chunk(command, key, argv, first, last)
  -- Lua's unpack() has a stack limit: send long argument lists in slices (of even length)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call(command, key, unpack(argv, i, j))
    i = j + 1
  end
end
local function index_add(ukey, member, ttl)
  local current = redis.call('PTTL', ukey)
  redis.call('SADD', ukey, member)
  if ttl < 0 then
    if current >= 0 then redis.call('PERSIST', ukey) end
  elseif current == -2 or (current >= 0 and current < ttl) then
    redis.call('PEXPIRE', ukey, ttl)
  end
end
local function marker(old)
  if old then return '+' .. old end
  return '-'
end
"""

_SET_BODY = """
local key, member, ttl = KEYS[1], ARGV[3], tonumber(ARGV[4])
local indexing, bound, user = ARGV[1] == '1', ARGV[7] == '1', ARGV[8]
local old = redis.call('HGET', key, 'u')
redis.call('DEL', key)
if indexing and old and (ttl == 0 or not bound or old ~= user) then
  redis.call('SREM', ARGV[2] .. old, member)
end
if ttl ~= 0 then
  if bound then
    redis.call('HSET', key, 'm', ARGV[6], 'u', user)
  else
    redis.call('HSET', key, 'm', ARGV[6])
  end
  each_chunk('HSET', key, ARGV, 9, #ARGV)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  if indexing and bound then index_add(KEYS[2], member, tonumber(ARGV[5])) end
end
return marker(old)
"""

# ARGV[9]: how many field/value pairs follow; then the pairs; then the fields to delete.
_PATCH_BODY = """
local key, member, ttl = KEYS[1], ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', key) == 0 then return false end
local indexing, bound, user = ARGV[1] == '1', ARGV[7] == '1', ARGV[8]
local old = redis.call('HGET', key, 'u')
if ttl == 0 then
  redis.call('DEL', key)
  if indexing and old then redis.call('SREM', ARGV[2] .. old, member) end
  return marker(old)
end
local removed = 10 + 2 * tonumber(ARGV[9])
redis.call('HSET', key, 'm', ARGV[6])
each_chunk('HSET', key, ARGV, 10, removed - 1)
each_chunk('HDEL', key, ARGV, removed, #ARGV)
if bound then
  redis.call('HSET', key, 'u', user)
elseif old then
  redis.call('HDEL', key, 'u')
end
if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
if indexing then
  if old and (not bound or old ~= user) then redis.call('SREM', ARGV[2] .. old, member) end
  if bound then index_add(KEYS[2], member, tonumber(ARGV[5])) end
end
return marker(old)
"""

# ARGV: [1] "1" if indexing, [2] user-set key prefix, [3] storage key.
_DESTROY_BODY = """
local old = redis.call('HGET', KEYS[1], 'u')
redis.call('DEL', KEYS[1])
if old and ARGV[1] == '1' then redis.call('SREM', ARGV[2] .. old, ARGV[3]) end
return marker(old)
"""

# ARGV: [1] the user id. Deletes the record only if it is still bound to that user.
_DESTROY_IF_OWNED_BODY = """
if redis.call('HGET', KEYS[1], 'u') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS[1] a user set; ARGV: [1] member, [2] TTL in ms. (Cluster: the index's own call.)
_INDEX_ADD_BODY = """
index_add(KEYS[1], ARGV[1], tonumber(ARGV[2]))
return 1
"""


@dataclass(frozen=True, slots=True)
class _Script:
    text: str
    sha: str

    @classmethod
    def of(cls, body: str) -> _Script:
        text = _LUA_HELPERS + body
        return cls(text, hashlib.sha1(text.encode()).hexdigest())  # noqa: S324 - Redis names scripts by SHA-1


_SET = _Script.of(_SET_BODY)
_PATCH = _Script.of(_PATCH_BODY)
_DESTROY = _Script.of(_DESTROY_BODY)
_DESTROY_IF_OWNED = _Script.of(_DESTROY_IF_OWNED_BODY)
_INDEX_ADD = _Script.of(_INDEX_ADD_BODY)


def _client_name(name: str | None) -> str | None:
    if name and any(c.isspace() for c in name):
        raise ConfigurationError(f"client_name {name!r} must not contain spaces (Redis refuses them)")
    return name or None


def _has_hash_tag(prefix: str) -> bool:
    """True if keys starting with `prefix` all hash to one Cluster slot ("{app}:...")."""
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 1) > start + 1


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# ---- the store --------------------------------------------------------------------------------
class RedisStore:
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
        io = _load_io()
        from redis.exceptions import NoScriptError, RedisClusterException, RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)
        self._no_script = NoScriptError
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        self._clock = clock

        if client is not None:
            if url is not None:
                raise ConfigurationError("RedisStore takes a URL or client=..., not both")
            if connection is not None or socket_timeout is not None or socket_connect_timeout is not None:
                raise ConfigurationError(
                    "RedisStore(client=...) uses the client's own connection settings: "
                    "configure timeouts on the client instead"
                )
            cluster = io.check_client(client)
            given = io.ClientCommands(client, owned=False)
            self._open: Callable[[], Commands] = lambda: given
            self._where = f"given {type(client).__name__} client"
            self._url_text: str | None = None
            resolved_prefix = DEFAULT_PREFIX if prefix is None else prefix
        else:
            url_text = DEFAULT_URL if url is None else url
            if not isinstance(url_text, str):
                raise ConfigurationError(
                    f"RedisStore needs a URL string or client=..., got {type(url).__name__}"
                )
            parsed = parse_url(url_text)
            options = parsed.options
            resolved_prefix = prefix if prefix is not None else options.get("prefix", DEFAULT_PREFIX)
            timeout = seconds(
                socket_timeout
                if socket_timeout is not None
                else options.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT),
                "socket_timeout",
            )
            connect_timeout = seconds(
                socket_connect_timeout
                if socket_connect_timeout is not None
                else options.get("socket_connect_timeout", timeout),
                "socket_connect_timeout",
            )
            mode = connection if connection is not None else options.get("connection", "pipelined")
            if mode not in ("pipelined", "pool"):
                raise ConfigurationError(f"connection must be 'pipelined' or 'pool', got {mode!r}")
            if max_connections is None and "max_connections" in options:
                max_connections = whole_number(
                    options["max_connections"], "max_connections", redact(url_text)
                )
            if max_connections is not None and max_connections < 1:
                raise ConfigurationError(f"max_connections must be at least 1, got {max_connections}")
            self._open = io.opener(
                parsed,
                socket_timeout=timeout,
                connect_timeout=connect_timeout,
                pipelined=mode == "pipelined",
                max_connections=max_connections,
                client_name=_client_name(options.get("client_name")),
                tls=tls_settings(options) if parsed.tls else None,
                ssl_context=ssl_context,
            )
            cluster = parsed.kind == "cluster"
            self._where = parsed.describe()
            self._url_text = redact(url_text)

        if not isinstance(resolved_prefix, str):
            raise ConfigurationError(f"prefix must be a string, got {type(resolved_prefix).__name__}")
        self.prefix = resolved_prefix
        self._session_prefix = resolved_prefix + "s:"
        self._user_prefix = resolved_prefix + "u:"
        # One script may only touch one Cluster slot; the user sets live in other slots,
        # unless the prefix's hash tag puts every key in the same one.
        self._index_in_script = not cluster or _has_hash_tag(resolved_prefix)
        self._index_flag = "1" if self._index_in_script else "0"

        # (event loop, process id, its connection): read in one go, so two threads running
        # two loops never pick up each other's connection
        self._last: tuple[asyncio.AbstractEventLoop | None, int, Commands | None] = (None, 0, None)
        self._pid = 0
        self._by_loop: dict[asyncio.AbstractEventLoop, Commands] = {}
        self._switch_lock = threading.Lock()

    def __repr__(self) -> str:
        where = repr(self._url_text) if self._url_text is not None else self._where
        return f"RedisStore({where}, prefix={self.prefix!r})"

    def with_format(self, record_format: ExpressFormat) -> ExpressRedisStore:
        """These connections in connect-redis's layout (`SessionMiddleware(compat="express")`)."""
        from .express_redis import ExpressRedisStore

        return ExpressRedisStore(self).with_format(record_format)

    # ---- plumbing -----------------------------------------------------------------------
    def _commands(self) -> Commands:
        """The connection for this event loop in this process (opened on first use)."""
        loop = asyncio.get_running_loop()
        last_loop, last_pid, commands = self._last
        if last_loop is loop and last_pid == os.getpid():
            return commands  # type: ignore[return-value]
        return self._switch(loop)

    def _switch(self, loop: asyncio.AbstractEventLoop) -> Commands:
        pid = os.getpid()
        with self._switch_lock:
            if pid != self._pid:  # forked: the parent's sockets are not ours to use (or close)
                self._by_loop, self._pid = {}, pid
            else:  # connections of finished loops died with them
                self._by_loop = {k: v for k, v in self._by_loop.items() if not k.is_closed()}
            commands = self._by_loop.get(loop)
            if commands is None:
                commands = self._by_loop[loop] = self._open()
            self._last = (loop, pid, commands)
        return commands

    def _failure(self, action: str, exc: BaseException, key: str | None = None) -> SessionStoreError:
        detail = str(exc) or "no detail"
        if key:
            detail = detail.replace(key, "<key>")
        return SessionStoreError(f"Redis ({self._where}) could not {action}: {type(exc).__name__}: {detail}")

    async def _eval(
        self, commands: Commands, script: _Script, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        try:
            return await commands.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._no_script:  # first use on this server (or after SCRIPT FLUSH)
            return await commands.execute("EVAL", script.text, len(keys), *keys, *args)

    def _ttl(self, deadline: float | None) -> int:
        """Milliseconds until `deadline`: -1 for none, 0 if it has passed."""
        if deadline is None:
            return -1
        ms = math.ceil((deadline - self._clock()) * 1000)
        return ms if ms > 0 else 0

    def _index_ttl(self, meta: Meta, ttl: int) -> int:
        """How long the user's set must live for this member. The absolute deadline bounds
        every later idle extension, so using it spares index updates on each touch."""
        if ttl < 0:
            return -1
        absolute = self._ttl(meta.absolute_deadline)
        return absolute if absolute > ttl else ttl

    def _write_args(self, key: str, meta: Meta, ttl: int) -> list[Arg]:
        user = meta.user_id
        return [
            self._index_flag,
            self._user_prefix,
            key,
            ttl,
            self._index_ttl(meta, ttl),
            self._dumps(meta.to_dict()),
            "0" if user is None else "1",
            "" if user is None else user,
        ]

    def _write_keys(self, key: str, meta: Meta) -> list[str]:
        if self._index_in_script and meta.user_id is not None:
            return [self._session_prefix + key, self._user_prefix + meta.user_id]
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
                self._eval(
                    commands, _INDEX_ADD, [self._user_prefix + user], [key, self._index_ttl(meta, ttl)]
                )
            )
        if calls:
            await asyncio.gather(*calls)

    def _decode(self, reply: Any) -> Record | None:
        """An HGETALL reply (a flat list, or a dict from redis-py) as a live record, or None."""
        if isinstance(reply, dict):
            pairs: Any = reply.items()
        else:
            fields = iter(reply)
            pairs = zip(fields, fields, strict=True)
        loads = self._loads
        data: dict[str, Any] = {}
        meta_blob = None
        try:
            for name, value in pairs:
                if name[0] == 46:  # b"." starts a data field
                    data[name[1:].decode()] = loads(value)
                elif name == b"m":
                    meta_blob = value
            if meta_blob is None:
                raise ValueError("no metadata field")
            meta = Meta.from_dict(loads(meta_blob))
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise SessionStoreError(f"corrupt session record in Redis ({self._where}): {exc}") from None
        if meta.is_expired(self._clock()):
            return None
        return Record(data=data, meta=meta)

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
        try:
            reply = await self._commands().execute("HGETALL", self._session_prefix + key)
        except self._errors as exc:
            raise self._failure("load a session", exc, key) from exc
        return self._decode(reply) if reply else None

    async def set(self, key: str, record: Record) -> None:
        meta = record.meta
        ttl = self._ttl(meta.expires)
        args = self._write_args(key, meta, ttl)
        dumps = self._dumps
        for name, value in record.data.items():
            args.append("." + name)
            args.append(dumps(value))
        try:
            commands = self._commands()
            old = await self._eval(commands, _SET, self._write_keys(key, meta), args)
            if not self._index_in_script:
                await self._reindex(commands, key, old, meta, ttl)
        except self._errors as exc:
            raise self._failure("save a session", exc, key) from exc

    async def patch(self, key: str, changed: dict[str, Any], removed: Collection[str], meta: Meta) -> bool:
        ttl = self._ttl(meta.expires)
        args = self._write_args(key, meta, ttl)
        args.append(len(changed))
        dumps = self._dumps
        for name, value in changed.items():
            args.append("." + name)
            args.append(dumps(value))
        args.extend("." + name for name in removed)
        try:
            commands = self._commands()
            old = await self._eval(commands, _PATCH, self._write_keys(key, meta), args)
            if old is None:
                return False
            if not self._index_in_script:
                await self._reindex(commands, key, old, meta, ttl)
        except self._errors as exc:
            raise self._failure("save a session", exc, key) from exc
        return True

    async def touch(self, key: str, meta: Meta) -> None:
        ttl = self._ttl(meta.expires)
        args = self._write_args(key, meta, ttl)
        args.append(0)
        try:
            commands = self._commands()
            old = await self._eval(commands, _PATCH, self._write_keys(key, meta), args)
            if old is not None and not self._index_in_script:
                await self._reindex(commands, key, old, meta, ttl)
        except self._errors as exc:
            raise self._failure("touch a session", exc, key) from exc

    async def destroy(self, key: str) -> None:
        try:
            commands = self._commands()
            old = await self._eval(
                commands, _DESTROY, [self._session_prefix + key], [self._index_flag, self._user_prefix, key]
            )
            if not self._index_in_script and isinstance(old, bytes) and old[:1] == b"+":
                await commands.execute("SREM", self._user_prefix + old[1:].decode(), key)
        except self._errors as exc:
            raise self._failure("destroy a session", exc, key) from exc

    async def close(self) -> None:
        """Close this event loop's connection (a given client stays open). Connections of
        other, still running loops are left to those loops."""
        loop = asyncio.get_running_loop()
        with self._switch_lock:
            commands = self._by_loop.pop(loop, None) if self._pid == os.getpid() else None
            self._last = (None, 0, None)
        if commands is not None:
            with contextlib.suppress(*self._errors):  # a dead server leaves nothing to release
                await commands.close()

    # ---- user index ---------------------------------------------------------------------
    async def _members(self, commands: Commands, user_key: str) -> list[bytes]:
        return sorted(await commands.execute("SMEMBERS", user_key))

    async def sessions_for(self, user_id: str) -> list[SessionInfo]:
        user = str(user_id)
        user_key = self._user_prefix + user
        infos: list[SessionInfo] = []
        try:
            commands = self._commands()
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
        except self._errors as exc:
            raise self._failure("list a user's sessions", exc) from exc
        infos.sort(key=lambda info: info.last_seen, reverse=True)
        return infos

    async def destroy_user(self, user_id: str) -> int:
        user = str(user_id)
        user_key = self._user_prefix + user
        deleted = 0
        try:
            commands = self._commands()
            members = await self._members(commands, user_key)
            for start in range(0, len(members), _BATCH):
                chunk = members[start : start + _BATCH]
                results = await asyncio.gather(
                    *(
                        self._eval(commands, _DESTROY_IF_OWNED, [self._session_prefix + m.decode()], [user])
                        for m in chunk
                    )
                )
                deleted += sum(int(r) for r in results)
                await commands.execute("SREM", user_key, *chunk)
        except self._errors as exc:
            raise self._failure("destroy a user's sessions", exc) from exc
        return deleted

    # ---- inventory ----------------------------------------------------------------------
    async def _session_key_batches(self, commands: Commands) -> Any:
        """Storage keys of every session record, in batches (SCAN, so Redis never blocks)."""
        pattern = (_glob_escape(self._session_prefix) + "*").encode()
        skip = len(self._session_prefix.encode())
        seen: set[bytes] = set()  # SCAN may return a key twice while Redis resizes its table
        batch: list[str] = []
        async for raw in commands.scan(pattern, 1000):
            if raw in seen:
                continue
            seen.add(raw)
            batch.append(raw[skip:].decode())
            if len(batch) >= _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _metas(self, commands: Commands, keys: list[str]) -> list[Meta | None]:
        blobs = await commands.pipeline([("HGET", self._session_prefix + k, "m") for k in keys])
        return [self._decode_meta(blob) for blob in blobs]

    async def count(self) -> int:
        """Live sessions (Redis deletes expired ones itself)."""
        total = 0
        try:
            async for batch in self._session_key_batches(self._commands()):
                total += len(batch)
        except self._errors as exc:
            raise self._failure("count sessions", exc) from exc
        return total

    async def purge_expired(self) -> int:
        """Redis's own expiry does the real work; this deletes any record whose metadata says
        it is dead (e.g. written by a clock that ran behind) and drops user-index entries
        whose session is gone. Returns how many records it deleted."""
        deleted = 0
        try:
            commands = self._commands()
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
            pattern = (_glob_escape(self._user_prefix) + "*").encode()
            user_keys = [key async for key in commands.scan(pattern, 1000)]
            for user_key in set(user_keys):
                await self._prune_user_set(commands, user_key)
        except self._errors as exc:
            raise self._failure("purge expired sessions", exc) from exc
        return deleted

    async def _prune_user_set(self, commands: Commands, user_key: bytes) -> None:
        members = await self._members(commands, user_key.decode())
        for start in range(0, len(members), _BATCH):
            chunk = members[start : start + _BATCH]
            exists = await commands.pipeline([("EXISTS", self._session_prefix + m.decode()) for m in chunk])
            gone = [m for m, present in zip(chunk, exists, strict=True) if not present]
            if gone:
                await commands.execute("SREM", user_key, *gone)

    async def list_sessions(self, *, limit: int | None = None) -> list[tuple[str, Meta]]:
        live: list[tuple[str, Meta]] = []
        try:
            commands = self._commands()
            now = self._clock()
            async for batch in self._session_key_batches(commands):
                metas = await self._metas(commands, batch)
                live.extend(
                    (key, meta)
                    for key, meta in zip(batch, metas, strict=True)
                    if meta is not None and not meta.is_expired(now)
                )
        except self._errors as exc:
            raise self._failure("list sessions", exc) from exc
        live.sort(key=lambda item: item[1].last_seen, reverse=True)
        return live[:limit] if limit is not None else live


def _load_io() -> Any:
    """The redis-py-dependent half, or a ConfigurationError naming the extra to install."""
    try:
        from . import _redis_io
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "redis":
            raise missing_extra("redis", "redis") from None
        raise
    return _redis_io


@register_scheme("redis", "rediss", "redis+cluster", "redis+sentinel")
def _from_url(url: str) -> RedisStore:
    return RedisStore(url)
