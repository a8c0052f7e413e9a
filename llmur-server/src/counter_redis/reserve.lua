-- Admit each of a batch of reservations, every ask of one or none of them, atomically,
-- in order (llmur RedisCounter::reserve). Prepended by windows.lua.
--
-- Layout: one hash per window, {prefix}:{window kind}:{window start}, with a field per
-- bucket, {level}:{id}:{metric}, holding the bucket's usage in that window.
--
-- ARGV[1]   grace in ms kept after a window's end (so late settles still find it)
-- ARGV[2]   the key prefix
-- ARGV[3]   the batch's clock in Unix ms, or '' for the server's TIME (one per call: the
--           caller sends reservations on different clocks in different calls)
-- ARGV[4]   G, the number of window kinds asked on; then per kind (a group):
--             its name ('minute', 'hour', 'day', 'week', 'month'), m, and m distinct
--             bucket fields; the fields of all groups, in order, are the slots 1, 2, …
-- then      R, the number of reservations; then per reservation:
--             its ticket key ('' for none): {prefix}:ticket:{uuid};
--             one string of little-endian doubles, per ask: slot, limit, amount
--
-- Doubles carry every integer below 2^53 exactly; the caller sends nothing larger.
--
-- Reply: per reservation, exactly what reserving them one by one would give, as one
-- string of little-endian doubles (a bulk string is far cheaper for both sides to encode
-- and parse than an array of integers):
--   admitted:  1, now, used_1, ..., used_n (each bucket's count after the add; the
--              caller derives the windows from `now`)
--   refused:   0, now, i, used_i, end_i for the first bucket without room; the
--              reservation writes nothing;
--   cancelled: 2, now when its ticket was cancelled before the batch ran (a reservation
--              that does not fit is refused, cancelled or not: nothing is written).
-- An admitted reservation with a ticket records its `now` under the ticket key (60 s), so
-- cancel.lua can take its amounts back out of the same windows; the same SET NX finds a
-- cancel that came first (cancel.lua leaves the key), so a ticket costs one command.
--
-- Each group's hash is read with one HMGET and written with one HSET (the final counts of
-- the fields the batch admitted something on), so a batch of many requests on the same
-- buckets costs about what one does, and one request costs a handful of commands however
-- many buckets it asks on. The script does as little Lua work per ask as it can: Redis's
-- Lua is slow enough that building tables per ask cost more than the commands did.
--
-- A hash none of whose read fields existed may be new. It gets its TTL (window end +
-- grace) in the same script, so no hash ever lives without one, and one field whose name
-- is longer than `hash-max-listpack-value` (64 bytes by default): that makes Redis keep the
-- hash as a hash table from the start. A listpack is searched field by field, and a
-- window's hash holds a field per bucket in use, hundreds in a busy tenancy; a hash table
-- finds each field at once.

local grace = tonumber(ARGV[1])
local prefix = ARGV[2]
local TICKET_MS = 60000
local format = string.format
local HASHTABLE_FIELD = 'llmur:this-field-is-longer-than-64-bytes-so-the-hash-is-a-hash-table'

local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[3])
end

-- The groups: each one's hash read at once; every slot's count in `value`.
local ngroups = tonumber(ARGV[4])
local pos = 5
local keys, ends, first, base, size, fresh = {}, {}, {}, {}, {}, {}
local value = {}
local nslots = 0
for g = 1, ngroups do
  local kind, m = ARGV[pos], tonumber(ARGV[pos + 1])
  local s, e = bounds(kind, now)
  local key = prefix .. ':' .. kind .. ':' .. int(s)
  local a = pos + 2
  local got = redis.call('HMGET', key, unpack(ARGV, a, a + m - 1))
  local any = false
  for j = 1, m do
    local v = got[j]
    if v then
      any = true
      value[nslots + j] = tonumber(v)
    else
      value[nslots + j] = 0
    end
  end
  keys[g], ends[g], first[g], base[g], size[g], fresh[g] = key, e, a, nslots, m, not any
  nslots = nslots + m
  pos = a + m
end

-- The end of the window of slot `s` (for a refusal).
local function end_of(s)
  local g = ngroups
  while base[g] >= s do g = g - 1 end
  return ends[g]
end

local count = tonumber(ARGV[pos])
pos = pos + 1

-- struct's format for n little-endian doubles.
local formats = {}
local function doubles(n)
  local f = formats[n]
  if not f then
    f = string.rep('<d', n)
    formats[n] = f
  end
  return f
end
local function pack(values)
  return struct.pack(doubles(#values), unpack(values))
end

-- Each reservation in order, against the counts left by those before it. One that fits
-- and has a ticket records its `now` under the ticket key first (SET NX): if the key is
-- there already, cancel.lua left it (the caller gave up on this reservation), and the
-- reservation is cancelled instead; one that does not fit writes nothing, ticket or not.
local replies, keep = {}, {}
-- With one reservation, every slot is one of its asks: if it is admitted, every slot is
-- written (`all_kept`), without marking them one by one in `keep`.
local single, all_kept = count == 1, false
for r = 1, count do
  local packed = ARGV[pos + 2 * r - 1]
  local n = #packed / 8
  local v = {struct.unpack(doubles(n), packed)}
  local asks = n / 3
  local refused
  for i = 1, asks do
    local s = v[3 * i - 2]
    local used = value[s]
    if used + v[3 * i] > v[3 * i - 1] then
      refused = {0, now, i, used, end_of(s)}
      break
    end
  end
  local ticket = ARGV[pos + 2 * r - 2]
  if refused then
    replies[r] = pack(refused)
  elseif ticket ~= '' and not redis.call('SET', ticket, now, 'NX', 'PX', TICKET_MS) then
    replies[r] = pack({2, now})
  else
    local reply = {1, now}
    for i = 1, asks do
      local s = v[3 * i - 2]
      local used = value[s] + v[3 * i]
      value[s] = used
      if not single then keep[s] = true end
      reply[i + 2] = used
    end
    all_kept = single
    replies[r] = pack(reply)
  end
end

-- One HSET per group the batch admitted something on: the fields' final counts, printed
-- with '%d' (an integer conversion, exact for every count below 2^53; a number passed to
-- redis.call as it is would be printed with '%.17g', which glibc does in multiprecision:
-- about 2 % of the script's instructions). A hash that may be new gets its TTL, relative
-- to `now` so a caller's (fake) clock gets the same lifetime as the server's.
for g = 1, ngroups do
  local w, nw = {}, 0
  local a, b = first[g] - 1, base[g]
  for j = 1, size[g] do
    if all_kept or keep[b + j] then
      w[nw + 1] = ARGV[a + j]
      w[nw + 2] = format('%d', value[b + j])
      nw = nw + 2
    end
  end
  if nw > 0 then
    local key = keys[g]
    if fresh[g] then
      w[nw + 1], w[nw + 2] = HASHTABLE_FIELD, 1
    end
    redis.call('HSET', key, unpack(w))
    if fresh[g] then
      redis.call('PEXPIRE', key, ends[g] - now + grace)
    end
  end
end
return replies
