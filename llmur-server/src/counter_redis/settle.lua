-- Replace reserved amounts with actual ones (llmur RedisCounter::settle).
--
-- KEYS[h]   a window hash, {prefix}:{window kind}:{window start} (see reserve.lua)
-- ARGV      per hash in KEYS order: n, its number of entities; then per entity: its
--           field, and six little-endian doubles: the reserved requests, tokens and
--           cost, then the actual ones
--
-- Each hash is read with one HMGET and written with one HSET (only the fields that
-- change). A field or hash that no longer exists (its window expired) is left alone:
-- nothing is created, so no hash ever lives without a TTL (HSET on an existing hash keeps
-- it). Each count becomes max(0, count - reserved) + actual: a settle never refunds more
-- than it reserved and never goes below zero. Reply: the number of fields changed.

local sunpack, spack = struct.unpack, struct.pack
local changed = 0
local pos = 1
local fields, w = {}, {}
for h = 1, #KEYS do
  local n = tonumber(ARGV[pos])
  for i = 1, n do fields[i] = ARGV[pos + 2 * i - 1] end
  local stored = redis.call('HMGET', KEYS[h], unpack(fields, 1, n))
  local nw = 0
  for i = 1, n do
    local current = stored[i]
    if current and #current == 24 then
      local a, b, c = sunpack('<ddd', current)
      local ra, rb, rc, xa, xb, xc = sunpack('<dddddd', ARGV[pos + 2 * i])
      a, b, c = a - ra, b - rb, c - rc
      if a < 0 then a = 0 end
      if b < 0 then b = 0 end
      if c < 0 then c = 0 end
      local packed = spack('<ddd', a + xa, b + xb, c + xc)
      if packed ~= current then
        w[nw + 1], w[nw + 2] = fields[i], packed
        nw = nw + 2
        changed = changed + 1
      end
    end
  end
  if nw > 0 then redis.call('HSET', KEYS[h], unpack(w, 1, nw)) end
  pos = pos + 1 + 2 * n
end
return changed
