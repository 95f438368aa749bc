-- wrk script: GET /z/K with K drawn from Zipf(1.0) over N keys, a seed (ZIPF_SEED), and a stop
-- after LIMIT responses, so every proxy sees the same requests in the same order. ZIPF_DELAY_MS
-- paces each connection (a rate the caches' own housekeeping keeps up with).
local N = tonumber(os.getenv("ZIPF_KEYS") or "100000")
local LIMIT = tonumber(os.getenv("ZIPF_REQUESTS") or "200000")
local SEED = tonumber(os.getenv("ZIPF_SEED") or "42")
local DELAY = tonumber(os.getenv("ZIPF_DELAY_MS") or "0")
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
  math.randomseed(SEED)
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

function delay()
  return DELAY
end

function response(status, headers, body)
  done = done + 1
  if done >= LIMIT then wrk.thread:stop() end
end
