-- Replace reserved amounts with actual ones (llmur RedisCounter::settle).
--
-- KEYS[i]             the full key of part i (with its window start), all read with one MGET
-- ARGV[2i-1], ARGV[2i]   part i: reserved amount, actual amount
--
-- A key that no longer exists (its window expired) is left alone: nothing is created,
-- so no key ever lives without a TTL. The count becomes max(0, count - reserved) + actual:
-- a settle never refunds more than its part reserved and never goes below zero.
-- INCRBY keeps the key's TTL. Reply: the number of keys changed.

local changed = 0
if #KEYS == 0 then return 0 end
local stored = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do
  local current = stored[i]
  if current then
    local count = tonumber(current)
    local after = count - tonumber(ARGV[2 * i - 1])
    if after < 0 then after = 0 end
    after = after + tonumber(ARGV[2 * i])
    if after ~= count then
      redis.call('INCRBY', KEYS[i], after - count) -- exact below 2^53, as every count is
      changed = changed + 1
    end
  end
end
return changed
