-- Take back a reservation whose caller gave up waiting (llmur RedisCounter::cancel).
-- Prepended by windows.lua.
--
-- KEYS[i]   bucket key without its window: {prefix}:{level}:{id}:{metric}:{window}
-- ARGV[1]   the ticket key: {prefix}:ticket:{uuid}
-- ARGV[3i-1], ARGV[3i], ARGV[3i+1]   ask i: window kind, limit (unused), amount
--
-- When the ticket's reserve was applied (its ticket key holds the reserve's `now`),
-- subtract its amounts from the same windows (never below 0) and delete the ticket.
-- Either way leave a tombstone ({ticket}:x, 10 min) so a reserve still queued never
-- applies. Reply: 3. Idempotent.

local ticket = ARGV[1]
local TOMBSTONE_MS = 600000

local applied = redis.call('GET', ticket)
if applied then
  local at = tonumber(applied)
  for i = 1, #KEYS do
    local k = 3 * i - 1
    local s = bounds(ARGV[k], at)
    local key = KEYS[i] .. ':' .. int(s)
    local current = redis.call('GET', key)
    if current then
      local after = tonumber(current) - tonumber(ARGV[k + 2])
      if after < 0 then after = 0 end
      redis.call('SET', key, int(after), 'KEEPTTL')
    end
  end
  redis.call('DEL', ticket)
end
redis.call('SET', ticket .. ':x', '1', 'PX', TOMBSTONE_MS)
return 3
