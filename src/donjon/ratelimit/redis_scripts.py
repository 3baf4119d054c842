"""The Redis backend's Lua scripts: each operation is one script, run atomically by the server.

A script runs alone on the server (nothing interleaves with it), so a read, its
decision and its write are one step: no read-modify-write race between nodes.
Time is always the server's (`TIME`): nodes' clocks differ, the server's is one.
Numbers a script returns that are not integers are returned as strings (Redis
truncates Lua numbers to integers on the way out).
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "ADD_COMPUTE",
    "HELD",
    "QUOTA_GIVE_BACK",
    "QUOTA_TAKE",
    "RATE_GIVE_BACK",
    "RATE_TAKE",
    "USAGE",
]

#: A bucket's state, read by both of its scripts. KEYS[1]: the bucket (a hash: tokens,
#: stamp). ARGV: rate per second, capacity. `tokens` and `stamp` are nil for a missing
#: bucket (a full one).
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
"""

#: A token bucket. KEYS[1]: the bucket (a hash: tokens, stamp). ARGV: rate per second,
#: capacity. Returns {allowed 0|1, retry_after_s, remaining (whole tokens), reset_s}.
#: The key expires once the bucket would be full again: a missing bucket is a full one.
RATE_TAKE = (
    _BUCKET
    + """
if tokens == nil or stamp == nil then
  tokens = capacity
  stamp = now
end
if now > stamp then
  tokens = tokens + (now - stamp) * rate
end
if tokens > capacity then
  tokens = capacity
end
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
local reset = (capacity - tokens) / rate
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(reset * 1000) + 1000)
return {allowed, tostring(retry), math.floor(tokens), tostring(reset)}
"""
)

#: One token back into a bucket (RATE_TAKE's keys and arguments), never past its capacity.
#: A missing bucket is a full one: nothing to do. Returns the whole tokens now held.
RATE_GIVE_BACK = (
    _BUCKET
    + """
if tokens == nil or stamp == nil then
  return capacity
end
if now > stamp then
  tokens = tokens + (now - stamp) * rate
end
tokens = math.min(capacity, tokens + 1)
local reset = (capacity - tokens) / rate
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(reset * 1000) + 1000)
return math.floor(tokens)
"""
)

#: One slot of a concurrency key. KEYS[1]: a sorted set of holders' tokens scored by
#: their lease's end (ms, server time). ARGV: cap, lease (ms), token. Expired leases are
#: removed first (their holder died). Returns {acquired 0|1, held}. The key lives as
#: long as its longest lease.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then
  return {0, held}
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return {1, held + 1}
"""

#: How many of a key's slots are held now (expired leases removed). KEYS[1]: the set.
HELD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

#: When a day's keys expire: ARGV[1] (unix seconds, from the day), but never sooner than a
#: day from now by the server's clock. A node whose clock is days behind names a day whose
#: expiry is past: EXPIREAT then deleted each count as it was made (its quotas never
#: filled); its counts now live a day past its last.
_EXPIRY = """
local expiry = math.max(tonumber(ARGV[1]), tonumber(redis.call('TIME')[1]) + 86400)
"""

#: All-or-nothing quotas. KEYS: one hash per subject of the day (fields inv, ms). ARGV[1]:
#: when the keys expire (unix seconds); then per key two limits, invocations and compute
#: ms (-1: unlimited). Returns {1} when every subject had room (one invocation counted
#: for each), else {0, index of the subject, measure, used, limit} and nothing counted.
QUOTA_TAKE = (
    _EXPIRY
    + """
for i, key in ipairs(KEYS) do
  local max_inv = tonumber(ARGV[2 * i])
  local max_ms = tonumber(ARGV[2 * i + 1])
  local v = redis.call('HMGET', key, 'inv', 'ms')
  local inv = tonumber(v[1]) or 0
  local ms = tonumber(v[2]) or 0
  if max_inv >= 0 and inv >= max_inv then
    return {0, i, 'invocations', inv, max_inv}
  end
  if max_ms >= 0 and ms >= max_ms then
    return {0, i, 'compute-seconds', ms, max_ms}
  end
end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'inv', 1)
  redis.call('EXPIREAT', key, expiry)
end
return {1}
"""
)

#: One invocation uncounted per subject (QUOTA_TAKE's keys), none below zero. Returns how
#: many were uncounted.
QUOTA_GIVE_BACK = """
local n = 0
for _, key in ipairs(KEYS) do
  local inv = tonumber(redis.call('HGET', key, 'inv')) or 0
  if inv > 0 then
    redis.call('HINCRBY', key, 'inv', -1)
    n = n + 1
  end
end
return n
"""

#: A finished call's compute. KEYS: the subjects' hashes. ARGV: expiry (unix s), ms.
ADD_COMPUTE = (
    _EXPIRY
    + """
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'ms', ARGV[2])
  redis.call('EXPIREAT', key, expiry)
end
return #KEYS
"""
)

#: Usage of the subjects' hashes: a flat list {inv1, ms1, inv2, ms2, ...}.
USAGE = """
local out = {}
for _, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'inv', 'ms')
  out[#out + 1] = tonumber(v[1]) or 0
  out[#out + 1] = tonumber(v[2]) or 0
end
return out
"""
