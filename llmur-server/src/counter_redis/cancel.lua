-- Take back a reservation whose caller gave up waiting (llmur RedisCounter::cancel).
-- Prepended by windows.lua.
--
-- ARGV[1], ARGV[2]   the ticket: its hash and field ({prefix}:tickets:{tenth of a
--           second}, the uuid's 16 bytes), or '' and its key ({prefix}:ticket:{uuid})
-- ARGV[3]   the key prefix
-- ARGV[3i+1], ARGV[3i+2], ARGV[3i+3]   entity window i: its field (see reserve.lua),
--           window kind, and the requests, tokens and cost reserved as three
--           little-endian doubles
--
-- When the ticket's reserve was applied (the ticket holds the reserve's `now`), subtract
-- its amounts from the same window hashes (never below 0). Either way the ticket becomes
-- a tombstone ('x', at least 10 min): a reserve still queued finds it (reserve.lua's
-- HSETNX or SET NX) and never applies, and a second cancel undoes nothing. Reply: 3.
-- Idempotent.

local hash, field = ARGV[1], ARGV[2]
local prefix = ARGV[3]
local TOMBSTONE_MS = 600000
local sunpack = struct.unpack

local applied
if hash == '' then
  applied = redis.call('GET', field)
else
  applied = redis.call('HGET', hash, field)
end
if applied and applied ~= 'x' then
  local at = tonumber(applied)
  for i = 1, (#ARGV - 3) / 3 do
    local k = 3 * i + 1
    local kind = ARGV[k + 1]
    local s = bounds(kind, at)
    local key = prefix .. ':' .. kind .. ':' .. int(s)
    local current = redis.call('HGET', key, ARGV[k])
    if current and #current == 24 then
      local a, b, c = sunpack('<ddd', current)
      local x, y, z = sunpack('<ddd', ARGV[k + 2])
      a, b, c = a - x, b - y, c - z
      if a < 0 then a = 0 end
      if b < 0 then b = 0 end
      if c < 0 then c = 0 end
      redis.call('HSET', key, ARGV[k], struct.pack('<ddd', a, b, c))
    end
  end
end
if hash == '' then
  redis.call('SET', field, 'x', 'PX', TOMBSTONE_MS)
else
  redis.call('HSET', hash, field, 'x')
  if redis.call('PTTL', hash) < TOMBSTONE_MS then
    redis.call('PEXPIRE', hash, TOMBSTONE_MS)
  end
end
return 3
