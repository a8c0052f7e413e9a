-- Replace reserved amounts with actual ones (llmur RedisCounter::settle).
--
-- KEYS[h]   a window hash, {prefix}:{window kind}:{window start}
-- ARGV      per hash in KEYS order: n, its number of parts; then per part: the bucket's
--           field, reserved amount, actual amount
--
-- Each hash is read with one HMGET and written with one HSET (only the fields that
-- change). A field or hash that no longer exists (its window expired) is left alone:
-- nothing is created, so no hash ever lives without a TTL (HSET on an existing hash keeps
-- it). The count becomes max(0, count - reserved) + actual: a settle never refunds more
-- than its part reserved and never goes below zero. Reply: the number of fields changed.

local changed = 0
local pos = 1
for h = 1, #KEYS do
  local n = tonumber(ARGV[pos])
  local fields = {}
  for i = 1, n do fields[i] = ARGV[pos + 3 * i - 2] end
  local stored = redis.call('HMGET', KEYS[h], unpack(fields))
  local writes = {}
  for i = 1, n do
    local current = stored[i]
    if current then
      local count = tonumber(current)
      local after = count - tonumber(ARGV[pos + 3 * i - 1])
      if after < 0 then after = 0 end
      after = after + tonumber(ARGV[pos + 3 * i])
      if after ~= count then
        writes[#writes + 1] = fields[i]
        -- '%d': exact below 2^53, as every count is, and cheaper than '%.17g'.
        writes[#writes + 1] = string.format('%d', after)
        changed = changed + 1
      end
    end
  end
  if #writes > 0 then redis.call('HSET', KEYS[h], unpack(writes)) end
  pos = pos + 1 + 3 * n
end
return changed
