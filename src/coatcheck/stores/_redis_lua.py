"""RedisStore's Lua scripts: each per-request write is one EVALSHA (see `coatcheck.stores.redis`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

HINT_SWEEP = 3  # hint-index entries each new entry checks: ended sessions stay under 1/3 of them

# ---- Lua --------------------------------------------------------------------------------------
# KEYS of the write scripts: [1] the session's hash; [2] the hint index and [3] the user's set,
# both only when they share the session's Cluster slot (standalone Redis, a hash-tagged prefix).
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
-- The hint index: a sorted set of storage keys (all scores 0, so ordered by key) read with
-- ZRANGEBYLEX. Its entries outlive sessions that Redis expires; each new entry checks the
-- HINT_SWEEP entries after it (storage keys are uniform hashes: a random sample) and drops
-- those whose session is gone, so ended sessions stay under 1/HINT_SWEEP of the entries.
local function hint_add(hints, member, key)
  if redis.call('ZADD', hints, 0, member) == 0 then return end
  local base = string.sub(key, 1, #key - #member)
  local after = redis.call('ZRANGEBYLEX', hints, '(' .. member, '+', 'LIMIT', 0, HINT_SWEEP)
  for _, other in ipairs(after) do
    if redis.call('EXISTS', base .. other) == 0 then redis.call('ZREM', hints, other) end
  end
end
local function marker(old)
  if old then return '+' .. old end
  return '-'
end
"""

_SET_BODY = """
local key, hints, member, ttl = KEYS[1], KEYS[2], ARGV[3], tonumber(ARGV[4])
local indexing, bound, user = ARGV[1] == '1', ARGV[7] == '1', ARGV[8]
local old = redis.call('HGET', key, 'u')
redis.call('DEL', key)
if indexing and old and (ttl == 0 or not bound or old ~= user) then
  redis.call('SREM', ARGV[2] .. old, member)
end
if ttl == 0 and hints then redis.call('ZREM', hints, member) end
if ttl ~= 0 then
  if bound then
    redis.call('HSET', key, 'm', ARGV[6], 'u', user)
  else
    redis.call('HSET', key, 'm', ARGV[6])
  end
  each_chunk('HSET', key, ARGV, 9, #ARGV)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  if hints then hint_add(hints, member, key) end
  if indexing and bound then index_add(KEYS[3], member, tonumber(ARGV[5])) end
end
return marker(old)
"""

# ARGV[9]: how many field/value pairs follow; then the pairs; then the fields to delete.
_PATCH_BODY = """
local key, hints, member, ttl = KEYS[1], KEYS[2], ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', key) == 0 then return false end
local indexing, bound, user = ARGV[1] == '1', ARGV[7] == '1', ARGV[8]
local old = redis.call('HGET', key, 'u')
if ttl == 0 then
  redis.call('DEL', key)
  if hints then redis.call('ZREM', hints, member) end
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
-- a session saved before the hint index existed (or after it was lost) joins it here
if hints then hint_add(hints, member, key) end
if indexing then
  if old and (not bound or old ~= user) then redis.call('SREM', ARGV[2] .. old, member) end
  if bound then index_add(KEYS[3], member, tonumber(ARGV[5])) end
end
return marker(old)
"""

# KEYS: [1] the session's hash, [2] the hint index (when in the same slot).
# ARGV: [1] "1" if indexing, [2] user-set key prefix, [3] storage key.
_DESTROY_BODY = """
local old = redis.call('HGET', KEYS[1], 'u')
redis.call('DEL', KEYS[1])
if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[3]) end
if old and ARGV[1] == '1' then redis.call('SREM', ARGV[2] .. old, ARGV[3]) end
return marker(old)
"""

# KEYS as DESTROY; ARGV: [1] the user id, [2] the storage key. Deletes the record only if it
# is still bound to that user.
_DESTROY_IF_OWNED_BODY = """
if redis.call('HGET', KEYS[1], 'u') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[2]) end
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
class Script:
    """A script and the SHA-1 Redis knows it by."""

    text: str
    sha: str

    @classmethod
    def of(cls, body: str) -> Script:
        text = _LUA_HELPERS.replace("HINT_SWEEP", str(HINT_SWEEP)) + body
        return cls(text, hashlib.sha1(text.encode()).hexdigest())  # noqa: S324 - Redis names scripts by SHA-1


SET = Script.of(_SET_BODY)
PATCH = Script.of(_PATCH_BODY)
DESTROY = Script.of(_DESTROY_BODY)
DESTROY_IF_OWNED = Script.of(_DESTROY_IF_OWNED_BODY)
INDEX_ADD = Script.of(_INDEX_ADD_BODY)

# KEYS[1] the hint index; ARGV: [1] the session key prefix, then storage keys. Makes the
# index agree with the keys for those: adds the ones whose session exists, removes the others.
# Answers how many it removed. (Purge and lookups by hint; atomic, so it never drops the
# entry of a session saved meanwhile.)
HINTS_SYNC = Script.of("""
local removed = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[1], 0, ARGV[i])
  else
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
""")

# Flash claims: delete the given data fields, answering the ones this call removed (HDEL's
# own count, per field, inside one script: concurrent claimers never both get a field).
CLAIM = Script.of("""
local taken = {}
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then taken[#taken + 1] = ARGV[i] end
end
return taken
""")
