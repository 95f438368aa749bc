-- wrk: replace one zone over and over (every request is a new version) with the token in TOKEN.
local n = 0
request = function()
  n = n + 1
  local body = '{"name": "w", "hostnames": ["w.test"], "origins": {"servers": [{"address": "127.0.0.1:9"}]},'
    .. ' "response_headers": [{"action": "set", "name": "x-n", "value": "' .. n .. '"}]}'
  return wrk.format("PUT", "/v1/zones/w", {["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
    ["Content-Type"] = "application/json"}, body)
end
