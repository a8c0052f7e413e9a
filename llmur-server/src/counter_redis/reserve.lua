-- Admit each of a batch of reservations, every ask of one or none of them, atomically,
-- in order (llmur RedisCounter::reserve). Prepended by windows.lua.
--
-- KEYS[k]   a bucket key without its window start:
--           {prefix}:{level}:{id}:{metric}:{window kind}
-- ARGV[1]   grace in ms kept after a window's end (so late settles still find it)
-- ARGV[2]   R, the number of reservations
-- ARGV[3]   S, the number of shapes; then per shape (the buckets and limits a
--           reservation asks on, shared by reservations that ask on the same ones):
--             N, its number of asks; then per ask: key index k, limit
-- then per reservation:
--             its clock in Unix ms, or '' for the server's TIME;
--             its ticket key ('' for none): {prefix}:ticket:{uuid};
--             its shape's index; then the amount of each of the shape's asks
--
-- Reply: one array per reservation, exactly what reserving them one by one would give:
--   admitted:  {1, now, used_1, ..., used_n} (each bucket's count after the add; the
--              caller derives the windows from `now`)
--   refused:   {0, now, i, used_i, end_i} for the first bucket without room; the
--              reservation writes nothing;
--   cancelled: {2, now} when its ticket was cancelled before the batch ran.
-- An admitted reservation with a ticket records its `now` under the ticket key (60 s), so
-- cancel.lua can take its amounts back out of the same windows.
--
-- All bucket keys are read with one MGET and each is written once (the sum of what the
-- batch admitted), so a batch of many requests on the same buckets costs about what one
-- does.

local grace = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local TICKET_MS = 60000

local server_now
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  if not server_now then
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
  end
  return server_now
end

-- t[a][b], made by make(a, b) the first time it is asked for.
local function memo(t, a, b, make)
  local row = t[a]
  if not row then
    row = {}
    t[a] = row
  end
  local v = row[b]
  if v == nil then
    v = make(a, b)
    row[b] = v
  end
  return v
end

-- {start, end, start as a string} per window kind and clock.
local windows = {}
local function make_window(kind, now)
  local s, e = bounds(kind, now)
  return {s, e, int(s)}
end
local function window(kind, now)
  return memo(windows, kind, now, make_window)
end

-- The window kind of each key (its last component), told by its last letter.
local KIND_BY_LAST = {
  [string.byte('e')] = 'minute', [string.byte('r')] = 'hour', [string.byte('y')] = 'day',
  [string.byte('k')] = 'week', [string.byte('h')] = 'month',
}
local kinds = {}
for k = 1, #KEYS do
  kinds[k] = KIND_BY_LAST[string.byte(KEYS[k], -1)]
end

-- The shapes: per shape, its asks' key indexes and limits.
local shape_keys, shape_limits = {}, {}
local pos = 4
for s = 1, tonumber(ARGV[3]) do
  local n = tonumber(ARGV[pos])
  local ks, ls = {}, {}
  for i = 1, n do
    ks[i] = tonumber(ARGV[pos + 2 * i - 1])
    ls[i] = tonumber(ARGV[pos + 2 * i])
  end
  shape_keys[s], shape_limits[s] = ks, ls
  pos = pos + 1 + 2 * n
end

-- Where each reservation's arguments start, and which tickets were cancelled (one EXISTS
-- for the whole batch in the common case of none).
local starts, tombstones, ticketed = {}, {}, {}
for r = 1, count do
  starts[r] = pos
  if ARGV[pos + 1] ~= '' then
    ticketed[#ticketed + 1] = r
    tombstones[#tombstones + 1] = ARGV[pos + 1] .. ':x'
  end
  pos = pos + 3 + #shape_keys[tonumber(ARGV[pos + 2])]
end
local cancelled = {}
if #tombstones > 0 and redis.call('EXISTS', unpack(tombstones)) > 0 then
  for j = 1, #ticketed do
    if redis.call('EXISTS', tombstones[j]) == 1 then cancelled[ticketed[j]] = true end
  end
end

-- Every bucket key the batch can touch, read with one MGET: per clock value (a batch on
-- the server's clock has one), each key index's full name, made once. The loops below
-- index these tables directly instead of calling a memo function per ask.
local keys_at, touched = {}, {}
for r = 1, count do
  if not cancelled[r] then
    local at = starts[r]
    local now = clock(ARGV[at])
    local names = keys_at[now]
    if not names then
      names = {}
      keys_at[now] = names
    end
    local ks = shape_keys[tonumber(ARGV[at + 2])]
    for i = 1, #ks do
      local k = ks[i]
      if not names[k] then
        local key = KEYS[k] .. ':' .. window(kinds[k], now)[3]
        names[k] = key
        touched[#touched + 1] = key
      end
    end
  end
end
local value, fresh, ttl, delta, keep = {}, {}, {}, {}, {}
if #touched > 0 then
  local stored = redis.call('MGET', unpack(touched))
  for j = 1, #touched do
    local key = touched[j]
    if stored[j] then
      value[key] = tonumber(stored[j])
    else
      value[key] = 0
      fresh[key] = true
    end
    delta[key] = 0
  end
end

local tickets, ticket_nows = {}, {}
local replies = {}
for r = 1, count do
  local at = starts[r]
  local now = clock(ARGV[at])
  local ticket = ARGV[at + 1]
  if cancelled[r] then
    replies[r] = {2, now}
  else
    local shape = tonumber(ARGV[at + 2])
    local ks, ls = shape_keys[shape], shape_limits[shape]
    local names = keys_at[now]
    local reply, added, refused = {1, now}, 0, nil
    for i = 1, #ks do
      local key = names[ks[i]]
      local amount = tonumber(ARGV[at + 2 + i])
      local used = value[key]
      if fresh[key] and not ttl[key] then
        -- Relative to `now`, so a caller's (fake) clock gets the same lifetime as the
        -- server's.
        ttl[key] = window(kinds[ks[i]], now)[2] - now + grace
      end
      if used + amount > ls[i] then
        refused = {0, now, i, used, window(kinds[ks[i]], now)[2]}
        break
      end
      value[key] = used + amount
      delta[key] = delta[key] + amount
      added = i
      reply[i + 2] = used + amount
    end
    if refused then
      -- Take back what this reservation added before the bucket that refused it.
      for i = 1, added do
        local key = names[ks[i]]
        local amount = tonumber(ARGV[at + 2 + i])
        value[key] = value[key] - amount
        delta[key] = delta[key] - amount
      end
      replies[r] = refused
    else
      for i = 1, added do keep[names[ks[i]]] = true end
      if ticket ~= '' then
        tickets[#tickets + 1] = ticket
        ticket_nows[#tickets] = now
      end
      replies[r] = reply
    end
  end
end

-- One write per bucket key the batch admitted something on. A key created here gets its
-- TTL in the same command; a refused reservation creates nothing.
for j = 1, #touched do
  local key = touched[j]
  if keep[key] then
    -- Numbers go to redis.call as they are: Redis prints them with 17 significant
    -- digits, exact for every integer below 2^53, and no Lua string is made (less
    -- garbage for the collector, which under load costs more than the strings).
    if fresh[key] then
      redis.call('SET', key, value[key], 'PX', ttl[key])
    elseif delta[key] ~= 0 then
      redis.call('INCRBY', key, delta[key])
    end
  end
end
for j = 1, #tickets do
  redis.call('SET', tickets[j], ticket_nows[j], 'PX', TICKET_MS)
end
return replies
