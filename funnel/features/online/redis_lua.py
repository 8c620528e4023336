"""The Lua scripts of :class:`~funnel.features.online.redis_store.RedisOnlineStore`."""

from __future__ import annotations

APPLY_LUA = """
local a, k, applied = 3, 1, 0
for e = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  if redis.call('SET', KEYS[k], '1', 'NX', 'EX', ARGV[1]) then
    k = k + 1
    for i = 1, n do
      redis.call('HINCRBYFLOAT', KEYS[k], ARGV[a], ARGV[a + 1])
      if ARGV[a + 2] ~= '' then redis.call('EXPIRE', KEYS[k], ARGV[a + 2]) end
      k = k + 1
      a = a + 3
    end
    applied = applied + 1
  else
    k = k + 1 + n
    a = a + 3 * n
  end
end
return applied
"""
"""KEYS: per event its dedup key then its increments' keys. ARGV: dedup ttl, event count, then
per event its increment count and per increment ``field, amount, ttl or ''``."""

READ_LUA = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return cjson.encode(out)
"""
"""KEYS: the hashes to read. Returns a JSON array with each hash's flat ``HGETALL`` reply."""

FIELDS_LUA = """
local keys, fields = {}, {}
for key in string.gmatch(ARGV[2], '([^\\n]*)\\n') do keys[#keys + 1] = key end
for field in string.gmatch(ARGV[3], '([^\\n]*)\\n') do fields[#fields + 1] = field end
local nf = #fields
local dense = '<i' .. string.rep('d', nf)
local out, col = {}, nil
for i = 1, #keys do
  local key = ARGV[1] .. keys[i]
  if redis.call('HLEN', key) < nf then
    if not col then
      col = {}
      for j = 1, nf do col[fields[j]] = j - 1 end
    end
    local kv, pairs = redis.call('HGETALL', key), {}
    for k = 1, #kv, 2 do
      local j = col[kv[k]]
      if j then
        pairs[#pairs + 1] = j
        pairs[#pairs + 1] = tonumber(kv[k + 1])
      end
    end
    out[i] = struct.pack('<i' .. string.rep('id', #pairs / 2), #pairs / 2, unpack(pairs))
  else
    local v = redis.call('HMGET', key, unpack(fields))
    for j = 1, nf do v[j] = v[j] and tonumber(v[j]) or 0 end
    out[i] = struct.pack(dense, -1, unpack(v))
  end
end
return table.concat(out)
"""
"""ARGV: the key prefix (``<prefix>:``), the keys and the (distinct) fields, each as one text of
newline-terminated names (one argument each: encoding a thousand arguments cost the client
~1.5 ms per read). Names with a newline never come here. Per key, a little-endian block: a hash
with fewer entries than fields is read whole (``HGETALL``: no field arguments to convert) and
answers ``int32 m`` then ``m`` pairs ``(int32 column, float64 value)`` of the fields it holds;
a larger one answers ``int32 -1`` then ``#fields`` doubles (``HMGET``, 0 when missing)."""

SUMS_LUA = """
local ne = tonumber(ARGV[2])
for i = 1, ne do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -1 end
end
for i = 1, ne do redis.call('SET', KEYS[i], '1', 'EX', ARGV[1]) end
local it = string.gmatch(ARGV[3], '([^\\n]*)\\n')
local tok = it
if ARGV[4] == '1' then
  local function unescape(c) if c == 'n' then return '\\n' end return c end
  tok = function() return (string.gsub(it(), '\\\\(.)', unescape)) end
end
for k = ne + 1, #KEYS do
  local ttl = tok()
  local n = tonumber(tok())
  for i = 1, n do
    local field = tok()
    local amount = tok()
    redis.call('HINCRBYFLOAT', KEYS[k], field, amount)
  end
  if ttl ~= '' then redis.call('EXPIRE', KEYS[k], ttl) end
end
return ne
"""
"""KEYS: the events' dedup keys, then the hashes. ARGV: dedup ttl, event count, the payload and
its escaping flag. The payload is one text of newline-terminated tokens, per hash ``ttl or '',
pair count, field, amount, ...`` (flag ``1``: tokens escape ``\\`` and newline as ``\\\\`` and
``\\n``): one argument instead of hundreds of thousands, whose encoding dominated the client's
time. Returns the event count, or -1 (nothing changed)."""
