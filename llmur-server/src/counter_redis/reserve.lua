-- Admit each of a batch of reservations, every ask of one or none of them, atomically,
-- in order (llmur RedisCounter::reserve). Prepended by windows.lua.
--
-- Layout: one hash per window, {prefix}:{window kind}:{window start}, with a field per
-- entity, {level}:{id}, holding the entity's usage in that window as three little-endian
-- doubles (24 bytes): requests, tokens, cost in micro-USD. A missing field, or a value of
-- another size, counts as zero.
--
-- ARGV[1]   grace in ms kept after a window's end (so late settles still find it)
-- ARGV[2]   the key prefix
-- ARGV[3]   the batch's clock in Unix ms, or '' for the server's TIME (one per call: the
--           caller sends reservations on different clocks in different calls)
-- ARGV[4]   G, the number of window kinds asked on; then per kind (a group):
--             its name ('minute', 'hour', 'day', 'week', 'month'), m, and m distinct
--             entity fields, or 0 for the same fields as the group before (a request
--             usually asks on the same entities in every window: their names are sent
--             once); the fields of all groups, in order, are the fields 1, 2, …, and
--             field f's three counts are the slots 3f - 2, 3f - 1, 3f
-- then      R, the number of reservations; then per reservation:
--             its ticket: a hash and a field ({prefix}:tickets:{tenth of a second},
--             the uuid's 16 bytes), or '' and a key ({prefix}:ticket:{uuid}), or '' and
--             '' for none;
--             one string of little-endian doubles: every ask's slot, then every ask's
--             limit, then every ask's amount; or,
--             when it asks once on every slot of the call (S = 3 × the fields) and every
--             ask of a metric asks the same amount (a request's asks do), S + 4 doubles:
--             0, the amounts of requests, tokens and cost (slot s counts metric
--             (s - 1) % 3), then each slot's limit, slot by slot — 28 doubles instead of
--             72 for a lone request; or,
--             when the reservation asks on the same slots with the same limits as the one
--             before it and every ask of a metric asks the same amount,
--             32 bytes: 0 and the amounts by metric. Unpacking 72 doubles per request cost
--             more than the rest of a batched reservation's Lua.
--           The forms differ in length: 24 × asks, 8 × (S + 4) and 32 bytes (S is a
--           positive multiple of 3, so 8 × (S + 4) is neither of the others).
--
-- Doubles carry every integer below 2^53 exactly; the caller sends nothing larger.
--
-- Reply: first one string of little-endian doubles, the call's `now` and then every slot's
-- count before the call (slot by slot, as numbered above); then per reservation one of
-- '1' (admitted: its amounts were added), '0' (refused: its first ask without room was
-- refused and nothing of it written) or '2' (cancelled: its ticket was cancelled before
-- the batch ran; a reservation that does not fit is refused, cancelled or not). The caller
-- replays the adds in order to learn each reservation's counts, or which ask refused; the
-- caller derives the windows from `now`. Packing every admitted reservation's counts here
-- cost a sixth of a batched reservation.
-- Asks of one reservation on the same bucket add up, as if asked one after the other.
-- An admitted reservation with a ticket records its `now` under the ticket (at least 60 s),
-- so cancel.lua can take its amounts back out of the same windows; the same HSETNX (or
-- SET NX) finds a cancel that came first (cancel.lua leaves a tombstone there), so a
-- ticket costs one command. The tickets of a tenth of a second share one hash: one key
-- to expire instead of one per request. Thousands of keys expiring every second made
-- Redis's expire cycle stop the server for up to 25 ms at a time.
--
-- Each group's hash is read with one HMGET and written with one HSET (the fields whose
-- counts changed), so a batch of many requests on the same entities costs about what one
-- does. The script does as little Lua work per ask as it can: in Redis's Lua every
-- command argument, every table that grows and every number parsed from or printed to a
-- string costs more than the arithmetic. Packed doubles are why: one struct.unpack reads
-- every count the call needs, and struct.pack writes one entity's three counts, where
-- decimal strings cost a tonumber or a string.format each (about 1,700 instructions).
--
-- A hash none of whose read fields existed may be new. It gets its TTL (window end +
-- grace) in the same script, so no hash ever lives without one, and one field whose name
-- is longer than `hash-max-listpack-value` (64 bytes by default): that makes Redis keep the
-- hash as a hash table from the start. A listpack is searched field by field, and a
-- window's hash holds a field per entity in use, hundreds in a busy tenancy; a hash table
-- finds each field at once.

local grace = tonumber(ARGV[1])
local prefix = ARGV[2]
local TICKET_MS = 60000
local sunpack, spack = struct.unpack, struct.pack
local ZERO = spack('<ddd', 0, 0, 0)
local HASHTABLE_FIELD = 'llmur:this-field-is-longer-than-64-bytes-so-the-hash-is-a-hash-table'

local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[3])
end

-- struct's format for n little-endian doubles, made once per size.
local formats = {}
local function doubles(n)
  local f = formats[n]
  if not f then
    f = '<' .. string.rep('d', n)
    formats[n] = f
  end
  return f
end

-- The groups: each one's hash read with one HMGET (a missing field read as ZERO); the
-- counts of all fields unpacked at once into `value`, three per field.
local ngroups = tonumber(ARGV[4])
local pos = 5
local groups, reads, nfields = {}, {}, 0
local a, m = 0, 0
for g = 1, ngroups do
  local kind, n = ARGV[pos], tonumber(ARGV[pos + 1])
  local s, e = bounds(kind, now)
  local key = prefix .. ':' .. kind .. ':' .. int(s)
  if n > 0 then
    a, m = pos + 2, n
    pos = a + m
  else
    pos = pos + 2
  end
  local got = redis.call('HMGET', key, unpack(ARGV, a, a + m - 1))
  local fresh, absent = true, false
  for j = 1, m do
    local v = got[j]
    if v and #v == 24 then
      fresh = false
    else
      got[j] = ZERO
      absent = absent or {}
      absent[j] = true
    end
  end
  groups[g] = {key, e, a, m, fresh, got, absent}
  reads[g] = table.concat(got)
  nfields = nfields + m
end
local value = {sunpack(string.rep('<ddd', nfields), table.concat(reads))}
local replies = {spack(doubles(1 + 3 * nfields), now, unpack(value, 1, 3 * nfields))}

local count = tonumber(ARGV[pos])
pos = pos + 1

local stamp = ARGV[3] ~= '' and ARGV[3] or int(now)

-- Records `stamp` under a ticket unless a cancel left its tombstone there first. A ticket
-- hash gets (or keeps) a TTL of at least TICKET_MS, checked once per hash per call.
local ticket_hashes
local function take_ticket(hash, field)
  if hash == '' then
    return redis.call('SET', field, stamp, 'NX', 'PX', TICKET_MS)
  end
  if redis.call('HSETNX', hash, field, stamp) == 0 then return false end
  ticket_hashes = ticket_hashes or {}
  if not ticket_hashes[hash] then
    ticket_hashes[hash] = true
    local ttl = redis.call('PTTL', hash)
    if ttl < TICKET_MS then
      -- New (no TTL yet): a hash table from the start, like the window hashes; a listpack
      -- would be searched ticket by ticket.
      if ttl < 0 then redis.call('HSET', hash, HASHTABLE_FIELD, '1') end
      redis.call('PEXPIRE', hash, TICKET_MS + 1000)
    end
  end
  return true
end

-- Each reservation in order, against the counts left by those before it. Its amounts are
-- added ask by ask; the first
-- ask that does not fit takes back those added before it (refusals are rare) and refuses
-- the reservation. One that fits and has a ticket records its `now` under the ticket: if
-- a tombstone is there already, cancel.lua left it (the caller gave up on this
-- reservation), and the reservation is taken back and cancelled instead.
--
-- `layout` is the last reservation sent in full: its slots, limits and amounts as three
-- columns of `asks` values (v[i], v[asks + i], v[2 * asks + i]), or, `dense`, every
-- slot's limit (v[s]). A reservation that refers to it brings `amount`, its amounts by
-- metric, and `metrics` (each ask's metric, 1 to 3) is worked out once per layout. Every
-- Lua operation per ask counts here: a loop that copied the amounts into the layout cost
-- a fifth of a batched reservation.
local layout, asks, metrics, amount, dense
local S = 3 * nfields

-- Ask i's amount.
local function amount_of(v, i)
  if amount then return amount[metrics[i]] end
  return v[2 * asks + i]
end

-- Takes the amounts of the first `upto` asks of `v` back out of `value`.
local function take_back(v, upto)
  for i = 1, upto do
    local s = v[i]
    value[s] = value[s] - amount_of(v, i)
  end
end

-- A dense layout's check: every slot has room for its metric's amount (each slot is asked
-- once, so the order of the asks does not matter); then the adds, or nothing.
local function fits_dense(v, a1, a2, a3)
  for k = 1, S, 3 do
    if value[k] + a1 > v[k] or value[k + 1] + a2 > v[k + 1] or value[k + 2] + a3 > v[k + 2] then
      return false
    end
  end
  for k = 1, S, 3 do
    value[k], value[k + 1], value[k + 2] = value[k] + a1, value[k + 1] + a2, value[k + 2] + a3
  end
  return true
end

local admitted = false
for r = 1, count do
  local at = pos + 3 * r - 3
  local packed = ARGV[at + 2]
  local v = layout
  local refused
  if #packed == 32 then
    if not layout then return error('llmur: a reservation refers to none before it') end
    local _, a1, a2, a3 = sunpack('<dddd', packed)
    amount = {a1, a2, a3}
    if not dense and not metrics then
      metrics = {}
      for i = 1, asks do metrics[i] = (v[i] - 1) % 3 + 1 end
    end
  elseif S > 0 and #packed == 8 * (S + 4) then
    local _, a1, a2, a3 = sunpack('<dddd', packed)
    v = {sunpack(doubles(S), packed, 33)}
    layout, dense, amount = v, true, {a1, a2, a3}
  else
    v = {sunpack(doubles(#packed / 8), packed)}
    layout, dense, asks, metrics, amount = v, false, #packed / 24, nil, nil
  end
  if dense then
    refused = not fits_dense(v, amount[1], amount[2], amount[3])
  else
    local above = 2 * asks
    for i = 1, asks do
      local s = v[i]
      local x
      if amount then x = amount[metrics[i]] else x = v[above + i] end
      local used = value[s] + x
      if used > v[asks + i] then
        take_back(v, i - 1)
        refused = true
        break
      end
      value[s] = used
    end
  end
  local field = ARGV[at + 1]
  if refused then
    replies[r + 1] = '0'
  elseif field ~= '' and not take_ticket(ARGV[at], field) then
    if dense then
      for k = 1, S do value[k] = value[k] - amount[(k - 1) % 3 + 1] end
    else
      take_back(v, asks)
    end
    replies[r + 1] = '2'
  else
    admitted = true
    replies[r + 1] = '1'
  end
end

-- Nothing admitted, nothing written. Otherwise one HSET per group, of the fields whose
-- packed counts changed (a packed string equal to the one read is the same interned Lua
-- string, so the test is cheap) and the fields that were missing: an admitted amount of
-- zero still makes its field and hash exist, so that a settle finds them. (In a batch, a
-- refused reservation's missing fields may then be written as zeros, which every reader
-- takes the same as missing.) A hash that may be new gets its TTL, relative to `now` so a
-- caller's (fake) clock gets the same lifetime as the server's. One `w` serves every
-- group, so it grows once.
if not admitted then return replies end
local f0, w = 0, {}
for g = 1, ngroups do
  local key, e, a, m, fresh, got, absent = unpack(groups[g])
  local nw = 0
  for j = 1, m do
    local k = 3 * (f0 + j)
    local packed = spack('<ddd', value[k - 2], value[k - 1], value[k])
    if packed ~= got[j] or (absent and absent[j]) then
      w[nw + 1] = ARGV[a + j - 1]
      w[nw + 2] = packed
      nw = nw + 2
    end
  end
  f0 = f0 + m
  if nw > 0 then
    if fresh then
      w[nw + 1], w[nw + 2] = HASHTABLE_FIELD, '1'
      nw = nw + 2
    end
    redis.call('HSET', key, unpack(w, 1, nw))
    if fresh then
      redis.call('PEXPIRE', key, e - now + grace)
    end
  end
end
return replies
