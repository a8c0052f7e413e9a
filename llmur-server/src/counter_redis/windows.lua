-- Calendar windows, shared by the counter's scripts (prepended to reserve.lua and
-- cancel.lua). Lua 5.1 numbers are doubles: every value here stays far below 2^53, so
-- integer arithmetic is exact and floor(a / b) is floor division (also for negative a).

local MINUTE = 60000
local HOUR = 3600000
local DAY = 86400000
local floor = math.floor

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

-- An integral number as decimal text. '%d' converts to a 64-bit integer first; '%.0f'
-- would print the double in glibc's multiprecision path, several times the instructions.
local function int(x)
  return string.format('%d', x)
end

