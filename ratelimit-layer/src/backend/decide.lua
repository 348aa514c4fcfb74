-- One rate-limit decision for one subject: every window of its quota, atomically.
-- The twin of `quota::decide` in Rust; the same integer arithmetic (values < 2^53).
-- KEYS[i]: state of window i (all keys share the subject's hash tag).
-- ARGV[1]: '1' consume, '0' peek; ARGV[2]: cost;
-- then per window: algorithm ('g' GCRA, 's' sliding window), limit, period_us, burst, interval_us.
-- Returns {allowed, retry_after_us (-1: never), remaining_1, reset_1, retry_1, ...}.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function first_fitting(weight, room, pms)
  if weight <= room then return 0 end
  local bound = (room + 1) * pms
  local e = pms - math.min(idiv(bound + weight - 1, weight), pms)
  while e < pms and idiv(weight * (pms - e), pms) > room do e = e + 1 end
  return e
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local consume = ARGV[1] == '1'
local cost = tonumber(ARGV[2])
local n = #KEYS
local allowed = true
local never = false
local retry = 0
local status = {}
local writes = {}
for i = 1, n do
  local a = 2 + (i - 1) * 5
  local alg = ARGV[a + 1]
  local limit = tonumber(ARGV[a + 2])
  local period = tonumber(ARGV[a + 3])
  local burst = tonumber(ARGV[a + 4])
  local interval = tonumber(ARGV[a + 5])
  local ok, r, remaining, reset, base_remaining, base_reset
  if alg == 'g' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local capacity = burst * interval
    local b = math.max(tat, now)
    local new_tat = b + cost * interval
    ok = (new_tat - now) <= capacity
    local kept = b
    if ok then
      kept = new_tat
      r = 0
    elseif cost > burst then
      r = -1
    else
      r = new_tat - capacity - now
    end
    reset = kept - now
    remaining = idiv(capacity - math.min(reset, capacity), interval)
    base_reset = b - now
    base_remaining = idiv(capacity - math.min(base_reset, capacity), interval)
    writes[i] = {'g', new_tat, new_tat - now}
  else
    local h = redis.call('HMGET', KEYS[i], 's', 'p', 'c')
    local start0 = tonumber(h[1] or '0')
    local prev0 = tonumber(h[2] or '0')
    local cur0 = tonumber(h[3] or '0')
    local start = idiv(now, period) * period
    local prev, cur = 0, 0
    if start0 == start then
      prev, cur = prev0, cur0
    elseif start0 + period == start then
      prev = cur0
    end
    local pms = period / 1000
    local ems = idiv(now - start, 1000)
    local est = idiv(prev * (pms - ems), pms) + cur
    ok = est + cost <= limit
    reset = start + period - now
    base_reset = reset
    base_remaining = limit - math.min(est, limit)
    if ok then
      remaining = limit - est - cost
      r = 0
    else
      remaining = base_remaining
      if cost > limit then
        r = -1
      elseif cur + cost <= limit then
        local e = first_fitting(prev, limit - cost - cur, pms)
        r = math.max(e * 1000 - (now - start), 1)
      else
        r = reset + first_fitting(cur, limit - cost, pms) * 1000
      end
    end
    writes[i] = {'s', start, prev, cur + cost, start + 2 * period - now}
  end
  if not ok then allowed = false end
  if r == -1 then never = true elseif r > retry then retry = r end
  status[i] = {remaining, reset, r, base_remaining, base_reset}
end
local out = {0, 0}
if allowed then
  out[1] = 1
  if consume then
    for i = 1, n do
      local w = writes[i]
      if w[1] == 'g' then
        redis.call('SET', KEYS[i], w[2], 'PX', math.max(1, idiv(w[3] + 999, 1000)))
      else
        redis.call('HSET', KEYS[i], 's', w[2], 'p', w[3], 'c', w[4])
        redis.call('PEXPIRE', KEYS[i], math.max(1, idiv(w[5] + 999, 1000)))
      end
    end
  end
else
  out[2] = retry
  if never then out[2] = -1 end
end
for i = 1, n do
  local s = status[i]
  if not allowed and s[3] == 0 then
    table.insert(out, s[4])
    table.insert(out, s[5])
  else
    table.insert(out, s[1])
    table.insert(out, s[2])
  end
  table.insert(out, s[3])
end
return out
