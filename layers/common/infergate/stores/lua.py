"""The Lua InferGate's scripts share: what every one begins with (Redis's own clock, which every
instance shares, read into `now` in ms, and how a counted member's cost is read back from
`<ticket>:<cost>`), and the pool's rule, by which a request is seated on a server or in line
and its slot given back (stores/pool.py says how the pool is kept; domain/pool.py's `choose`
is the same rule in Python)."""

NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function cost_of(member) return tonumber(string.match(member, ':(%d+)$')) end
"""

# After NOW. A route's keys, from `k`: the waiters' last word, the
# conversation, then per server its breaker, its requests in flight and its line. Its
# arguments, from `a`: the slot lease, the probe lease, STALE_MS, the wake prefix, whether the
# conversation's last server is preferred, the servers (name, slots, weight each), the choices
# (model, then server index and loaded per candidate), the servers excluded (indexes).
POOL = """
local function breaker_state(key)
  local state = redis.call('HGET', key, 'state') or 'closed'
  if state == 'closed' then return 'closed', 0 end
  local reopens = tonumber(redis.call('HGET', key, 'until') or '0')
  if state == 'open' and now < reopens then return 'open', reopens - now end
  local probing = tonumber(redis.call('HGET', key, 'probe_until') or '0')
  if probing > now then return 'open', probing - now end
  return 'probe', 0
end

local function read_route(k, a)
  local route = {seen = KEYS[k], conversation = KEYS[k + 1], lease = tonumber(ARGV[a]),
                 probe_lease = tonumber(ARGV[a + 1]), stale = tonumber(ARGV[a + 2]), wake = ARGV[a + 3],
                 continued = ARGV[a + 4] == '1', servers = {}, choices = {}, exclude = {}}
  local n = tonumber(ARGV[a + 5])
  a = a + 6
  for i = 1, n do
    local key = k + 2 + (i - 1) * 3
    route.servers[i] = {name = ARGV[a], slots = tonumber(ARGV[a + 1]), weight = tonumber(ARGV[a + 2]),
                        breaker = KEYS[key], inflight = KEYS[key + 1], waiting = KEYS[key + 2]}
    a = a + 3
  end
  local c = tonumber(ARGV[a])
  a = a + 1
  for j = 1, c do
    local choice = {model = ARGV[a], candidates = {}}
    local m = tonumber(ARGV[a + 1])
    a = a + 2
    for x = 1, m do
      choice.candidates[x] = {server = tonumber(ARGV[a]), loaded = ARGV[a + 1] == '1'}
      a = a + 2
    end
    route.choices[j] = choice
  end
  for x = 1, tonumber(ARGV[a]) do route.exclude[tonumber(ARGV[a + x])] = true end
  return route
end

-- How many wait ahead of `ticket` in a server's line (all of it, for a newcomer); those silent
-- for too long are dropped. Only as many as could matter (the server's slots) are looked at.
local function waiting_ahead(route, s, ticket)
  local rank = redis.call('ZRANK', s.waiting, ticket)
  local ahead = rank or redis.call('ZCARD', s.waiting)
  if ahead == 0 then return 0 end
  local members = redis.call('ZRANGE', s.waiting, 0, math.min(ahead, s.slots) - 1)
  local seen = redis.call('HMGET', route.seen, unpack(members))
  for j, member in ipairs(members) do
    if not seen[j] or tonumber(seen[j]) < now - route.stale then
      redis.call('ZREM', s.waiting, member)
      ahead = ahead - 1
    end
  end
  return ahead
end

-- Each server's breaker and load: whether any server the request may use is full, and, if
-- none may be used, when the first breaker lets a request through again.
local function survey(route, ticket)
  local full, retry = false, nil
  for i, s in ipairs(route.servers) do
    s.state, s.wait = breaker_state(s.breaker)
    if s.state == 'open' then
      if retry == nil or s.wait < retry then retry = s.wait end
    elseif not route.exclude[i] then
      redis.call('ZREMRANGEBYSCORE', s.inflight, '-inf', now)
      s.count = redis.call('ZCARD', s.inflight)
      s.free = s.count + waiting_ahead(route, s, ticket) < s.slots
      if not s.free then full = true end
    end
  end
  return full, retry
end

-- The first choice with a server that has a slot for the request, and that server: the one the
-- conversation last went to, else one with the model loaded, then the fewest requests in flight
-- for its weight; among equals, a different one each millisecond.
local function choose(route)
  local last = nil
  if route.continued then last = redis.call('GET', route.conversation) end
  for c, choice in ipairs(route.choices) do
    local best, tier, load = nil, nil, nil
    local m = #choice.candidates
    for x = 0, m - 1 do
      local candidate = choice.candidates[(now + x) % m + 1]
      local s = route.servers[candidate.server]
      if s.free then
        local t = 2
        if last == s.name then t = 0 elseif candidate.loaded then t = 1 end
        local l = s.count / s.weight
        if best == nil or t < tier or (t == tier and l < load) then best, tier, load = candidate.server, t, l end
      end
    end
    if best ~= nil then return best, c end
  end
  return nil, nil
end

local function wake_first(route, s)
  local first = redis.call('ZRANGE', s.waiting, 0, 0)[1]
  if first then
    redis.call('LPUSH', route.wake .. first, 1)
    redis.call('PEXPIRE', route.wake .. first, route.stale)
  end
end

local function leave_lines(route, ticket)
  for _, s in ipairs(route.servers) do redis.call('ZREM', s.waiting, ticket) end
  redis.call('HDEL', route.seen, ticket)
end

-- {kind, server, model, probe, retry ms}: kind 1 placed, 2 waiting, 3 nowhere to go; after
-- survey(), whose findings it is given.
local function place(route, ticket, full, retry)
  local best, c = choose(route)
  if best ~= nil then
    local s = route.servers[best]
    redis.call('ZADD', s.inflight, now + route.lease, ticket)
    redis.call('PEXPIRE', s.inflight, route.lease)
    local probe = 0
    if s.state == 'probe' then
      redis.call('HSET', s.breaker, 'state', 'half_open', 'probe_until', now + route.probe_lease)
      probe = 1
    end
    if redis.call('HDEL', route.seen, ticket) == 1 then
      leave_lines(route, ticket)
      if s.count + 1 < s.slots then wake_first(route, s) end
    end
    return {1, s.name, route.choices[c].model, probe, 0}
  end
  if not full then
    leave_lines(route, ticket)
    return {3, '', '', 0, retry or 1000}
  end
  for i, s in ipairs(route.servers) do
    if s.count ~= nil then
      redis.call('ZADD', s.waiting, 'NX', now, ticket)
      redis.call('PEXPIRE', s.waiting, route.stale * 30)
    end
  end
  redis.call('HSET', route.seen, ticket, now)
  redis.call('PEXPIRE', route.seen, route.stale * 30)
  return {2, '', '', 0, 0}
end
"""

# Lua, after NOW: a request's server slot given back. KEYS from `k`: the server's breaker, its
# requests in flight, its line, its last minute, the conversation. ARGV from `a`: how it did
# ('ok' | 'fail' | ''), probe (0|1), the failure threshold, the open ms, the ticket, its latency
# ms, the conversation's lifetime ms (0: none), the wake prefix, the server's name. The
# breaker's state after it.
RELEASE = """
local function release(k, a)
  local breaker, inflight, waiting, stats, conversation = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local outcome, probe, ticket = ARGV[a], ARGV[a + 1] == '1', ARGV[a + 4]
  if redis.call('ZREM', inflight, ticket) == 1 then
    local first = redis.call('ZRANGE', waiting, 0, 0)[1]
    if first then
      redis.call('LPUSH', ARGV[a + 7] .. first, 1)
      redis.call('PEXPIRE', ARGV[a + 7] .. first, 2000)
    end
  end
  if outcome ~= '' then
    local ok = 0
    if outcome == 'ok' then ok = 1 end
    redis.call('ZADD', stats, now, ticket .. ':' .. ARGV[a + 5] .. ':' .. ok)
    redis.call('ZREMRANGEBYSCORE', stats, '-inf', now - 60000)
    redis.call('PEXPIRE', stats, 60000)
  end
  if outcome == 'ok' and ARGV[a + 6] ~= '0' then redis.call('SET', conversation, ARGV[a + 8], 'PX', ARGV[a + 6]) end
  local state = redis.call('HGET', breaker, 'state') or 'closed'
  if outcome == '' then
    if probe and state == 'half_open' then redis.call('HSET', breaker, 'probe_until', 0) end
    return state
  end
  if outcome == 'ok' then
    if state == 'closed' or probe then redis.call('DEL', breaker) end
    return 'closed'
  end
  if probe or state == 'half_open' then
    redis.call('HSET', breaker, 'state', 'open', 'until', now + tonumber(ARGV[a + 3]), 'probe_until', 0, 'failures', 0)
    return 'open'
  end
  if state == 'open' then return 'open' end
  local failures = redis.call('HINCRBY', breaker, 'failures', 1)
  if failures >= tonumber(ARGV[a + 2]) then
    redis.call('HSET', breaker, 'state', 'open', 'until', now + tonumber(ARGV[a + 3]), 'failures', 0)
    return 'open'
  end
  return 'closed'
end
"""
