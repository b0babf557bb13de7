-- Cached tiles over the demo district (576 tiles at z15, cycled), with the
-- token in $TOKEN as a Bearer header when set (benches/load-scripts/auth.sh).
local token = os.getenv("TOKEN")
counter = 0
request = function()
  counter = counter + 1
  local x = 26656 + (counter * 7) % 24
  local y = 13694 + (counter * 13 + math.floor(counter / 24)) % 24
  local h = {["Accept-Encoding"] = "gzip"}
  if token and token ~= "" then h["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", "/tiles/all/15/" .. x .. "/" .. y .. ".mvt", h)
end
