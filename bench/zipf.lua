-- wrk script: GET /z/K with K drawn from Zipf(1.0) over N keys, a fixed seed, and a stop after
-- LIMIT responses, so every proxy sees the same number of requests from the same distribution.
local N = tonumber(os.getenv("ZIPF_KEYS") or "100000")
local LIMIT = tonumber(os.getenv("ZIPF_REQUESTS") or "200000")
local cdf = {}
local done = 0

function init(args)
  local sum = 0
  for k = 1, N do sum = sum + 1 / k end
  local acc = 0
  for k = 1, N do
    acc = acc + (1 / k) / sum
    cdf[k] = acc
  end
  math.randomseed(42)
end

function request()
  local r = math.random()
  local lo, hi = 1, N
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < r then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/z/" .. lo)
end

function response(status, headers, body)
  done = done + 1
  if done >= LIMIT then wrk.thread:stop() end
end
