-- Gives back units a subject consumed and did not spend (a lease returned on shutdown).
-- The twin of `quota::refund` in Rust.
-- KEYS[i]: state of window i (all keys share the subject's hash tag).
-- ARGV[1]: units; then per window: algorithm ('g' GCRA, 's' sliding window), period_us,
-- interval_us.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local units = tonumber(ARGV[1])
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 3
  local alg = ARGV[a + 1]
  local period = tonumber(ARGV[a + 2])
  local interval = tonumber(ARGV[a + 3])
  if alg == 'g' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat > now then
      local back = math.max(tat - units * interval, now)
      if back > now then
        redis.call('SET', KEYS[i], back, 'PX', math.max(1, math.floor((back - now + 999) / 1000)))
      else
        redis.call('DEL', KEYS[i])
      end
    end
  else
    local start = math.floor(now / period) * period
    if tonumber(redis.call('HGET', KEYS[i], 's') or '-1') == start then
      local cur = tonumber(redis.call('HGET', KEYS[i], 'c') or '0')
      redis.call('HSET', KEYS[i], 'c', math.max(cur - units, 0))
    end
  end
end
return 1
