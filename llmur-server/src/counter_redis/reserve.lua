-- Admit each of a batch of reservations, every ask of one or none of them, atomically,
-- in order (llmur RedisCounter::reserve). Prepended by windows.lua.
--
-- Layout: one hash per window, {prefix}:{window kind}:{window start}, with a field per
-- bucket, {level}:{id}:{metric}, holding the bucket's usage in that window.
--
-- ARGV[1]   grace in ms kept after a window's end (so late settles still find it)
-- ARGV[2]   the key prefix
-- ARGV[3]   F, the number of distinct bucket fields; ARGV[4 .. 3 + F] the fields
-- then      R, the number of reservations; S, the number of shapes; then per shape (the
--           buckets and limits a reservation asks on, shared by reservations that ask
--           on the same ones) one string of little-endian doubles: per ask its field
--           index, window kind (1 minute, 2 hour, 3 day, 4 week, 5 month) and limit
-- then per reservation:
--           its clock in Unix ms, or '' for the server's TIME;
--           its ticket key ('' for none): {prefix}:ticket:{uuid};
--           its shape's index;
--           one string of little-endian doubles: the amount of each of the shape's asks
--
-- Doubles carry every integer below 2^53 exactly; the caller sends nothing larger.
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
-- Each window hash is read with one HMGET and written with one HSET (the final counts of
-- the fields the batch admitted something on), so a batch of many requests on the same
-- buckets costs about what one does, and one request costs a handful of commands however
-- many buckets it asks on. A hash that none of the read fields existed in may be new: it
-- gets its TTL (window end + grace) in the same script, so no hash ever lives without one.

local grace = tonumber(ARGV[1])
local prefix = ARGV[2]
local nfields = tonumber(ARGV[3])
local pos = 4 + nfields
local count = tonumber(ARGV[pos])
local nshapes = tonumber(ARGV[pos + 1])
pos = pos + 2
local TICKET_MS = 60000
local KINDS = {'minute', 'hour', 'day', 'week', 'month'}

local server_now
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  if not server_now then
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
  end
  return server_now
end

-- The shapes: per shape, its asks' field indexes, window kinds and limits.
local shape_fields, shape_kinds, shape_limits = {}, {}, {}
for s = 1, nshapes do
  local packed = ARGV[pos]
  local v = {struct.unpack(string.rep('<d', #packed / 8), packed)}
  local fs, ks, ls = {}, {}, {}
  for i = 1, #packed / 24 do
    fs[i], ks[i], ls[i] = v[3 * i - 2], v[3 * i - 1], v[3 * i]
  end
  shape_fields[s], shape_kinds[s], shape_limits[s] = fs, ks, ls
  pos = pos + 1
end

-- Per reservation: its clock, ticket, shape and amounts; which tickets were cancelled
-- (one EXISTS for the whole batch in the common case of none).
local nows, tickets, shapes, amounts = {}, {}, {}, {}
local tombstones, ticketed = {}, {}
for r = 1, count do
  nows[r] = clock(ARGV[pos])
  tickets[r] = ARGV[pos + 1]
  shapes[r] = tonumber(ARGV[pos + 2])
  local packed = ARGV[pos + 3]
  amounts[r] = {struct.unpack(string.rep('<d', #packed / 8), packed)}
  if tickets[r] ~= '' then
    ticketed[#ticketed + 1] = r
    tombstones[#tombstones + 1] = tickets[r] .. ':x'
  end
  pos = pos + 4
end
local cancelled = {}
if #tombstones > 0 and redis.call('EXISTS', unpack(tombstones)) > 0 then
  for j = 1, #ticketed do
    if redis.call('EXISTS', tombstones[j]) == 1 then cancelled[ticketed[j]] = true end
  end
end

-- The windows the batch touches: one hash per window key, with the fields asked on in
-- it. Each (hash, field) is a slot: its count is read once into `value` and updated as
-- reservations are admitted.
local hashes = {}      -- per hash: {key, window end, fields, clock it was first met at}
local hash_at = {}     -- hash_at[kind][now]: the hash index (memo)
local hash_by_key = {} -- two clocks in one window share its hash
local slot = {}        -- slot[h][field index]: the slot index
local slot_hash, slot_field = {}, {}
local function hash_for(kind, now)
  local by_now = hash_at[kind]
  if not by_now then
    by_now = {}
    hash_at[kind] = by_now
  end
  local h = by_now[now]
  if h then return h end
  local s, e = bounds(KINDS[kind], now)
  local key = prefix .. ':' .. KINDS[kind] .. ':' .. int(s)
  h = hash_by_key[key]
  if not h then
    h = #hashes + 1
    hashes[h] = {key, e, {}, now}
    hash_by_key[key] = h
    slot[h] = {}
  end
  by_now[now] = h
  return h
end
local function slot_for(kind, now, field)
  local h = hash_for(kind, now)
  local i = slot[h][field]
  if not i then
    local fields = hashes[h][3]
    fields[#fields + 1] = ARGV[3 + field]
    i = #slot_hash + 1
    slot_hash[i], slot_field[i] = h, #fields
    slot[h][field] = i
  end
  return i
end

-- Every slot each live reservation asks on, in ask order.
local slots = {}
for r = 1, count do
  if not cancelled[r] then
    local s = shapes[r]
    local fs, ks = shape_fields[s], shape_kinds[s]
    local mine = {}
    for i = 1, #fs do mine[i] = slot_for(ks[i], nows[r], fs[i]) end
    slots[r] = mine
  end
end

-- One HMGET per hash. A hash none of whose read fields exists may be new.
local stored, fresh = {}, {}
for h = 1, #hashes do
  local got = redis.call('HMGET', hashes[h][1], unpack(hashes[h][3]))
  local any = false
  for j = 1, #got do
    if got[j] then
      any = true
      break
    end
  end
  stored[h], fresh[h] = got, not any
end
local value, keep = {}, {}
for i = 1, #slot_hash do
  local v = stored[slot_hash[i]][slot_field[i]]
  value[i] = v and tonumber(v) or 0
end

local replies = {}
local recorded, recorded_nows = {}, {}
for r = 1, count do
  local now = nows[r]
  if cancelled[r] then
    replies[r] = {2, now}
  else
    local s = shapes[r]
    local ls, amt, mine = shape_limits[s], amounts[r], slots[r]
    local refused
    for i = 1, #mine do
      local used = value[mine[i]]
      if used + amt[i] > ls[i] then
        refused = {0, now, i, used, hashes[slot_hash[mine[i]]][2]}
        break
      end
    end
    if refused then
      replies[r] = refused
    else
      local reply = {1, now}
      for i = 1, #mine do
        local j = mine[i]
        local used = value[j] + amt[i]
        value[j] = used
        keep[j] = true
        reply[i + 2] = used
      end
      if tickets[r] ~= '' then
        recorded[#recorded + 1] = tickets[r]
        recorded_nows[#recorded] = now
      end
      replies[r] = reply
    end
  end
end

-- One HSET per hash the batch admitted something on: the fields' final counts (numbers
-- go to redis.call as they are: Redis prints them with 17 significant digits, exact for
-- every integer below 2^53). A hash that may be new gets its TTL, relative to `now` so a
-- caller's (fake) clock gets the same lifetime as the server's.
local writes = {}
for i = 1, #slot_hash do
  if keep[i] then
    local h = slot_hash[i]
    local w = writes[h]
    if not w then
      w = {}
      writes[h] = w
    end
    w[#w + 1] = hashes[h][3][slot_field[i]]
    w[#w + 1] = value[i]
  end
end
for h = 1, #hashes do
  local w = writes[h]
  if w then
    local key = hashes[h][1]
    redis.call('HSET', key, unpack(w))
    if fresh[h] then
      redis.call('PEXPIRE', key, hashes[h][2] - hashes[h][4] + grace)
    end
  end
end
for j = 1, #recorded do
  redis.call('SET', recorded[j], recorded_nows[j], 'PX', TICKET_MS)
end
return replies
