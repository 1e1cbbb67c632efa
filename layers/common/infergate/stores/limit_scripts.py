"""The limit store's scripts (stores/limits.py says what they keep, and how): a window's running
count, admission (a request noted, weighed against its limits and slots, and, on one server,
seated by the pool in the same step), taking back what a cluster's admission counted when the
pool has no server for it, and conclusion (the real token count, the slots given back, the
request's metrics, and, on one server, its server's slot and breaker)."""

from __future__ import annotations

from infergate.stores.lua import NOW, POOL, RELEASE

# What one window holds: its members leave as the window moves past them, and their costs
# leave its running total, which is recounted if it is ever lost. So a check costs the
# members that leave, not all those in the window.
_WINDOW = """
local function window_used(set, total, window)
  local leaving = redis.call('ZRANGEBYSCORE', set, '-inf', now - window)
  local used = redis.call('GET', total)
  if #leaving > 0 then redis.call('ZREMRANGEBYSCORE', set, '-inf', now - window) end
  if used then
    used = tonumber(used)
    for _, member in ipairs(leaving) do used = used - cost_of(member) end
  else
    used = 0
    for _, member in ipairs(redis.call('ZRANGE', set, 0, -1)) do used = used + cost_of(member) end
  end
  return used
end

-- How long until `cost` more fits under `limit` in a window that holds `used`.
local function wait_for(set, used, cost, limit, window)
  local freed, index = 0, 0
  while true do
    local entry = redis.call('ZRANGE', set, index, index + 63, 'WITHSCORES')
    if #entry == 0 then return window end
    for j = 1, #entry, 2 do
      freed = freed + cost_of(entry[j])
      if used + cost - freed <= limit then return tonumber(entry[j + 1]) + window - now end
    end
    index = index + 64
  end
end
"""

# After NOW and _WINDOW: a request noted and weighed against its limits and its user's slots.
# KEYS: the request total, when each key was last used, the user's slots, then per limit its
#       sorted set and its running total. ARGV: ticket, the key used ('' for none), slots (0 for
#       none), slot lease ms, the number of limits, then limit, window ms and cost per limit.
_WEIGH = """
local function note_request()
  redis.call('INCR', KEYS[1])
  if ARGV[2] ~= '' then
    local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
    if now - last >= 60000 then redis.call('HSET', KEYS[2], ARGV[2], now) end
  end
end

-- Whether the request fits every limit and a slot, counted under all of them or none; how long
-- until it would fit; whether the slots were full; used and reset_ms per limit.
local function weigh(ticket, limits)
  local allowed, retry_after, reply, used_of = 1, 0, {}, {}
  for i = 1, limits do
    local set, total = KEYS[i * 2 + 2], KEYS[i * 2 + 3]
    local limit, window, cost = tonumber(ARGV[i * 3 + 3]), tonumber(ARGV[i * 3 + 4]), tonumber(ARGV[i * 3 + 5])
    local used = window_used(set, total, window)
    used_of[i] = used
    local oldest = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    local reset = 0
    if #oldest > 0 then reset = tonumber(oldest[2]) + window - now end
    if used + cost > limit then
      allowed = 0
      retry_after = math.max(retry_after, wait_for(set, used, cost, limit, window))
    end
    reply[#reply + 1] = used
    reply[#reply + 1] = reset
  end
  local slots, slots_full = tonumber(ARGV[3]), 0
  if allowed == 1 and slots > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    if redis.call('ZCARD', KEYS[3]) >= slots then
      allowed = 0
      slots_full = 1
    end
  end
  for i = 1, limits do
    local set, total, window = KEYS[i * 2 + 2], KEYS[i * 2 + 3], tonumber(ARGV[i * 3 + 4])
    local cost = 0
    if allowed == 1 then cost = tonumber(ARGV[i * 3 + 5]) end
    if cost > 0 then redis.call('ZADD', set, now, ticket .. ':' .. cost) end
    redis.call('SET', total, used_of[i] + cost, 'PX', window)
    redis.call('PEXPIRE', set, window)
  end
  if allowed == 1 and slots > 0 then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ticket)
    redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]))
  end
  return allowed, retry_after, slots_full, reply
end
"""

# _WEIGH's keys and arguments, then the route's (POOL) if it is a model call.
# Returns {allowed, retry_after_ms, unavailable_ms, slots_full, then the seat (kind, server,
#          model, probe, retry ms), then used and reset_ms per limit}.
ADMIT = NOW + _WINDOW + POOL + _WEIGH + """
local ticket, limits = ARGV[1], tonumber(ARGV[5])
note_request()
local route, full, retry = nil, false, nil
if #KEYS > 3 + limits * 2 then
  route = read_route(4 + limits * 2, 6 + limits * 3)
  full, retry = survey(route, ticket)
  local usable = false
  for _, s in ipairs(route.servers) do if s.count ~= nil then usable = true end end
  if not usable then return {0, 0, retry or 1000, 0, 0, '', '', 0, 0} end
end
local allowed, retry_after, slots_full, reply = weigh(ticket, limits)
local seat = {0, '', '', 0, 0}
if allowed == 1 and route then seat = place(route, ticket, full, retry) end
local head = {allowed, retry_after, 0, slots_full, seat[1], seat[2], seat[3], seat[4], seat[5]}
for _, value in ipairs(reply) do head[#head + 1] = value end
return head
"""

# On a cluster, a model call's admission is two scripts, its shard's (ADMIT with no route) then
# the pool's (stores/pool.py's place); if the pool has no server for it, RETRACT takes back what
# the first counted. KEYS: the user's slots, then per limit its sorted set and running total.
# ARGV: the ticket, then the cost per limit.
RETRACT = """
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, #KEYS, 2 do
  local cost = tonumber(ARGV[i / 2 + 1])
  if redis.call('ZREM', KEYS[i], ARGV[1] .. ':' .. cost) == 1 and redis.call('EXISTS', KEYS[i + 1]) == 1 then
    redis.call('DECRBY', KEYS[i + 1], cost)
  end
end
"""

# KEYS: the user's slots, the token limit's sorted set and running total, the shard's metrics,
#       then RELEASE's keys when the request held a server's slot (on one server; on a cluster
#       the pool is asked apart).
# ARGV: the ticket, whether it held a slot of the user's (0|1), whether its token count is
#       corrected (0|1), the admitted member, the corrected cost and its member, the number of
#       metrics increments and each (series, increment), then RELEASE's arguments.
# Returns the server's breaker state, or '' when it held none.
CONCLUDE = NOW + RELEASE + """
local increments = tonumber(ARGV[7])
for i = 1, increments do redis.call('HINCRBYFLOAT', KEYS[4], ARGV[6 + i * 2], ARGV[7 + i * 2]) end
if ARGV[2] == '1' then redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[3] == '1' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[4])
  if score then
    redis.call('ZREM', KEYS[2], ARGV[4])
    local cost = tonumber(ARGV[5])
    if cost > 0 then redis.call('ZADD', KEYS[2], score, ARGV[6]) end
    if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('INCRBY', KEYS[3], cost - cost_of(ARGV[4])) end
  end
end
if #KEYS > 4 then return release(5, 8 + increments * 2) end
return ''
"""
