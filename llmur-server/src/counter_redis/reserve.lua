-- Admit every ask or none, atomically (llmur RedisCounter::reserve).
--
-- KEYS[i]   bucket key without its window: {prefix}:{level}:{id}:{metric}:{window}
-- ARGV[1]   the caller's clock in Unix ms, or '' to use the server's TIME
-- ARGV[2]   grace in ms kept after a window's end (so late settles still find it)
-- ARGV[3]   the ticket key ('' for none): {prefix}:ticket:{uuid}
-- ARGV[4]   'reserve' or 'cancel'
-- ARGV[3i+2], ARGV[3i+3], ARGV[3i+4]   ask i: window kind, limit, amount
--
-- reserve, reply when admitted: {1, now, start_1, end_1, used_1, ..., start_n, end_n, used_n}
-- reserve, reply when refused:  {0, now, i, used_i, end_i} for the first bucket without
-- room; nothing is written then.
-- reserve, reply when its ticket was cancelled before it ran: {2, now}; nothing written.
-- An admitted reserve with a ticket records its `now` under the ticket key (60 s), so a
-- `cancel` of the same ticket and asks can take the amounts back out of the same windows.
--
-- cancel: when the ticket's reserve was applied, subtract its amounts (never below 0);
-- either way leave a tombstone ({ticket}:x, 10 min) so a reserve still queued never
-- applies. Reply {3, now}. Idempotent.

local MINUTE = 60000
local HOUR = 3600000
local DAY = 86400000
local floor = math.floor

-- Lua 5.1 numbers are doubles: every value here stays far below 2^53, so integer
-- arithmetic is exact and floor(a / b) is floor division (also for negative a).

-- Day count since 1970-01-01 of a proleptic Gregorian date.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = m + 9
  if m > 2 then mp = m - 3 end
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Year and month of a day count since 1970-01-01.
local function year_month(days)
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp - 9
  if mp < 10 then m = mp + 3 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

-- Start (inclusive) and end (exclusive) of the UTC calendar window containing `now`.
local function bounds(kind, now)
  if kind == 'minute' then
    local s = floor(now / MINUTE) * MINUTE
    return s, s + MINUTE
  elseif kind == 'hour' then
    local s = floor(now / HOUR) * HOUR
    return s, s + HOUR
  elseif kind == 'day' then
    local s = floor(now / DAY) * DAY
    return s, s + DAY
  elseif kind == 'week' then
    local days = floor(now / DAY)
    -- 1970-01-01 was a Thursday; Lua's % is floored, so this is 0 on Mondays.
    local s = (days - (days + 3) % 7) * DAY
    return s, s + 7 * DAY
  elseif kind == 'month' then
    local y, m = year_month(floor(now / DAY))
    local s = days_from_civil(y, m, 1) * DAY
    if m == 12 then
      y, m = y + 1, 1
    else
      m = m + 1
    end
    return s, days_from_civil(y, m, 1) * DAY
  end
  return error('llmur: unknown window kind ' .. tostring(kind))
end

local function int(x)
  return string.format('%.0f', x)
end

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local grace = tonumber(ARGV[2])
local ticket = ARGV[3]
local mode = ARGV[4]
local TICKET_MS = 60000
local TOMBSTONE_MS = 600000

if mode == 'cancel' then
  local applied = redis.call('GET', ticket)
  if applied then
    local at = tonumber(applied)
    for i = 1, #KEYS do
      local k = 3 * i + 2
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
  return {3, now}
end

if ticket ~= '' and redis.call('EXISTS', ticket .. ':x') == 1 then
  return {2, now}
end

-- Add first, roll back on the first bucket without room: one call per bucket when the
-- request is admitted (the common case), instead of a read and a write.
local n = #KEYS
local keys, amounts = {}, {}
local reply = {1, now}
for i = 1, n do
  local at = 3 * i + 2
  local s, e = bounds(ARGV[at], now)
  local key = KEYS[i] .. ':' .. int(s)
  local limit = tonumber(ARGV[at + 1])
  local amount = tonumber(ARGV[at + 2])
  local used = redis.call('INCRBY', key, amount)
  if used > limit then
    if used == amount then
      -- Created by this call: remove it rather than leave a key without a TTL.
      redis.call('DEL', key)
    else
      redis.call('DECRBY', key, amount)
    end
    for j = 1, i - 1 do
      redis.call('DECRBY', keys[j], amounts[j])
    end
    return {0, now, i, used - amount, e}
  end
  if used == amount then
    -- First write in this window. Relative to `now`, so a caller's (fake) clock gets the
    -- same lifetime as the server's.
    redis.call('PEXPIRE', key, int(e - now + grace))
  end
  keys[i], amounts[i] = key, amount
  reply[#reply + 1] = s
  reply[#reply + 1] = e
  reply[#reply + 1] = used
end
if ticket ~= '' then
  redis.call('SET', ticket, int(now), 'PX', TICKET_MS)
end
return reply
