-- wrk: read one zone with the token in TOKEN.
request = function()
  return wrk.format("GET", "/v1/zones/w", {["Authorization"] = "Bearer " .. os.getenv("TOKEN")})
end
