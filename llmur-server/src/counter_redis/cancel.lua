-- Take back a reservation whose caller gave up waiting (llmur RedisCounter::cancel).
-- Prepended by windows.lua.
--
-- ARGV[1]   the ticket key: {prefix}:ticket:{uuid}
-- ARGV[2]   the key prefix
-- ARGV[3i], ARGV[3i+1], ARGV[3i+2]   entity window i: its field (see reserve.lua), window
--           kind, and the requests, tokens and cost reserved as three little-endian doubles
--
-- When the ticket's reserve was applied (its ticket key holds the reserve's `now`),
-- subtract its amounts from the same window hashes (never below 0). Either way the ticket
-- key becomes a tombstone ('x', 10 min): a reserve still queued finds the key taken
-- (reserve.lua's SET NX) and never applies, and a second cancel undoes nothing. Reply: 3.
-- Idempotent.

local ticket = ARGV[1]
local prefix = ARGV[2]
local TOMBSTONE_MS = 600000
local sunpack = struct.unpack

local applied = redis.call('GET', ticket)
if applied and applied ~= 'x' then
  local at = tonumber(applied)
  for i = 1, (#ARGV - 2) / 3 do
    local k = 3 * i
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
redis.call('SET', ticket, 'x', 'PX', TOMBSTONE_MS)
return 3
